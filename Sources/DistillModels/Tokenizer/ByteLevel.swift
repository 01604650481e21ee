/// GPT-2's reversible byte <-> Unicode map, used by every byte-level BPE vocabulary: the 188
/// printable bytes (`!`..`~`, `¡`..`¬`, `®`..`ÿ`) stand for themselves, and the other 68 bytes
/// (controls, space, DEL, NBSP, soft hyphen) are given U+0100, U+0101, ... in byte order, so that a
/// space is `Ġ` (U+0120) and a newline `Ċ` (U+010A).
enum ByteLevel {
    /// byteToScalar[b] = the character that stands for byte b in vocabulary strings.
    static let byteToScalar: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            if isPrintable(UInt8(b)) {
                table[b] = Unicode.Scalar(UInt8(b))
            } else {
                table[b] = Unicode.Scalar(next)!
                next += 1
            }
        }
        return table
    }()

    /// scalarToByte[v] = the byte that character v stands for, or -1; v < 0x144 (256 + 68).
    static let scalarToByte: [Int16] = {
        var table = [Int16](repeating: -1, count: 0x144)
        for (b, s) in byteToScalar.enumerated() { table[Int(s.value)] = Int16(b) }
        return table
    }()

    @inline(__always)
    static func isPrintable(_ b: UInt8) -> Bool {
        (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE
    }

    /// The byte a vocabulary character stands for, if it is one of the 256.
    @inline(__always)
    static func byte(for scalar: Unicode.Scalar) -> UInt8? {
        let v = Int(scalar.value)
        guard v < scalarToByte.count, scalarToByte[v] >= 0 else { return nil }
        return UInt8(scalarToByte[v])
    }

    /// The vocabulary string for raw bytes: "hi there" -> "hiĠthere".
    static func encode<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(byteToScalar[Int(b)]) }
        return String(s)
    }

    /// The raw bytes a vocabulary string stands for, or nil when one of its characters is outside the
    /// 256 (added tokens such as "<|im_start|>" are all inside; "a b" with a real space is not).
    static func decode(_ token: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(token.utf8.count)
        for s in token.unicodeScalars {
            guard let b = byte(for: s) else { return nil }
            out.append(b)
        }
        return out
    }

    /// Hugging Face's ByteLevel decoder for one token: the bytes it stands for, or, when any character
    /// is outside the map, the token's own UTF-8 bytes.
    static func decodeOrRaw(_ token: String) -> [UInt8] {
        decode(token) ?? Array(token.utf8)
    }
}
