extension Tensor {
    /// A constant tensor over an existing storage, without copying: weights memory-mapped from a
    /// checkpoint (`Storage(borrowing:count:release:)`), say. `storage.count` must equal the product
    /// of `shape`. The storage must not change afterwards (tensors are values).
    public init(shape: [Int], sharing storage: Storage) {
        for d in shape { precondition(d >= 0, "Tensor(shape:sharing:): negative dimension in shape \(shape)") }
        precondition(shape.reduce(1, *) == storage.count,
                     "Tensor(shape:sharing:): storage of \(storage.count) floats does not fit shape \(shape)")
        self.init(shape: shape, storage: storage)
    }
}
