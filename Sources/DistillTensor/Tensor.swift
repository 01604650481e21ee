import Foundation

/// Reference-counted Float32 buffer that tensors share. Ops never write into a storage that a
/// tensor already exposes; every op result gets a fresh storage (value semantics).
public final class Storage: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int
    private let release: (() -> Void)?

    /// A new, uninitialised buffer of `count` floats, 64-byte aligned (reused from `BufferPool`
    /// when a freed buffer of the same size is waiting there).
    public init(count: Int) {
        self.count = count
        let raw = BufferPool.shared.take(byteCount: Swift.max(count, 1) * 4)
        pointer = raw.bindMemory(to: Float.self, capacity: Swift.max(count, 1))
        release = nil
    }

    /// Wraps memory owned elsewhere (a memory-mapped file, say); `release` runs on deinit.
    public init(borrowing pointer: UnsafeMutablePointer<Float>, count: Int, release: @escaping () -> Void) {
        self.pointer = pointer
        self.count = count
        self.release = release
    }

    deinit {
        if let release { release() } else { BufferPool.shared.give(UnsafeMutableRawPointer(pointer), byteCount: Swift.max(count, 1) * 4) }
    }
}

/// An n-dimensional array of Float32 in row-major (C) order, with value semantics.
///
/// A tensor is immutable once built: ops return new tensors. When gradient recording is on and an
/// input requires a gradient, the result carries a `Node` that remembers the op and its inputs
/// (see `Autodiff.swift`).
public struct Tensor: @unchecked Sendable {
    public let shape: [Int]
    public let storage: Storage
    /// Autodiff record: nil for constants; a leaf node for tensors that require a gradient.
    public internal(set) var node: Node?

    public var rank: Int { shape.count }
    public var count: Int { storage.count }
    public var requiresGrad: Bool { node != nil }

    /// Size of dimension `axis`; negative axes count from the end.
    public func dim(_ axis: Int) -> Int { shape[normalizeAxis(axis, rank: rank, op: "dim")] }

    init(shape: [Int], storage: Storage, node: Node? = nil) {
        self.shape = shape
        self.storage = storage
        self.node = node
    }

    /// Uninitialised tensor; callers fill every element.
    public init(uninitializedShape shape: [Int]) {
        for d in shape { precondition(d >= 0, "Tensor: negative dimension in shape \(shape)") }
        self.init(shape: shape, storage: Storage(count: shape.reduce(1, *)))
    }

    public init(zeros shape: [Int]) {
        self.init(repeating: 0, shape: shape)
    }

    public init(ones shape: [Int]) {
        self.init(repeating: 1, shape: shape)
    }

    public init(repeating value: Float, shape: [Int]) {
        self.init(uninitializedShape: shape)
        storage.pointer.initialize(repeating: value, count: count)
    }

    /// A tensor holding `data` in row-major order; `data.count` must equal the product of `shape`.
    public init(_ data: [Float], shape: [Int]) {
        let n = shape.reduce(1, *)
        precondition(data.count == n,
                     "Tensor: \(data.count) values do not fill shape \(shape) (\(n) elements)")
        self.init(uninitializedShape: shape)
        data.withUnsafeBufferPointer { storage.pointer.update(from: $0.baseAddress!, count: n) }
    }

    /// A rank-1 tensor.
    public init(_ data: [Float]) { self.init(data, shape: [data.count]) }

    /// A rank-0 tensor.
    public init(scalar: Float) { self.init([scalar], shape: []) }

    /// The values in row-major order.
    public var scalars: [Float] { Array(UnsafeBufferPointer(start: storage.pointer, count: count)) }

    /// The single value of a tensor with one element.
    public var item: Float {
        precondition(count == 1, "item: tensor of shape \(shape) has \(count) elements, expected 1")
        return storage.pointer[0]
    }

    /// Element at a multi-index (slow; for tests and debugging).
    public subscript(indices: Int...) -> Float {
        precondition(indices.count == rank, "subscript: \(indices.count) indices for shape \(shape)")
        var offset = 0
        for (i, (idx, d)) in zip(indices, shape).enumerated() {
            precondition(idx >= 0 && idx < d, "subscript: index \(idx) out of range for axis \(i) of shape \(shape)")
            offset = offset * d + idx
        }
        return storage.pointer[offset]
    }

    /// The same values without any autodiff record.
    public func detached() -> Tensor { Tensor(shape: shape, storage: storage) }

    /// A copy of the values in fresh storage (no autodiff record).
    public func copy() -> Tensor {
        let out = Tensor(uninitializedShape: shape)
        out.storage.pointer.update(from: storage.pointer, count: count)
        return out
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let shown = scalars.prefix(8).map { String(format: "%.5g", $0) }.joined(separator: ", ")
        return "Tensor(shape: \(shape), [\(shown)\(count > 8 ? ", …" : "")])"
    }
}

/// Resolves a possibly negative axis against `rank`, trapping with the op's name when out of range.
@inline(__always)
func normalizeAxis(_ axis: Int, rank: Int, op: String) -> Int {
    let a = axis < 0 ? axis + rank : axis
    precondition(a >= 0 && a < Swift.max(rank, 1), "\(op): axis \(axis) out of range for rank \(rank)")
    return a
}

/// Product of dimensions before, at and after `axis`: the (outer, n, inner) view used by kernels
/// that work along one axis.
@inline(__always)
func splitAround(_ shape: [Int], axis: Int) -> (outer: Int, n: Int, inner: Int) {
    var outer = 1, inner = 1
    for i in 0..<axis { outer *= shape[i] }
    for i in (axis + 1)..<shape.count { inner *= shape[i] }
    return (outer, shape[axis], inner)
}
