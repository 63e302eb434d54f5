/// An asynchronous function from a request to a response: the unit that
/// middleware wraps (Tower's `Service`, with `&self` semantics).
///
/// `call` is not `mutating` and there is no readiness step: a service that
/// has state keeps it in a reference it shares between its copies. The
/// protocol does not require `Sendable`; a stack is `Sendable` when every
/// service in it is, and that is decided where the stack is used. With
/// `NonisolatedNonsendingByDefault`, `call` runs in the caller's isolation,
/// so a non-`Sendable` service can be called without crossing tasks.
///
/// Errors are untyped: middleware adds its own (timeout, overload, open
/// circuit) to the inner service's, and a typed union of them would make
/// every signature harder to read than the errors are to match.
public protocol Service<Request, Response> {
    associatedtype Request
    associatedtype Response
    func call(_ request: Request) async throws -> Response
}

/// Builds one service around another.
///
/// A layer is generic over the service it wraps (`TimeoutLayer<Inner>`), so
/// one value wraps one kind of service; `ServiceBuilder` lets the compiler
/// infer those kinds from the innermost service.
public protocol Layer<Inner> {
    associatedtype Inner: Service
    associatedtype Wrapped: Service
    func wrap(_ inner: Inner) -> Wrapped
}

/// Composes layers in reading order, outermost first:
///
///     let service = ServiceBuilder
///         .layer(LoggingLayer(logger: logger))
///         .layer(ConcurrencyLimitLayer(limit: 2))
///         .service(Echo())
///
/// gives `Logging<ConcurrencyLimit<Echo>>`: a request passes the logging,
/// then the limit, then reaches `Echo`.
public enum ServiceBuilder {
    public static func layer<L: Layer>(_ layer: L) -> LayerStack<L.Inner, L.Wrapped> {
        LayerStack { layer.wrap($0) }
    }
}

/// Layers composed so far: a way to turn the next inner service into the
/// outermost one.
public struct LayerStack<Inner: Service, Outer: Service> {
    private let build: (Inner) -> Outer

    init(_ build: @escaping (Inner) -> Outer) { self.build = build }

    /// Adds `layer` inside the layers added before it.
    public func layer<L: Layer>(_ layer: L) -> LayerStack<L.Inner, Outer> where L.Wrapped == Inner {
        let build = self.build
        return LayerStack<L.Inner, Outer> { build(layer.wrap($0)) }
    }

    /// Wraps `service`, the innermost, in every layer.
    public func service(_ service: Inner) -> Outer { build(service) }
}

/// A service made of a closure. Sendable when the closure is: use
/// `ServiceFunction { ... }` with a `@Sendable` closure to get a `Sendable`
/// service.
public struct ServiceFunction<Request, Response>: Service {
    private let function: (Request) async throws -> Response
    public init(_ function: @escaping (Request) async throws -> Response) { self.function = function }
    public func call(_ request: Request) async throws -> Response { try await function(request) }
}

/// A `Sendable` service made of a `@Sendable` closure.
public struct SendableServiceFunction<Request, Response>: Service, Sendable {
    private let function: @Sendable (Request) async throws -> Response
    public init(_ function: @escaping @Sendable (Request) async throws -> Response) { self.function = function }
    public func call(_ request: Request) async throws -> Response { try await function(request) }
}

/// The service could not take the request now (load shedding, a rate or
/// concurrency limit asked not to wait).
public struct OverloadedError: Error, Equatable, CustomStringConvertible {
    public init() {}
    public var description: String { "service overloaded" }
}

/// A service that can tell at once that it would have to wait: it starts the
/// call now or throws `OverloadedError`. `LoadShed` is built on it.
public protocol LoadReporting: Service {
    func callIfReady(_ request: Request) async throws -> Response
}
