import Logging

/// Logs each call's outcome and duration: failures at `failureLevel`,
/// successes at `successLevel`, with the service's `name` as metadata.
public struct LoggingService<Inner: Service>: Service {
    public let inner: Inner
    public let logger: Logger
    public let name: String
    public let successLevel: Logger.Level
    public let failureLevel: Logger.Level

    public func call(_ request: Inner.Request) async throws -> Inner.Response {
        let start = ContinuousClock.now
        do {
            let response = try await inner.call(request)
            logger.log(level: successLevel, "\(name): done", metadata: ["duration": "\(ContinuousClock.now - start)"])
            return response
        } catch {
            logger.log(level: failureLevel, "\(name): \(error)", metadata: ["duration": "\(ContinuousClock.now - start)"])
            throw error
        }
    }
}

extension LoggingService: Sendable where Inner: Sendable {}

public struct LoggingLayer<Inner: Service>: Layer {
    public let logger: Logger
    public let name: String
    public let successLevel: Logger.Level
    public let failureLevel: Logger.Level
    public init(logger: Logger, name: String, successLevel: Logger.Level = .debug, failureLevel: Logger.Level = .info) {
        self.logger = logger
        self.name = name
        self.successLevel = successLevel
        self.failureLevel = failureLevel
    }
    public func wrap(_ inner: Inner) -> LoggingService<Inner> {
        LoggingService(inner: inner, logger: logger, name: name, successLevel: successLevel, failureLevel: failureLevel)
    }
}
