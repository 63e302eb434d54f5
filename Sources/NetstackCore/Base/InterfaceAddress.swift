import NetstackWire

/// An address assigned to the interface together with its prefix length:
/// `192.168.69.1/24`, `fdaa::1/64`. The prefix makes the subnet on-link.
public struct InterfaceAddress<I: IPVersion>: Hashable, Sendable, CustomStringConvertible {
    public var address: I.Address
    public var prefixLength: Int

    public init(_ address: I.Address, prefixLength: Int) {
        precondition((0...I.Address.bitWidth).contains(prefixLength), "prefix length out of range")
        self.address = address
        self.prefixLength = prefixLength
    }

    /// Parses `"address/prefix"`; nil if either part is invalid.
    public init?(cidr text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let address = I.Address(String(parts[0])),
              parts[1].allSatisfy(\.isASCII), let prefix = Int(parts[1]),
              (0...I.Address.bitWidth).contains(prefix), parts[1].first != "+" else { return nil }
        self.init(address, prefixLength: prefix)
    }

    public var subnet: Subnet<I> { Subnet(address, prefixLength: prefixLength) }

    public var description: String { "\(address)/\(prefixLength)" }
}

/// A range of addresses given by a prefix: `192.168.69.0/24`.
public struct Subnet<I: IPVersion>: Hashable, Sendable, CustomStringConvertible {
    public let prefix: I.Address
    public let prefixLength: Int

    public init(_ address: I.Address, prefixLength: Int) {
        prefix = address.masked(to: prefixLength)
        self.prefixLength = prefixLength
    }

    public func contains(_ address: I.Address) -> Bool {
        address.masked(to: prefixLength) == prefix
    }

    public var description: String { "\(prefix)/\(prefixLength)" }
}

extension Subnet where I == IPv4 {
    /// The subnet's directed broadcast address (all host bits set), for
    /// prefixes shorter than /31 (RFC 3021).
    public var broadcast: IPv4Address? {
        guard prefixLength < 31 else { return nil }
        return IPv4Address(rawValue: prefix.rawValue | (UInt32.max >> UInt32(prefixLength)))
    }
}
