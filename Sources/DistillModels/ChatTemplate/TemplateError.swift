/// An error in a chat template: a syntax error found while compiling it, an error while rendering
/// it (an undefined value used, a type mismatch), or a message the template raised itself with
/// `raise_exception(...)`. `line` and `column` are 1-based; the column counts Unicode code points.
public struct TemplateError: Error, Equatable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable {
        /// The template cannot be compiled.
        case syntax
        /// Rendering failed (undefined value, wrong type, unknown filter, …).
        case render
        /// The template called `raise_exception(message)`; `message` is the template's text.
        case raised
    }

    public var kind: Kind
    public var message: String
    public var line: Int
    public var column: Int
    /// Where the template came from (a file path, "tokenizer.chat_template"); shown in messages.
    public var file: String

    public init(_ kind: Kind, _ message: String, line: Int, column: Int, file: String = "chat template") {
        self.kind = kind
        self.message = message
        self.line = line
        self.column = column
        self.file = file
    }

    public var description: String {
        switch kind {
        case .syntax: return "\(file):\(line):\(column): syntax error: \(message)"
        case .render: return "\(file):\(line):\(column): \(message)"
        case .raised: return "\(file):\(line):\(column): template raised: \(message)"
        }
    }

    /// The same error as a `FileError`, for code that reports every loader error one way.
    public var fileError: FileError {
        FileError(file: file, location: "line \(line), column \(column)", kind == .syntax ? "syntax error: \(message)" : message)
    }
}

/// A position in the template source (1-based line and column).
struct SourcePos: Equatable {
    var line: Int
    var column: Int
    static let unknown = SourcePos(line: 0, column: 0)
}
