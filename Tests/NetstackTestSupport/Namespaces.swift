import CTap
import Glibc

/// Whether the tests run as root (network namespaces and TAP devices need it).
public let runningAsRoot = geteuid() == 0

/// Runs `body` on a thread of its own that first moves into a new, empty
/// network namespace (`unshare(CLONE_NEWNET)`), and waits for it.
///
/// Network namespaces belong to threads in Linux, so nothing `body` creates
/// (TAP devices, sockets, addresses) is visible outside, and the namespace
/// disappears with the thread and its file descriptors: cleanup is automatic
/// even when `body` fails. Commands `body` runs (`TestShell`) inherit the
/// thread's namespace.
public func inPrivateNetworkNamespace<R: Sendable>(_ body: @escaping @Sendable () throws -> R) throws -> R {
    try inNetworkNamespace(nil, body)
}

/// Runs `body` on a thread of its own inside the named namespace (made with
/// `ip netns add NAME`), or a new private one when `name` is nil. Sockets
/// created there stay in that namespace whichever thread uses them later.
public func inNetworkNamespace<R: Sendable>(_ name: String?, _ body: @escaping @Sendable () throws -> R) throws -> R {
    let box = ResultBox<R>()
    try runOnNamespaceThread(name) {
        box.result = Result { try body() }
    }
    return try box.result!.get()
}

/// Holds what the namespace thread produced. Written on that thread before it
/// exits and read by the caller only after `pthread_join` returned: the join
/// orders the two accesses, so there is no race.
private final class ResultBox<R>: @unchecked Sendable {
    var result: Result<R, any Error>?
}

/// The work a namespace thread runs, and whether it could enter the namespace.
/// Accessed across threads only before `pthread_create` and after
/// `pthread_join`, which order the accesses.
private final class NamespaceThread: @unchecked Sendable {
    let work: () -> Void
    let namespace: String?
    var unshareError: Int32 = 0
    init(_ namespace: String?, _ work: @escaping () -> Void) {
        self.namespace = namespace
        self.work = work
    }
}

private func runOnNamespaceThread(_ namespace: String?, _ work: @escaping () -> Void) throws {
    let context = NamespaceThread(namespace, work)
    let unmanaged = Unmanaged.passRetained(context)
    var thread = pthread_t()
    let rc = pthread_create(&thread, nil, { raw in
        let context = Unmanaged<NamespaceThread>.fromOpaque(raw!).takeRetainedValue()
        let rc = context.namespace.map { ctap_enter_network_namespace("/var/run/netns/\($0)") }
            ?? ctap_unshare_network_namespace()
        if rc != 0 {
            context.unshareError = -rc
        } else {
            context.work()
        }
        return nil
    }, unmanaged.toOpaque())
    guard rc == 0 else {
        unmanaged.release()
        throw NamespaceError(code: rc)
    }
    pthread_join(thread, nil)
    if context.unshareError != 0 { throw NamespaceError(code: context.unshareError) }
}

public struct NamespaceError: Error, CustomStringConvertible {
    public let code: Int32
    public var description: String { "entering a network namespace: \(String(cString: strerror(code)))" }
}
