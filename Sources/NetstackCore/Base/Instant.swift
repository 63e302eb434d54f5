/// A point in time on the stack's clock: nanoseconds since an arbitrary origin.
///
/// The core never reads a clock; whoever drives it passes `now` in. The engine
/// passes the monotonic clock, the simulator a virtual one, fixture replay the
/// capture's timestamps.
public struct Instant: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var nanoseconds: Int64

    public init(nanoseconds: Int64) {
        self.nanoseconds = nanoseconds
    }

    public static let zero = Instant(nanoseconds: 0)

    public static func + (a: Instant, b: Duration) -> Instant {
        Instant(nanoseconds: a.nanoseconds &+ b.nanoseconds)
    }

    public static func - (a: Instant, b: Duration) -> Instant {
        Instant(nanoseconds: a.nanoseconds &- b.nanoseconds)
    }

    public static func - (a: Instant, b: Instant) -> Duration {
        .nanoseconds(a.nanoseconds &- b.nanoseconds)
    }

    public static func < (a: Instant, b: Instant) -> Bool { a.nanoseconds < b.nanoseconds }

    public var description: String {
        let millis = nanoseconds / 1_000_000
        return "\(millis / 1000).\(String(1000 + millis % 1000).dropFirst())s"
    }
}

extension Duration {
    /// The duration in whole nanoseconds (saturating). From `attoseconds`,
    /// which is several times cheaper than `components` (no wide division):
    /// every timer the stack arms goes through here.
    public var nanoseconds: Int64 {
        let attoseconds = self.attoseconds
        // Below about 9.2 s the value fits 64 bits, and a 64-bit division
        // is far cheaper than the 128-bit one.
        if let small = Int64(exactly: attoseconds) { return small / 1_000_000_000 }
        return Int64(clamping: attoseconds / 1_000_000_000)
    }

    /// The duration in seconds, as a floating-point number.
    public var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}

/// The earlier of two optional deadlines (nil means "none").
func earliest(_ a: Instant?, _ b: Instant?) -> Instant? {
    switch (a, b) {
    case (nil, let x), (let x, nil): x
    case (let x?, let y?): min(x, y)
    }
}
