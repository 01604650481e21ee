import DistillNN
import DistillTensor
import Distillation
import XCTest

/// Feature (hidden-state) distillation: layer maps, the projector, values and gradients.
final class FeatureLossTests: XCTestCase {
    // round((i + 1)·L_t/L_s) − 1:
    //   L_s = 4, L_t = 12: 3, 6, 9, 12 → [2, 5, 8, 11]
    //   L_s = 3, L_t = 8:  2.67, 5.33, 8 → 3, 5, 8 → [2, 4, 7]
    //   L_s = 4, L_t = 6:  1.5, 3, 4.5, 6 → 2, 3, 5, 6 → [1, 2, 4, 5] (halves away from zero)
    //   L_s = 2, L_t = 2:  identity; L_s = 4, L_t = 1: 0.25… → [0, 0, 0, 0]
    func testUniformLayerMap() {
        XCTAssertEqual(LayerMap.uniformTeacherLayers(studentLayers: 4, teacherLayers: 12), [2, 5, 8, 11])
        XCTAssertEqual(LayerMap.uniformTeacherLayers(studentLayers: 3, teacherLayers: 8), [2, 4, 7])
        XCTAssertEqual(LayerMap.uniformTeacherLayers(studentLayers: 4, teacherLayers: 6), [1, 2, 4, 5])
        XCTAssertEqual(LayerMap.uniformTeacherLayers(studentLayers: 2, teacherLayers: 2), [0, 1])
        XCTAssertEqual(LayerMap.uniformTeacherLayers(studentLayers: 4, teacherLayers: 1), [0, 0, 0, 0])
        let m = LayerMap.uniform(studentLayers: 4, teacherLayers: 12)
        XCTAssertEqual(m.studentLayers, [0, 1, 2, 3])
        XCTAssertEqual(m.teacherLayers, [2, 5, 8, 11])
        XCTAssertEqual(LayerMap.uniform(studentLayers: 2, teacherLayers: 4).teacherLayers,
                       Fixture.ints(Fixture.object(Fixture.losses["feature"])["map"]))
    }

    func testExplicitLayerMap() throws {
        let m = try LayerMap([(student: 1, teacher: 7), (student: 0, teacher: 2)])
        XCTAssertEqual(m.pairs, [.init(student: 1, teacher: 7), .init(student: 0, teacher: 2)])
        assertThrowsMessage(try LayerMap([(student: 0, teacher: 1), (student: 0, teacher: 2)]), contains: ["LayerMap", "student layer 0 mapped twice"])
        assertThrowsMessage(try LayerMap([(student: -1, teacher: 1)]), contains: ["LayerMap", "negative"])
        assertThrowsMessage(try m.validate(studentLayers: 2, teacherLayers: 6), contains: ["teacher layer", "7", "0..<6"])
    }

    func testProjectorParameterNames() {
        var rng = RandomGenerator(seed: 3)
        let p = FeatureProjector(studentWidth: 6, teacherWidth: 8, pairs: 2, rng: &rng)
        XCTAssertEqual(p.namedParameters().map(\.name),
                       ["projections.0.weight", "projections.0.bias", "projections.1.weight", "projections.1.bias"])
        XCTAssertEqual(p.projections[0].weight.shape, [8, 6])
    }

    /// A projection from raw tensors (weights xs[w0 + k], biases xs[b0 + k]) — the same maths as
    /// `FeatureProjector`'s Linear layers, but on tensors that `valueAndGradient(at:)` can differentiate.
    func linear(_ xs: [Tensor], weights w0: Int, biases b0: Int) -> (Tensor, Int) -> Tensor {
        { h, k in h.matmul(xs[w0 + k], transB: true) + xs[b0 + k] }
    }

    func testMatchesPyTorch() {
        let f = Fixture.object(Fixture.losses["feature"])
        let student = (f["student"] as! [Any]).map(Fixture.tensor)
        let teacher = (f["teacher"] as! [Any]).map(Fixture.tensor)
        let weights = (f["weights"] as! [Any]).map(Fixture.tensor)
        let biases = (f["biases"] as! [Any]).map(Fixture.tensor)
        let map = LayerMap.uniform(studentLayers: 2, teacherLayers: 4)
        for c in Fixture.list(f["cases"]) {
            let distance = FeatureDistance(rawValue: c["distance"] as! String)!
            let (v, g) = valueAndGradient(at: student + weights + biases) { xs in
                DistillationLoss.feature(student: Array(xs[0..<2]), teacher: teacher, map: map,
                                         project: linear(xs, weights: 2, biases: 4), distance: distance, mask: Fixture.mask)
            }
            assertRelative(v.item, Fixture.double(c["value"]), "feature \(distance)")
            let expected = ((c["grad_student"] as! [Any]) + (c["grad_weights"] as! [Any]) + (c["grad_biases"] as! [Any])).map(Fixture.tensor)
            for (i, (a, e)) in zip(g, expected).enumerated() {
                assertTensorsClose(a, e, "feature \(distance) gradient \(i)")
            }
            // The Module path: a FeatureProjector with the same weights gives the same value, and
            // the same gradients for its parameters.
            let projector = FeatureProjector(weights: weights, biases: biases)
            let (mv, mg) = valueAndGradient(projector) { p in
                DistillationLoss.feature(student: student, teacher: teacher, map: map, projector: p, distance: distance, mask: Fixture.mask)
            }
            assertRelative(mv, Fixture.double(c["value"]), "feature \(distance) through FeatureProjector")
            assertTensorsClose(mg["projections.0.weight"]!, expected[2], "projector weight 0")
            assertTensorsClose(mg["projections.1.weight"]!, expected[3], "projector weight 1")
            assertTensorsClose(mg["projections.0.bias"]!, expected[4], "projector bias 0")
            assertTensorsClose(mg["projections.1.bias"]!, expected[5], "projector bias 1")
        }
    }

    /// The projector's parameters get gradients through the Module API, as in training.
    func testProjectorTrainsThroughModuleGradients() {
        var rng = RandomGenerator(seed: 5)
        let projector = FeatureProjector(studentWidth: 4, teacherWidth: 6, pairs: 1, rng: &rng)
        let hs = normal([2, 3, 4], seed: 1), ht = normal([2, 3, 6], seed: 2)
        let map = try! LayerMap([(student: 0, teacher: 0)])
        let (loss, grads) = valueAndGradient(projector) { p in
            DistillationLoss.feature(student: [hs], teacher: [ht], map: map, projector: p)
        }
        XCTAssertGreaterThan(loss, 0)
        XCTAssertEqual(grads.names, ["projections.0.weight", "projections.0.bias"])
        XCTAssertGreaterThan(grads.tensors[0].scalars.map(abs).max()!, 0)
    }

    func testIdenticalFeaturesGiveZero() {
        let h = normal([2, 3, 5], seed: 9)
        let map = try! LayerMap([(student: 0, teacher: 0)])
        XCTAssertEqual(DistillationLoss.feature(student: [h], teacher: [h], map: map).item, 0)
        XCTAssertEqual(DistillationLoss.feature(student: [h], teacher: [h], map: map, distance: .cosine).item, 0, accuracy: 1e-6)
        // Cosine ignores scale: 2h against h is still 0.
        XCTAssertEqual(DistillationLoss.feature(student: [h * 2], teacher: [h], map: map, distance: .cosine).item, 0, accuracy: 1e-6)
    }

    func testFiniteDifferenceGradients() {
        let hs = [normal([2, 3, 4], seed: 21), normal([2, 3, 4], seed: 22)]
        let ht = [normal([2, 3, 5], seed: 23), normal([2, 3, 5], seed: 24), normal([2, 3, 5], seed: 25)]
        let w = [normal([5, 4], std: 0.5, seed: 26), normal([5, 4], std: 0.5, seed: 27)]
        let b = [normal([5], std: 0.1, seed: 28), normal([5], std: 0.1, seed: 29)]
        let map = try! LayerMap([(student: 0, teacher: 1), (student: 1, teacher: 2)])
        let mask = LossMask([true, false, true, true, true, false])
        for distance in [FeatureDistance.mse, .cosine] {
            checkGradients(inputs: hs + w + b) { xs in
                DistillationLoss.feature(student: Array(xs[0..<2]), teacher: ht, map: map,
                                         project: linear(xs, weights: 2, biases: 4), distance: distance, mask: mask)
            }
        }
    }

    func testBadInputIsReported() {
        let map = LayerMap.uniform(studentLayers: 2, teacherLayers: 4)
        let s = [[2, 3, 6], [2, 3, 6]], t = [[2, 3, 8], [2, 3, 8], [2, 3, 8], [2, 3, 8]]
        XCTAssertNoThrow(try DistillationLoss.validateFeatures(student: s, teacher: t, map: map, projector: [[8, 6], [8, 6]], mask: nil))
        assertThrowsMessage(try DistillationLoss.validateFeatures(student: s, teacher: t, map: map, projector: nil, mask: nil),
                            contains: ["featureLoss", "student width 6", "teacher width 8", "FeatureProjector"])
        assertThrowsMessage(try DistillationLoss.validateFeatures(student: s, teacher: t, map: map, projector: [[8, 5], [8, 5]], mask: nil),
                            contains: ["featureLoss", "[8, 5]", "[8, 6]"])
        assertThrowsMessage(try DistillationLoss.validateFeatures(student: s, teacher: Array(t.prefix(3)), map: map, projector: [[8, 6], [8, 6]], mask: nil),
                            contains: ["featureLoss", "teacher layer 3", "0..<3"])
        assertThrowsMessage(try DistillationLoss.validateFeatures(student: [[2, 4, 6], [2, 4, 6]], teacher: t, map: map, projector: [[8, 6], [8, 6]], mask: nil),
                            contains: ["featureLoss", "[2, 4, 6]", "[2, 3, 8]"])
        assertThrowsMessage(try DistillationLoss.validateFeatures(student: s, teacher: t, map: map, projector: [[8, 6], [8, 6]], mask: .all(5)),
                            contains: ["featureLoss", "mask is for 5 rows", "6 rows"])
    }
}
