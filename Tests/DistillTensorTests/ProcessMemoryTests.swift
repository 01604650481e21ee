import XCTest
@testable import DistillTensor

/// Files under /proc report no size; they are read to the end (Foundation's String(contentsOfFile:)
/// returned the first 3921 bytes of this process's smaps, about 100 KB).
final class ProcessMemoryTests: XCTestCase {
    func testProcFilesAreReadToTheEnd() throws {
        #if os(Linux)
        let smaps = try XCTUnwrap(ProcessMemory.procFile("/proc/self/smaps"))
        XCTAssertGreaterThan(smaps.utf8.count, 4096)
        // The last mapping's entry is complete: its final field is there.
        XCTAssertTrue(smaps.hasSuffix("\n"))
        XCTAssertNotNil(smaps.split(separator: "\n").last?.firstIndex(of: ":"))
        let resident = ProcessMemory.residentBytes()
        XCTAssertGreaterThan(resident, 0)
        XCTAssertGreaterThanOrEqual(ProcessMemory.peakResidentBytes(), resident)
        #endif
        XCTAssertNil(ProcessMemory.procFile("/no/such/file"))
    }
}
