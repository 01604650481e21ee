import DistillNN
import DistillTensor
import XCTest

/// The KV cache grows in place: decoding token by token (past its first capacity, so it grows)
/// gives the logits of the full forward pass; dropping and repeating batch rows keeps each row's
/// cache.
final class KVCacheTests: XCTestCase {
    func model() -> TransformerLM {
        TransformerLM(TransformerConfig(vocabSize: 40, hidden: 16, layers: 2, heads: 4, kvHeads: 2, intermediate: 24, qkvBias: true),
                      seed: 5)
    }

    func testDecodingStepByStepEqualsTheFullForward() {
        let m = model(), v = 40
        let rows = [(0..<37).map { ($0 * 7 + 3) % v }, (0..<37).map { ($0 * 11 + 1) % v }]
        let full = withoutGradients { m.forward(rows[0] + rows[1], batch: 2, length: 37).logits }   // (2, 37, V)
        let cache = m.makeCache()
        withoutGradients {
            // A prompt of 5, then one token at a time: capacity 16 → 32 → 64.
            var out = m.forward(Array(rows[0][0..<5]) + Array(rows[1][0..<5]), batch: 2, length: 5, cache: cache).logits
            for t in 5..<37 {
                for b in 0..<2 {
                    let got = Array(out.scalars[((b * out.shape[1]) + out.shape[1] - 1) * v..<((b * out.shape[1]) + out.shape[1]) * v])
                    let want = Array(full.scalars[(b * 37 + t - 1) * v..<(b * 37 + t) * v])
                    for (x, y) in zip(got, want) { XCTAssertEqual(x, y, accuracy: 2e-5, "row \(b) position \(t - 1)") }
                }
                out = m.forward([rows[0][t], rows[1][t]], batch: 2, length: 1, positions: [[t], [t]], cache: cache).logits
            }
        }
        XCTAssertGreaterThanOrEqual(cache.layers[0].capacity, 37)
        XCTAssertEqual(cache.layers[0].length, 37)
        XCTAssertEqual(cache.layers[0].keys?.shape, [2, 2, 37, 4])
    }

    func testSelectAndRepeatRowsKeepEachRowsCache() {
        let m = model(), v = 40
        let a = [1, 2, 3, 4, 5, 6], b = [9, 8, 7, 6, 5, 4]
        let cache = m.makeCache()
        withoutGradients {
            _ = m.forward(Array(a.prefix(4)) + Array(b.prefix(4)), batch: 2, length: 4, cache: cache)
            cache.select(rows: [1])           // keep b only
            cache.repeatBatch(2)              // two samples of b
            let out = m.forward([b[4], b[4]], batch: 2, length: 1, positions: [[4], [4]], cache: cache).logits.scalars
            let want = m.forward(Array(b.prefix(5)), batch: 1, length: 5).logits.scalars.suffix(v)
            for (x, y) in zip(out.prefix(v), want) { XCTAssertEqual(x, y, accuracy: 2e-5) }
            for (x, y) in zip(out.suffix(v), want) { XCTAssertEqual(x, y, accuracy: 2e-5) }
        }
    }

    /// Dropping finished rows (kept rows in increasing order) moves the kept rows within the
    /// buffers; any other order (samples sharing a prompt row) copies. Either way each kept row's
    /// entries are what they were, and decoding on (past the capacity, so the buffers grow from
    /// the moved rows) gives each row's logits of the full forward pass.
    func testDroppingRowsInPlaceKeepsTheRowsAndDecodingGoesOn() {
        let m = model(), v = 40
        let rows = (0..<5).map { r in (0..<30).map { ($0 * (3 + 2 * r) + r) % v } }
        for keep in [[1, 3, 4], [0, 2], [4], [3, 1], [2, 2, 0]] {
            let cache = m.makeCache()
            withoutGradients {
                _ = m.forward(rows.flatMap { $0.prefix(12) }, batch: 5, length: 12, cache: cache)
                let before = cache.layers.map { ($0.keys!, $0.values!) }
                cache.select(rows: keep)
                for (layer, (k, v0)) in zip(cache.layers, before) {
                    XCTAssertEqual(layer.batch, keep.count)
                    XCTAssertEqual(layer.keys!.scalars, k.indexSelect(keep, axis: 0).scalars, "keys after keeping \(keep)")
                    XCTAssertEqual(layer.values!.scalars, v0.indexSelect(keep, axis: 0).scalars, "values after keeping \(keep)")
                }
                var out = Tensor(zeros: [0])
                for t in 12..<30 {
                    out = m.forward(keep.map { rows[$0][t] }, batch: keep.count, length: 1,
                                    positions: Array(repeating: [t], count: keep.count), cache: cache).logits
                }
                for (i, r) in keep.enumerated() {
                    let want = m.forward(rows[r], batch: 1, length: 30).logits.scalars.suffix(v)
                    for (x, y) in zip(out.scalars[(i * v)..<((i + 1) * v)], want) { XCTAssertEqual(x, y, accuracy: 2e-5, "row \(r) of \(keep)") }
                }
            }
        }
    }
}
