import Foundation
// SQLite compiled from its amalgamation by vapor/sqlite-nio (functions prefixed `sqlite_nio_`),
// so that building Distill needs no system SQLite (libsqlite3-dev).
import VaporCSQLite

/// A value bound to or read from SQLite.
enum SQLValue: Equatable {
    case null, integer(Int64), real(Double), text(String), blob(Data)
}

/// Swift values that bind as SQL parameters.
protocol SQLBindable { var sqlValue: SQLValue { get } }
extension Int: SQLBindable { var sqlValue: SQLValue { .integer(Int64(self)) } }
extension Int64: SQLBindable { var sqlValue: SQLValue { .integer(self) } }
extension Double: SQLBindable { var sqlValue: SQLValue { .real(self) } }
extension String: SQLBindable { var sqlValue: SQLValue { .text(self) } }
extension Data: SQLBindable { var sqlValue: SQLValue { .blob(self) } }
extension Optional: SQLBindable where Wrapped: SQLBindable { var sqlValue: SQLValue { self?.sqlValue ?? .null } }

/// An SQLite result code with its message.
struct SQLiteError: Error, CustomStringConvertible {
    var code: Int32
    var message: String
    var description: String { "SQLite error \(code): \(message)" }
}

/// One row of a result, by column name.
struct SQLRow {
    let columns: [String: Int]
    let values: [SQLValue]

    subscript(_ name: String) -> SQLValue {
        guard let i = columns[name] else { preconditionFailure("SQLRow: no column \(name) in \(columns.keys.sorted())") }
        return values[i]
    }

    func string(_ name: String) -> String? {
        switch self[name] {
        case .text(let s): return s
        case .integer(let i): return String(i)
        case .real(let d): return String(d)
        case .blob(let d): return String(decoding: d, as: UTF8.self)
        case .null: return nil
        }
    }

    func int64(_ name: String) -> Int64? {
        switch self[name] {
        case .integer(let i): return i
        case .real(let d): return Int64(d)
        case .text(let s): return Int64(s)
        default: return nil
        }
    }

    func int(_ name: String) -> Int? { int64(name).map { Int($0) } }

    func data(_ name: String) -> Data? {
        switch self[name] {
        case .blob(let d): return d
        case .text(let s): return Data(s.utf8)
        default: return nil
        }
    }
}

/// One connection to an SQLite file, used from one thread at a time (`SQLiteDatabase` locks).
final class SQLiteConnection {
    fileprivate let handle: OpaquePointer
    private var statements: [String: OpaquePointer] = [:]

    fileprivate init(path: String) throws {
        var h: OpaquePointer?
        let rc = sqlite_nio_sqlite3_open_v2(path, &h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nil)
        guard rc == SQLITE_OK, let h else {
            let message = h.map { String(cString: sqlite_nio_sqlite3_errmsg($0)) } ?? "cannot open"
            if let h { _ = sqlite_nio_sqlite3_close_v2(h) }
            throw SQLiteError(code: rc, message: message)
        }
        handle = h
    }

    fileprivate func close() {
        for (_, s) in statements { _ = sqlite_nio_sqlite3_finalize(s) }
        statements = [:]
        _ = sqlite_nio_sqlite3_close_v2(handle)
    }

    private func error(_ rc: Int32) -> SQLiteError {
        SQLiteError(code: sqlite_nio_sqlite3_extended_errcode(handle), message: String(cString: sqlite_nio_sqlite3_errmsg(handle)))
    }

    /// Runs one or more statements without parameters.
    func execute(sql: String) throws {
        let rc = sqlite_nio_sqlite3_exec(handle, sql, nil, nil, nil)
        guard rc == SQLITE_OK else { throw error(rc) }
    }

    /// Runs one statement with `arguments` bound to its `?` parameters.
    func execute(sql: String, arguments: [any SQLBindable]) throws {
        try forEachRow(sql: sql, arguments: arguments) { _ in }
    }

    /// Every row of a query.
    func rows(sql: String, arguments: [any SQLBindable] = []) throws -> [SQLRow] {
        var out: [SQLRow] = []
        try forEachRow(sql: sql, arguments: arguments) { out.append($0) }
        return out
    }

    /// The first column of the first row, or nil (no row, or NULL).
    func scalar(sql: String, arguments: [any SQLBindable] = []) throws -> SQLValue? {
        var first: SQLValue?
        var seen = false
        try forEachRow(sql: sql, arguments: arguments) { row in
            if !seen { first = row.values.first; seen = true }
        }
        return first == .null ? nil : first
    }

    func string(sql: String, arguments: [any SQLBindable] = []) throws -> String? {
        guard case .text(let s)? = try scalar(sql: sql, arguments: arguments) else { return nil }
        return s
    }

    func int(sql: String, arguments: [any SQLBindable] = []) throws -> Int? {
        guard case .integer(let i)? = try scalar(sql: sql, arguments: arguments) else { return nil }
        return Int(i)
    }

    /// Runs a query, calling `body` with each row as it is stepped (a cursor: rows are not all
    /// held at once). Prepared statements are kept for reuse.
    func forEachRow(sql: String, arguments: [any SQLBindable], _ body: (SQLRow) throws -> Void) throws {
        let stmt: OpaquePointer
        if let s = statements[sql] {
            stmt = s
        } else {
            var s: OpaquePointer?
            let rc = sqlite_nio_sqlite3_prepare_v2(handle, sql, -1, &s, nil)
            guard rc == SQLITE_OK, let s else { throw error(rc) }
            statements[sql] = s
            stmt = s
        }
        defer {
            _ = sqlite_nio_sqlite3_reset(stmt)
            _ = sqlite_nio_sqlite3_clear_bindings(stmt)
        }
        let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
        for (i, a) in arguments.enumerated() {
            let index = Int32(i + 1)
            let rc: Int32
            switch a.sqlValue {
            case .null: rc = sqlite_nio_sqlite3_bind_null(stmt, index)
            case .integer(let v): rc = sqlite_nio_sqlite3_bind_int64(stmt, index, v)
            case .real(let v): rc = sqlite_nio_sqlite3_bind_double(stmt, index, v)
            case .text(let v): rc = sqlite_nio_sqlite3_bind_text(stmt, index, v, -1, transient)
            case .blob(let v):
                rc = v.withUnsafeBytes { sqlite_nio_sqlite3_bind_blob(stmt, index, $0.baseAddress, Int32($0.count), transient) }
            }
            guard rc == SQLITE_OK else { throw error(rc) }
        }
        let n = Int(sqlite_nio_sqlite3_column_count(stmt))
        var columns: [String: Int] = [:]
        for i in 0..<n { columns[String(cString: sqlite_nio_sqlite3_column_name(stmt, Int32(i)))] = i }
        while true {
            let rc = sqlite_nio_sqlite3_step(stmt)
            if rc == SQLITE_DONE { return }
            guard rc == SQLITE_ROW else { throw error(rc) }
            var values: [SQLValue] = []
            values.reserveCapacity(n)
            for i in 0..<Int32(n) {
                switch sqlite_nio_sqlite3_column_type(stmt, i) {
                case SQLITE_INTEGER: values.append(.integer(sqlite_nio_sqlite3_column_int64(stmt, i)))
                case SQLITE_FLOAT: values.append(.real(sqlite_nio_sqlite3_column_double(stmt, i)))
                case SQLITE_TEXT: values.append(.text(String(cString: sqlite_nio_sqlite3_column_text(stmt, i))))
                case SQLITE_BLOB:
                    let count = Int(sqlite_nio_sqlite3_column_bytes(stmt, i))
                    values.append(.blob(count == 0 ? Data() : Data(bytes: sqlite_nio_sqlite3_column_blob(stmt, i), count: count)))
                default: values.append(.null)
                }
            }
            try body(SQLRow(columns: columns, values: values))
        }
    }
}

/// An SQLite file in WAL mode with every commit synced (`synchronous = FULL`) and foreign keys
/// on; reads and writes run in transactions, one at a time (a lock), and wait up to 30 s for
/// another process's lock.
final class SQLiteDatabase: @unchecked Sendable {
    private let connection: SQLiteConnection
    private let lock = NSLock()

    init(path: String) throws {
        connection = try SQLiteConnection(path: path)
        do {
            _ = sqlite_nio_sqlite3_busy_timeout(connection.handle, 30_000)
            try connection.execute(sql: "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
        } catch {
            connection.close()
            throw error
        }
    }

    deinit { connection.close() }

    /// `body` in a read transaction (one consistent snapshot).
    func read<T>(_ body: (SQLiteConnection) throws -> T) throws -> T {
        try transaction("BEGIN DEFERRED", body)
    }

    /// `body` in a write transaction: committed when it returns, rolled back when it throws.
    func write<T>(_ body: (SQLiteConnection) throws -> T) throws -> T {
        try transaction("BEGIN IMMEDIATE", body)
    }

    private func transaction<T>(_ begin: String, _ body: (SQLiteConnection) throws -> T) throws -> T {
        lock.lock()
        defer { lock.unlock() }
        try connection.execute(sql: begin)
        do {
            let value = try body(connection)
            try connection.execute(sql: "COMMIT")
            return value
        } catch {
            try? connection.execute(sql: "ROLLBACK")
            throw error
        }
    }

    /// Applies the `migrations` (identifier, SQL) not yet applied, in order, each in its own
    /// transaction, recording them in `grdb_migrations` (the table GRDB kept, so stores written by
    /// earlier versions open unchanged). Returns identifiers applied here before that this list
    /// does not know (a store from a newer version), without migrating.
    func migrate(_ migrations: [(String, String)]) throws -> [String] {
        let applied = try write { c -> Set<String> in
            try c.execute(sql: "CREATE TABLE IF NOT EXISTS grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY)")
            return Set(try c.rows(sql: "SELECT identifier FROM grdb_migrations").compactMap { $0.string("identifier") })
        }
        let unknown = applied.subtracting(migrations.map(\.0)).sorted()
        if !unknown.isEmpty { return unknown }
        for (id, sql) in migrations where !applied.contains(id) {
            try write { c in
                try c.execute(sql: sql)
                try c.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES (?)", arguments: [id])
            }
        }
        return []
    }
}
