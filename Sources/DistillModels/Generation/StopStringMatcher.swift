/// Watches generated tokens for stop strings: each token's text comes from a `StreamingDecoder`
/// and is searched together with the end of the text before it (as long as the longest stop
/// string), so a token costs the length of its own text rather than a decode of the whole
/// continuation.
public struct StopStringMatcher {
    public let stops: [String]
    private var decoder: StreamingDecoder
    private var tail = ""
    private let keep: Int

    /// `stops` must not be empty; special tokens are skipped as in the returned text.
    public init(stops: [String], tokenizer: Tokenizer) {
        self.stops = stops
        decoder = tokenizer.makeStreamingDecoder(skipSpecialTokens: true)
        keep = stops.map(\.count).max() ?? 0
    }

    /// Adds one generated token; true once a stop string has appeared.
    public mutating func add(_ token: Int) -> Bool {
        let piece = decoder.add(token)
        guard !piece.isEmpty else { return false }
        let window = tail + piece
        if stops.contains(where: { window.contains($0) }) { return true }
        tail = String(window.suffix(keep))
        return false
    }
}
