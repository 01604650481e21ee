import DistillTensor
import Foundation

/// Runs async library work from a synchronous command: the work runs on Swift's concurrency
/// pool while the calling thread waits.
func runBlocking<T>(_ body: @escaping () async throws -> T) throws -> T {
    let done = DispatchSemaphore(value: 0)
    let result = LockedBox<Result<T, Error>?>(nil)
    Task {
        do { result.value = .success(try await body()) } catch { result.value = .failure(error) }
        done.signal()
    }
    done.wait()
    return try result.value!.get()
}
