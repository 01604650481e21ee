import DistillNN
import DistillTensor
import Foundation
import XCTest

/// Reads a JSON fixture from the test bundle's Fixtures folder.
func loadFixture(_ name: String) throws -> [String: Any] {
    guard let url = Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Fixtures") else {
        throw XCTSkip("fixture \(name).json missing from the test bundle")
    }
    let data = try Data(contentsOf: url)
    return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
}

/// {"shape": [...], "data": [...]} -> Tensor
func tensor(fromFixture value: Any?) throws -> Tensor {
    let obj = try XCTUnwrap(value as? [String: Any])
    let shape = try XCTUnwrap(obj["shape"] as? [Int])
    let data = try XCTUnwrap(obj["data"] as? [Double]).map(Float.init)
    return Tensor(data, shape: shape)
}

func floats(_ value: Any?) throws -> [Float] { try XCTUnwrap(value as? [Double]).map(Float.init) }

/// Largest |a − b| relative to the largest |b| (so tiny entries of a large tensor are judged on
/// the tensor's scale, as float32 rounding is).
func relativeMaxError(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    var err: Float = 0, scale: Float = 1e-12
    for (x, y) in zip(a, b) { err = max(err, abs(x - y)); scale = max(scale, abs(y)) }
    return err / scale
}

/// The decoder a parity fixture describes (`config`: vocab_size, hidden, layers, heads, kv_heads,
/// intermediate, rope_theta, rms_norm_eps, tie_embeddings) with the weights under `parameters`.
func fixtureModel(_ f: [String: Any], parameters key: String) throws -> TransformerLM {
    let c = try XCTUnwrap(f["config"] as? [String: Any])
    let config = TransformerConfig(
        vocabSize: c["vocab_size"] as! Int, hidden: c["hidden"] as! Int, layers: c["layers"] as! Int,
        heads: c["heads"] as! Int, kvHeads: c["kv_heads"] as! Int, intermediate: c["intermediate"] as! Int,
        ropeTheta: Float(c["rope_theta"] as! Double), rmsNormEps: Float(c["rms_norm_eps"] as! Double),
        tieEmbeddings: c["tie_embeddings"] as! Bool)
    let model = TransformerLM(config)
    let params = try XCTUnwrap(f[key] as? [String: Any])
    try model.load(params.mapValues { try tensor(fromFixture: $0) })
    return model
}
