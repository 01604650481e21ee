import Foundation

/// Unicode normalizers of tokenizer.json (`NFC`, `NFD`, `NFKC`, `NFKD`, and `Sequence`s of them).
/// Qwen2 uses NFC; SmolLM2 and Llama 3 have none.
enum NormalizationForm: String, Equatable, Sendable {
    case nfc = "NFC", nfd = "NFD", nfkc = "NFKC", nfkd = "NFKD"

    /// Below this scalar value every string is already in this form (so nothing needs doing).
    var identityBelow: UInt32 {
        switch self {
        case .nfc: return 0x300   // no composition has a second character below U+0300
        case .nfd, .nfkc, .nfkd: return 0x80
        }
    }

    func apply(_ s: String) -> String {
        switch self {
        case .nfc: return s.precomposedStringWithCanonicalMapping
        case .nfd: return s.decomposedStringWithCanonicalMapping
        case .nfkc: return s.precomposedStringWithCompatibilityMapping
        case .nfkd: return s.decomposedStringWithCompatibilityMapping
        }
    }
}

struct Normalizer: Equatable, Sendable, CustomStringConvertible {
    var forms: [NormalizationForm]

    var isEmpty: Bool { forms.isEmpty }
    var description: String { forms.map(\.rawValue).joined(separator: ",") }
    private var identityBelow: UInt32 { forms.map(\.identityBelow).min() ?? UInt32.max }

    /// The normalized scalars of `scalars`, or nil when they are already normalized.
    func normalize(_ scalars: UnsafeBufferPointer<UInt32>) -> [UInt32]? {
        let limit = identityBelow
        guard scalars.contains(where: { $0 >= limit }) else { return nil }
        var view = String.UnicodeScalarView()
        for v in scalars { view.append(Unicode.Scalar(v)!) }
        var s = String(view)
        for f in forms { s = f.apply(s) }
        return s.unicodeScalars.map(\.value)
    }

    func normalize(_ s: String) -> String {
        var out = s
        for f in forms { out = f.apply(out) }
        return out
    }
}
