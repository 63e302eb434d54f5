/// Type erasure for any service, `Sendable` or not. It is itself not
/// `Sendable`: use it where the service stays in one isolation domain.
public struct AnyService<Request, Response>: Service {
    private let function: (Request) async throws -> Response

    public init<S: Service>(_ service: S) where S.Request == Request, S.Response == Response {
        function = { try await service.call($0) }
    }

    public func call(_ request: Request) async throws -> Response { try await function(request) }
}

/// Type erasure that requires and keeps `Sendable`: only a `Sendable`
/// service can be erased into it, and the erased value crosses tasks.
public struct AnySendableService<Request, Response>: Service, Sendable {
    private let function: @Sendable (Request) async throws -> Response

    public init<S: Service & Sendable>(_ service: S) where S.Request == Request, S.Response == Response {
        function = { try await service.call($0) }
    }

    public func call(_ request: Request) async throws -> Response { try await function(request) }
}
