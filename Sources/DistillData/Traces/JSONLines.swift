import Foundation

/// The lines of a JSONL file, the way every JSONL reader here splits them: a line ends at "\n" (the
/// last may end at the end of the file), one "\r" before it is dropped, and blank lines are skipped
/// while still counted, so line numbers in error messages are the ones an editor shows.
public enum JSONLines {
    /// The non-blank lines of `data` with their 1-based numbers. A line is blank when it holds only
    /// spaces and tabs, or, with `carriageReturnsAreBlank`, only spaces, tabs and carriage returns
    /// (all JSON whitespace).
    public static func lines(in data: Data, carriageReturnsAreBlank: Bool = false) -> [(line: Int, bytes: ArraySlice<UInt8>)] {
        var out: [(line: Int, bytes: ArraySlice<UInt8>)] = []
        let bytes = [UInt8](data)
        var start = 0, line = 0
        while start < bytes.count {
            line += 1
            var end = start
            while end < bytes.count && bytes[end] != 0x0A { end += 1 }
            var slice = bytes[start..<end]
            start = end + 1
            if slice.last == 0x0D { slice = slice.dropLast() }
            if slice.allSatisfy({ $0 == 0x20 || $0 == 0x09 || (carriageReturnsAreBlank && $0 == 0x0D) }) { continue }
            out.append((line, slice))
        }
        return out
    }
}
