/// The daemon's built-in services: the classic small servers of RFC 862–867.
public enum BuiltinServiceKind: String, CaseIterable, Sendable, Hashable {
    /// RFC 862: sends back what it receives.
    case echo
    /// RFC 863: throws away what it receives.
    case discard
    /// RFC 867: answers with the date and time.
    case daytime
    /// RFC 864: answers with characters (a datagram of them, or an endless stream).
    case chargen

    public var defaultPort: UInt16 {
        switch self {
        case .echo: 7
        case .discard: 9
        case .daytime: 13
        case .chargen: 19
        }
    }
}

public enum TransportKind: String, CaseIterable, Sendable, Hashable {
    case udp
    case tcp
}

/// One built-in service as configured: which, on which port, over what.
public struct ServiceSetting: Sendable, Hashable {
    public var kind: BuiltinServiceKind
    public var port: UInt16
    public var transports: Set<TransportKind>

    public init(kind: BuiltinServiceKind, port: UInt16? = nil, transports: Set<TransportKind>) {
        self.kind = kind
        self.port = port ?? kind.defaultPort
        self.transports = transports
    }
}
