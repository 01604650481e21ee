import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A tiny HTTP/1.1 server on 127.0.0.1 for client tests: a thread per connection, keep-alive,
/// Content-Length bodies only. The handler sees each request (with its 0-based arrival number)
/// and returns the canned reply; the server records requests and the most requests it held at
/// once (counted from a request's arrival to its reply's end).
final class StubHTTPServer: @unchecked Sendable {
    struct Request {
        var method: String
        var path: String
        /// Lower-cased names.
        var headers: [String: String]
        var body: Data

        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
    }

    struct Reply {
        var status: Int
        var headers: [(String, String)] = []
        var body: Data
        /// Seconds to wait before replying.
        var delay: Double = 0

        init(status: Int = 200, headers: [(String, String)] = [], body: String, delay: Double = 0) {
            self.status = status
            self.headers = headers
            self.body = Data(body.utf8)
            self.delay = delay
        }
    }

    let port: Int
    var baseURL: String { "http://127.0.0.1:\(port)" }
    private let listener: Int32
    private let handler: @Sendable (Request, Int) -> Reply
    private let lock = NSLock()
    private var _requests: [Request] = []
    private var inFlight = 0
    private var _maxInFlight = 0
    private var running = true

    var requests: [Request] { lock.lock(); defer { lock.unlock() }; return _requests }
    var maxInFlight: Int { lock.lock(); defer { lock.unlock() }; return _maxInFlight }

    init(handler: @escaping @Sendable (Request, Int) -> Reply) throws {
        self.handler = handler
        #if os(Linux)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw POSIXError(.EIO) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 128) == 0 else { close(fd); throw POSIXError(.EADDRINUSE) }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        port = Int(UInt16(bigEndian: addr.sin_port))
        listener = fd
        let t = Thread { [self] in acceptLoop() }
        t.start()
    }

    /// A port where nothing listens (bound, then closed).
    static func closedPort() throws -> Int {
        let s = try StubHTTPServer { _, _ in Reply(body: "") }
        let p = s.port
        s.stop()
        return p
    }

    func stop() {
        lock.lock()
        running = false
        lock.unlock()
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private var isRunning: Bool { lock.lock(); defer { lock.unlock() }; return running }

    private func acceptLoop() {
        while isRunning {
            let c = accept(listener, nil, nil)
            if c < 0 {
                if !isRunning { return }
                continue
            }
            Thread { [self] in serve(c) }.start()
        }
    }

    /// Writing to a peer that has gone (a client that timed out) must not raise SIGPIPE.
    #if os(Linux)
    static let noSignal = Int32(MSG_NOSIGNAL)
    #else
    static let noSignal: Int32 = 0
    #endif

    private func serve(_ fd: Int32) {
        defer { close(fd) }
        #if !os(Linux)
        var on: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &on, socklen_t(MemoryLayout<Int32>.size))
        #endif
        var pending = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65536)
        func fill() -> Bool {
            let n = recv(fd, &chunk, chunk.count, 0)
            if n <= 0 { return false }
            pending += chunk[0..<n]
            return true
        }
        let separator: [UInt8] = [13, 10, 13, 10]
        while true {
            // Head.
            var headEnd: Int?
            while headEnd == nil {
                if pending.count >= 4 {
                    for i in 0...(pending.count - 4) where Array(pending[i..<(i + 4)]) == separator { headEnd = i; break }
                }
                if headEnd == nil && !fill() { return }
            }
            let head = String(decoding: pending[0..<headEnd!], as: UTF8.self)
            pending.removeFirst(headEnd! + 4)
            var lines = head.components(separatedBy: "\r\n")
            let start = lines.removeFirst().split(separator: " ")
            var headers: [String: String] = [:]
            for l in lines {
                guard let colon = l.firstIndex(of: ":") else { continue }
                headers[l[..<colon].lowercased()] = l[l.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
            let length = Int(headers["content-length"] ?? "0") ?? 0
            while pending.count < length { if !fill() { return } }
            let body = Data(pending[0..<length])
            pending.removeFirst(length)
            let request = Request(method: start.count > 0 ? String(start[0]) : "", path: start.count > 1 ? String(start[1]) : "",
                                  headers: headers, body: body)
            lock.lock()
            let number = _requests.count
            _requests.append(request)
            inFlight += 1
            _maxInFlight = max(_maxInFlight, inFlight)
            lock.unlock()
            let reply = handler(request, number)
            if reply.delay > 0 { Thread.sleep(forTimeInterval: reply.delay) }
            var out = "HTTP/1.1 \(reply.status) \(reply.status == 200 ? "OK" : "Status")\r\n"
            out += "Content-Length: \(reply.body.count)\r\n"
            if !reply.headers.contains(where: { $0.0.lowercased() == "content-type" }) { out += "Content-Type: application/json\r\n" }
            for (k, v) in reply.headers { out += "\(k): \(v)\r\n" }
            out += "\r\n"
            let bytes = Array(out.utf8) + Array(reply.body)
            var sent = 0
            var ok = true
            while sent < bytes.count {
                let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Self.noSignal) }
                if n <= 0 { ok = false; break }
                sent += n
            }
            lock.lock()
            inFlight -= 1
            lock.unlock()
            if !ok { return }
        }
    }
}

/// Canned OpenAI replies.
enum CannedOpenAI {
    static func chat(texts: [String], model: String = "teacher", finish: String = "stop", logprobs: Bool = false) -> String {
        let choices = texts.enumerated().map { i, t -> String in
            var lp = "null"
            if logprobs {
                lp = #"{"content":[{"token":"Hi","logprob":-0.25,"bytes":[72,105],"top_logprobs":[{"token":"Hi","logprob":-0.25},{"token":"Hello","logprob":-1.5}]},{"token":"!","logprob":-0.5,"top_logprobs":[{"token":"!","logprob":-0.5},{"token":".","logprob":-1.0}]}]}"#
            }
            return #"{"index":\#(i),"message":{"role":"assistant","content":\#(jsonString(t))},"logprobs":\#(lp),"finish_reason":"\#(finish)"}"#
        }
        return #"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"\#(model)","choices":[\#(choices.joined(separator: ","))],"usage":{"prompt_tokens":7,"completion_tokens":\#(2 * texts.count),"total_tokens":\#(7 + 2 * texts.count)}}"#
    }

    static func jsonString(_ s: String) -> String {
        String(decoding: try! JSONSerialization.data(withJSONObject: [s], options: [.withoutEscapingSlashes]), as: UTF8.self)
            .dropFirst().dropLast().description
    }
}
