import NetstackCore
import Synchronization

/// Faults to inject on a link, each direction on its own: what a lossy,
/// slow or misbehaving network does, so that loss recovery can be watched by
/// hand (`netstackd --fault drop=5%,reorder=10%,delay=2ms`).
///
/// In order, per frame: it may be dropped; else corrupted (one bit flipped
/// past the Ethernet header, which a checksum then catches); duplicated;
/// held back 1 ms more than the others so that later frames pass it
/// (reordering); delayed; and with a rate, sent no faster than the rate
/// allows, with at most `queueFrames` waiting (more are dropped, as a full
/// queue on a slow link drops them).
public struct FaultSettings: Sendable, Hashable, CustomStringConvertible {
    public var drop = 0.0
    public var corrupt = 0.0
    public var duplicate = 0.0
    public var reorder = 0.0
    public var delay = Duration.zero
    /// Bits per second; nil for no limit.
    public var rate: Int?
    /// The random sequence's seed; the same seed and traffic give the same faults.
    public var seed: UInt64 = 1
    /// Frames a rate-limited direction holds before it drops.
    public static let queueFrames = 1000
    /// How far a reordered frame falls behind.
    public static let reorderHold = Duration.milliseconds(1)

    public init() {}

    /// Whether any fault is set.
    public var isEmpty: Bool {
        drop == 0 && corrupt == 0 && duplicate == 0 && reorder == 0 && delay == .zero && rate == nil
    }

    /// Parses `drop=5%,corrupt=0.1%,duplicate=1%,reorder=10%,delay=2ms,rate=100mbit,seed=7`.
    /// Probabilities take `%` or a fraction (`0.05`); delays `us`, `ms` or
    /// `s`; rates `kbit`, `mbit` or `gbit` (or plain bits per second).
    public init(parsing text: String) throws(FaultSettingsError) {
        for item in text.split(separator: ",") where !item.isEmpty {
            let parts = item.split(separator: "=", maxSplits: 1).map { String($0).trimmingSpaces }
            guard parts.count == 2, !parts[1].isEmpty else { throw .init(item: String(item), reason: "expected name=value") }
            let (name, value) = (parts[0], parts[1])
            switch name {
            case "drop": drop = try Self.probability(value, item)
            case "corrupt": corrupt = try Self.probability(value, item)
            case "duplicate": duplicate = try Self.probability(value, item)
            case "reorder": reorder = try Self.probability(value, item)
            case "delay": delay = try Self.duration(value, item)
            case "rate": rate = try Self.bitRate(value, item)
            case "seed":
                guard let number = UInt64(value) else { throw .init(item: String(item), reason: "a seed is a whole number") }
                seed = number
            default:
                throw .init(item: String(item),
                            reason: "unknown fault (drop, corrupt, duplicate, reorder, delay, rate, seed)")
            }
        }
    }

    public var description: String {
        var parts: [String] = []
        for (name, value) in [("drop", drop), ("corrupt", corrupt), ("duplicate", duplicate), ("reorder", reorder)]
        where value > 0 {
            parts.append("\(name)=\(value * 100)%")
        }
        if delay > .zero { parts.append("delay=\(delay)") }
        if let rate { parts.append("rate=\(rate)bit/s") }
        parts.append("seed=\(seed)")
        return parts.joined(separator: ",")
    }

    private static func probability(_ value: String, _ item: Substring) throws(FaultSettingsError) -> Double {
        let percent = value.hasSuffix("%")
        guard let number = Double(percent ? String(value.dropLast()) : value), number.isFinite else {
            throw .init(item: String(item), reason: "expected a percentage like 5% or a fraction like 0.05")
        }
        let fraction = percent ? number / 100 : number
        guard (0...1).contains(fraction) else { throw .init(item: String(item), reason: "must be between 0% and 100%") }
        return fraction
    }

    private static func duration(_ value: String, _ item: Substring) throws(FaultSettingsError) -> Duration {
        for (suffix, nanoseconds) in [("us", 1_000.0), ("ms", 1_000_000.0), ("s", 1_000_000_000.0)]
        where value.hasSuffix(suffix) {
            if let number = Double(value.dropLast(suffix.count)), number >= 0, number <= 60 * 1e9 / nanoseconds {
                return .nanoseconds(Int64(number * nanoseconds))
            }
        }
        throw .init(item: String(item), reason: "expected a delay like 500us, 2ms or 1s (at most 60 s)")
    }

    private static func bitRate(_ value: String, _ item: Substring) throws(FaultSettingsError) -> Int {
        let lower = value.lowercased()
        for (suffix, scale) in [("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("bit", 1.0), ("", 1.0)]
        where lower.hasSuffix(suffix) {
            if let number = Double(lower.dropLast(suffix.count)), number >= 1000 / scale, number * scale <= 1e12 {
                return Int(number * scale)
            }
        }
        throw .init(item: String(item), reason: "expected a rate like 100mbit or 1gbit (at least 1kbit)")
    }
}

/// A `--fault` item that does not parse, and why.
public struct FaultSettingsError: Error, Hashable, Sendable, CustomStringConvertible {
    public var item: String
    public var reason: String
    public var description: String { "\"\(item)\": \(reason)" }
}

extension String {
    fileprivate var trimmingSpaces: String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}

/// What was injected, by direction, readable from any thread.
public final class FaultCounters: Sendable {
    public enum Kind: Int, CaseIterable, Sendable {
        case dropped, corrupted, duplicated, reordered, delayed, rateDropped
    }

    /// Received kinds first, then sent ones.
    private let values = Mutex([Int](repeating: 0, count: 2 * Kind.allCases.count))

    public init() {}

    func count(_ kind: Kind, _ direction: CaptureDirection) {
        let index = (direction == .received ? 0 : Kind.allCases.count) + kind.rawValue
        values.withLock { $0[index] += 1 }
    }

    /// `fault.in.dropped`, `fault.out.reordered`, ...: every non-zero one.
    public var nonZero: [(name: String, value: Int)] {
        let counts = values.withLock { $0 }
        var result: [(String, Int)] = []
        for (offset, label) in [(0, "in"), (Kind.allCases.count, "out")] {
            for kind in Kind.allCases where counts[offset + kind.rawValue] > 0 {
                result.append(("fault.\(label).\(kind)", counts[offset + kind.rawValue]))
            }
        }
        return result
    }
}

/// A device that injects `FaultSettings` into the frames it carries, both
/// ways. Frames it holds (delayed, reordered, waiting for the rate) leave
/// when the engine polls it at or after their time (`nextDeadline`).
/// Engine thread only.
public struct FaultInjectingDevice<Base: FrameDevice & ~Copyable>: ~Copyable, FrameDevice {
    private let base: Base
    private let state: FaultState?

    /// `settings` nil or empty: frames pass untouched. `skip` bytes at the
    /// start of each frame (a virtio header) are never corrupted.
    public init(_ base: consuming Base, settings: FaultSettings?, counters: FaultCounters, skip: Int = 0) {
        self.base = base
        state = settings.flatMap { $0.isEmpty ? nil : FaultState(settings: $0, counters: counters, skip: skip) }
    }

    public var readinessDescriptor: Int32 { base.readinessDescriptor }

    public var nextDeadline: Instant? {
        guard let state else { return base.nextDeadline }
        var earliest = base.nextDeadline
        for due in [state.inbound.first?.due, state.outbound.first?.due] {
            if let due, earliest.map({ due < $0 }) ?? true { earliest = due }
        }
        return earliest
    }

    public func receive(into buffer: UnsafeMutableRawBufferPointer) throws -> Int? {
        guard let state else { return try base.receive(into: buffer) }
        let now = SystemClock.monotonic()
        while true {
            if let head = state.inbound.first, head.due <= now {
                state.inbound.removeFirst()
                let count = min(head.frame.count, buffer.count)
                head.frame.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
                return count
            }
            guard let length = try base.receive(into: buffer) else { return nil }
            let frame = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<length])
            if state.apply(frame, .received, now: now) { return length }
        }
    }

    public func send(_ frame: UnsafeRawBufferPointer) throws -> Bool {
        guard let state else { return try base.send(frame) }
        let now = SystemClock.monotonic()
        try poll(now: now)
        var copy = Array(frame)
        if copy.withUnsafeMutableBytes({ state.apply($0, .sent, now: now) }) {
            return try copy.withUnsafeBytes { try base.send($0) }
        }
        // Held copies that are due already (behind others) leave now; a
        // dropped frame counts as sent: the loss is the network's.
        try poll(now: now)
        return true
    }

    public func poll(now: Instant) throws {
        try base.poll(now: now)
        guard let state else { return }
        while let head = state.outbound.first, head.due <= now {
            state.outbound.removeFirst()
            _ = try head.frame.withUnsafeBytes { try base.send($0) }
        }
    }
}

/// The random draws and the held frames of a `FaultInjectingDevice`.
final class FaultState {
    struct Held {
        var due: Instant
        var frame: [UInt8]
    }

    let settings: FaultSettings
    let counters: FaultCounters
    let skip: Int
    var random: StackRandom
    /// Held frames by time due, per direction.
    var inbound: [Held] = []
    var outbound: [Held] = []
    /// When each direction's rate-limited link is next free.
    private var linkFree: [Instant] = [.zero, .zero]

    init(settings: FaultSettings, counters: FaultCounters, skip: Int) {
        self.settings = settings
        self.counters = counters
        self.skip = skip
        random = StackRandom(seed: settings.seed)
    }

    private func chance(_ probability: Double) -> Bool {
        probability > 0 && Double.random(in: 0..<1, using: &random) < probability
    }

    /// Applies the faults to `frame` (which may be changed in place). True
    /// when the frame goes on now, as it is; otherwise it was dropped, or
    /// copies of it are held (in `inbound` or `outbound`) until they are due.
    func apply(_ frame: UnsafeMutableRawBufferPointer, _ direction: CaptureDirection, now: Instant) -> Bool {
        if chance(settings.drop) {
            counters.count(.dropped, direction)
            return false
        }
        let payloadStart = skip + 14
        if frame.count > payloadStart, chance(settings.corrupt) {
            let index = payloadStart + Int.random(in: 0..<(frame.count - payloadStart), using: &random)
            frame[index] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &random)
            counters.count(.corrupted, direction)
        }
        let copies = chance(settings.duplicate) ? 2 : 1
        if copies == 2 { counters.count(.duplicated, direction) }
        var hold = settings.delay
        if chance(settings.reorder) {
            hold += FaultSettings.reorderHold
            counters.count(.reordered, direction)
        }
        let side = direction == .received ? 0 : 1
        let queued = direction == .received ? inbound.count : outbound.count
        var due = [Instant](repeating: now + hold, count: copies)
        if let rate = settings.rate {
            guard queued + copies <= FaultSettings.queueFrames else {
                counters.count(.rateDropped, direction)
                return false
            }
            // Serialized on a link of `rate` bits per second.
            let transmission = Duration.nanoseconds(Int64(frame.count - skip) * 8 * 1_000_000_000 / Int64(rate))
            for copy in 0..<copies {
                let start = max(due[copy], linkFree[side])
                linkFree[side] = start + transmission
                due[copy] = linkFree[side]
            }
        }
        if copies == 1 && due[0] <= now && (direction == .received ? inbound.isEmpty : outbound.isEmpty) {
            return true
        }
        if settings.delay > .zero { counters.count(.delayed, direction) }
        for time in due { insert(Held(due: time, frame: Array(frame)), direction) }
        return false
    }

    private func insert(_ held: Held, _ direction: CaptureDirection) {
        func place(_ queue: inout [Held]) {
            // Mostly appended: later frames are due later.
            var index = queue.endIndex
            while index > queue.startIndex && queue[index - 1].due > held.due { index -= 1 }
            queue.insert(held, at: index)
        }
        if direction == .received { place(&inbound) } else { place(&outbound) }
    }
}
