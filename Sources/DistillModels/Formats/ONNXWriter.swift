import DistillTensor
import Foundation
import ONNXSchema
import SwiftProtobuf

/// Element types of ONNX tensors this writer uses (`TensorProto.DataType` codes).
public enum ONNXElementType: Int32, Sendable {
    case float = 1, int64 = 7, bool = 9, float16 = 10

    var byteCount: Int {
        switch self {
        case .float: return 4
        case .int64: return 8
        case .bool: return 1
        case .float16: return 2
        }
    }
}

/// An ONNX graph built node by node, then written as a model file (`write`). Weights are kept as
/// closures until the file is written, so that a model is converted one tensor at a time; past
/// `externalDataThreshold` bytes of weights they go to a separate data file (protobuf messages are
/// limited to 2 GB), as ONNX's external-data convention lays it out (location, offset, length).
struct ONNXGraphBuilder {
    /// A weight: its values are asked for when the file is written.
    struct Weight {
        var name: String
        var shape: [Int]
        var type: ONNXElementType
        var bytes: () throws -> Data
    }

    var graphName: String
    private(set) var nodes: [Onnx_NodeProto] = []
    private(set) var constants: [Onnx_TensorProto] = []
    private(set) var weights: [Weight] = []
    private(set) var inputs: [Onnx_ValueInfoProto] = []
    private(set) var outputs: [Onnx_ValueInfoProto] = []
    private var used: [String: Int] = [:]
    private var constantNames: [String: String] = [:]

    init(name: String) { graphName = name }

    /// A fresh value name from `hint`.
    mutating func fresh(_ hint: String) -> String {
        let n = used[hint, default: 0]
        used[hint] = n + 1
        return n == 0 ? hint : "\(hint)_\(n)"
    }

    /// Keeps `names` (graph outputs made later) from being given to other values.
    mutating func reserve(_ names: [String]) {
        for n in names { used[n, default: 0] += 1 }
    }

    // MARK: graph inputs and outputs

    /// A graph input or output type: dims are sizes or symbolic names.
    enum Dim { case fixed(Int), symbolic(String) }

    static func valueInfo(_ name: String, _ type: ONNXElementType, _ dims: [Dim]) -> Onnx_ValueInfoProto {
        var shape = Onnx_TensorShapeProto()
        shape.dim = dims.map { d in
            var x = Onnx_TensorShapeProto.Dimension()
            switch d {
            case .fixed(let n): x.dimValue = Int64(n)
            case .symbolic(let s): x.dimParam = s
            }
            return x
        }
        var tensor = Onnx_TypeProto.Tensor()
        tensor.elemType = type.rawValue
        tensor.shape = shape
        var t = Onnx_TypeProto()
        t.tensorType = tensor
        var v = Onnx_ValueInfoProto()
        v.name = name
        v.type = t
        return v
    }

    mutating func input(_ name: String, _ type: ONNXElementType, _ dims: [Dim]) -> String {
        used[name, default: 0] += 1
        inputs.append(Self.valueInfo(name, type, dims))
        return name
    }

    /// Makes `value` a graph output named `name` (an Identity node when the names differ).
    mutating func output(_ value: String, as name: String, _ type: ONNXElementType, _ dims: [Dim]) {
        if value != name {
            var n = Onnx_NodeProto()
            n.opType = "Identity"
            n.name = "Identity_\(nodes.count)"
            n.input = [value]
            n.output = [name]
            nodes.append(n)
        }
        outputs.append(Self.valueInfo(name, type, dims))
    }

    // MARK: nodes

    enum Attribute {
        case int(String, Int)
        case ints(String, [Int])
        case float(String, Float)

        var proto: Onnx_AttributeProto {
            var a = Onnx_AttributeProto()
            switch self {
            case let .int(name, v): a.name = name; a.type = .int; a.i = Int64(v)
            case let .ints(name, v): a.name = name; a.type = .ints; a.ints = v.map(Int64.init)
            case let .float(name, v): a.name = name; a.type = .float; a.f = v
            }
            return a
        }
    }

    /// Adds a node; returns its output names (fresh ones from the op type unless given).
    @discardableResult
    mutating func node(_ op: String, _ inputs: [String], _ attributes: [Attribute] = [], outputs given: [String]? = nil,
                       count: Int = 1, hint: String? = nil) -> [String] {
        let outs = given ?? (0..<count).map { _ in fresh(hint ?? op.lowercased()) }
        var n = Onnx_NodeProto()
        n.opType = op
        n.name = "\(op)_\(nodes.count)"
        n.input = inputs
        n.output = outs
        n.attribute = attributes.map(\.proto)
        nodes.append(n)
        return outs
    }

    /// One-output node.
    mutating func op(_ op: String, _ inputs: String..., attributes: [Attribute] = [], hint: String? = nil) -> String {
        node(op, inputs, attributes, hint: hint)[0]
    }

    // MARK: constants and weights

    /// An int64 constant (an initializer, shared by equal values); `shape` [] is a scalar.
    mutating func ints(_ values: [Int], shape: [Int]? = nil) -> String {
        constant(.int64, dims: shape ?? [values.count], key: "\(values)") { $0.int64Data = values.map(Int64.init) }
    }

    mutating func int(_ v: Int) -> String { ints([v], shape: []) }

    /// A float32 constant (shared by equal values); `shape` [] is a scalar.
    mutating func floats(_ values: [Float], shape: [Int]? = nil) -> String {
        constant(.float, dims: shape ?? [values.count], key: "\(values.map(\.bitPattern))") { $0.floatData = values }
    }

    /// The initializer for a constant of `type` and `dims` whose values `key` identifies: made by
    /// `fill` the first time, its name reused after.
    private mutating func constant(_ type: ONNXElementType, dims: [Int], key values: String,
                                   fill: (inout Onnx_TensorProto) -> Void) -> String {
        let key = "\(type.rawValue)\(dims):\(values)"
        if let name = constantNames[key] { return name }
        var t = Onnx_TensorProto()
        t.name = fresh("const")
        t.dataType = type.rawValue
        t.dims = dims.map(Int64.init)
        fill(&t)
        constants.append(t)
        constantNames[key] = t.name
        return t.name
    }

    mutating func float(_ v: Float) -> String { floats([v], shape: []) }

    /// A weight initializer named `name` whose bytes `bytes()` gives when the file is written.
    mutating func weight(_ name: String, shape: [Int], type: ONNXElementType, bytes: @escaping () throws -> Data) -> String {
        used[name, default: 0] += 1
        weights.append(Weight(name: name, shape: shape, type: type, bytes: bytes))
        return name
    }

    var weightBytes: Int { weights.reduce(0) { $0 + $1.shape.reduce($1.type.byteCount, *) } }

    // MARK: writing

    /// Writes `dir/fileName` (and `dir/fileName_data` when the weights go to external data),
    /// each to a temporary file renamed into place when complete. `progress(i, n, name)` before
    /// each weight.
    func write(directory dir: String, fileName: String, opset: Int, producer: String, docString: String,
               metadata: [(String, String)], externalDataThreshold: Int,
               progress: (Int, Int, String) -> Void = { _, _, _ in }) throws {
        let external = weightBytes > externalDataThreshold
        let modelPath = (dir as NSString).appendingPathComponent(fileName)
        let dataName = fileName + "_data"
        let dataPath = (dir as NSString).appendingPathComponent(dataName)
        var initializers = constants
        initializers.reserveCapacity(constants.count + weights.count)
        func proto(_ w: Weight) -> Onnx_TensorProto {
            var t = Onnx_TensorProto()
            t.name = w.name
            t.dataType = w.type.rawValue
            t.dims = w.shape.map(Int64.init)
            return t
        }
        func checked(_ w: Weight) throws -> Data {
            let data = try w.bytes()
            let expected = w.shape.reduce(w.type.byteCount, *)
            guard data.count == expected else {
                throw FileError(file: modelPath, location: w.name, "\(data.count) bytes for a tensor of \(expected)")
            }
            return data
        }
        if external {
            // Each tensor at a page-aligned offset, so that onnxruntime can map it in place.
            let alignment = 4096
            var offset = 0
            let zeros = Data(count: alignment)
            try writeAtomically(to: dataPath) { out in
                for (i, w) in weights.enumerated() {
                    progress(i, weights.count, w.name)
                    let data = try checked(w)
                    try data.withUnsafeBytes { try out.write($0) }
                    var t = proto(w)
                    t.dataLocation = .external
                    t.externalData = [("location", dataName), ("offset", "\(offset)"), ("length", "\(data.count)")].map { k, v in
                        var e = Onnx_StringStringEntryProto()
                        e.key = k
                        e.value = v
                        return e
                    }
                    initializers.append(t)
                    offset += data.count
                    let pad = (alignment - offset % alignment) % alignment
                    if pad > 0 && i < weights.count - 1 {
                        try zeros.withUnsafeBytes { try out.write(UnsafeRawBufferPointer(rebasing: $0[0..<pad])) }
                        offset += pad
                    }
                }
            }
        } else {
            for (i, w) in weights.enumerated() {
                progress(i, weights.count, w.name)
                var t = proto(w)
                t.rawData = try checked(w)
                initializers.append(t)
            }
        }
        var graph = Onnx_GraphProto()
        graph.name = graphName
        graph.node = nodes
        graph.initializer = initializers
        graph.input = inputs
        graph.output = outputs
        var opsetId = Onnx_OperatorSetIdProto()
        opsetId.domain = ""
        opsetId.version = Int64(opset)
        var model = Onnx_ModelProto()
        model.irVersion = 8          // the IR version of opset 17's release (ONNX 1.12)
        model.opsetImport = [opsetId]
        model.producerName = producer
        model.docString = docString
        model.graph = graph
        model.metadataProps = metadata.map { k, v in
            var e = Onnx_StringStringEntryProto()
            e.key = k
            e.value = v
            return e
        }
        do {
            let bytes: Data
            do { bytes = try model.serializedBytes() } catch {
                throw FileError(file: modelPath, "cannot encode the ONNX model: \(error)")
            }
            try writeAtomically(to: modelPath) { out in try bytes.withUnsafeBytes { try out.write($0) } }
            if !external { unlink(dataPath) }      // a stale data file of an earlier export
        } catch {
            if external { unlink(dataPath) }
            throw error
        }
    }
}

extension ONNXGraphBuilder {
    /// Float32 values as raw little-endian bytes.
    static func bytes(_ values: UnsafePointer<Float>, count: Int, as type: ONNXElementType) -> Data {
        switch type {
        case .float:
            return Data(bytes: values, count: count * 4)
        case .float16:
            var d = Data(count: count * 2)
            d.withUnsafeMutableBytes { raw in
                let h = raw.bindMemory(to: UInt16.self)
                for i in 0..<count { h[i] = HalfPrecision.half(from: values[i]).littleEndian }
            }
            return d
        case .int64, .bool:
            preconditionFailure("ONNXGraphBuilder.bytes: float values stored as \(type)")
        }
    }

    /// A [rows, cols] matrix stored transposed ([cols, rows]), as `type`.
    static func transposedBytes(_ m: Tensor, as type: ONNXElementType) -> Data {
        precondition(m.rank == 2, "transposedBytes: a matrix, got \(m.shape)")
        let rows = m.shape[0], cols = m.shape[1]
        var t = [Float](repeating: 0, count: rows * cols)
        let src = m.storage.pointer
        let tile = 32
        t.withUnsafeMutableBufferPointer { dst in
            for r0 in stride(from: 0, to: rows, by: tile) {
                for c0 in stride(from: 0, to: cols, by: tile) {
                    for r in r0..<min(r0 + tile, rows) {
                        for c in c0..<min(c0 + tile, cols) { dst[c * rows + r] = src[r * cols + c] }
                    }
                }
            }
        }
        return t.withUnsafeBufferPointer { bytes($0.baseAddress!, count: t.count, as: type) }
    }
}
