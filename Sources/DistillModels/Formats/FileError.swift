import Foundation

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

/// Why a file operation failed, in the operating system's words where it gave them ("No space
/// left on device", "Permission denied"): Foundation's own descriptions of these ("The operation
/// could not be completed…") hide the cause.
public func ioFailureReason(_ error: Error) -> String {
    let ns = error as NSError
    if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
    if let posix = ns.userInfo[NSUnderlyingErrorKey] as? NSError, posix.domain == NSPOSIXErrorDomain {
        return String(cString: strerror(Int32(posix.code)))
    }
    if let cocoa = error as? CocoaError {
        switch cocoa.code {
        case .fileWriteOutOfSpace: return String(cString: strerror(ENOSPC))
        case .fileWriteNoPermission, .fileReadNoPermission: return String(cString: strerror(EACCES))
        case .fileNoSuchFile, .fileReadNoSuchFile: return String(cString: strerror(ENOENT))
        case .fileWriteVolumeReadOnly: return String(cString: strerror(EROFS))
        default: break
        }
    }
    return error.localizedDescription
}
