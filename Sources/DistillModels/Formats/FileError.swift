/// An error in a file a user handed to Distill: which file, where in it (a tensor name, a key, a
/// line), and what was expected. Every loader (safetensors, GGUF, tokenizer, config, template)
/// reports through this type so that messages read the same everywhere.
public struct FileError: Error, Equatable, CustomStringConvertible {
    public var file: String
    /// Tensor name, metadata key, JSON key path or "line N"; empty when the whole file is at fault.
    public var location: String
    public var message: String

    public init(file: String, location: String = "", _ message: String) {
        self.file = file
        self.location = location
        self.message = message
    }

    public var description: String {
        location.isEmpty ? "\(file): \(message)" : "\(file): \(location): \(message)"
    }
}
