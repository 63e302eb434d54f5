/// A congestion control algorithm: how the congestion window grows with
/// acknowledgments and shrinks on loss. Windows are in bytes.
protocol CongestionController {
    var window: Int { get }
    var slowStartThreshold: Int { get }
    /// `acked` new bytes were acknowledged outside loss recovery.
    mutating func acknowledged(_ acked: Int, mss: Int, now: Instant, rtt: Duration?)
    /// Loss was detected by duplicate ACKs or SACK: fast recovery begins.
    mutating func enterRecovery(flightSize: Int, mss: Int, now: Instant)
    /// Recovery ended with everything up to the recovery point acknowledged.
    mutating func exitRecovery(mss: Int)
    /// The retransmission timer expired.
    mutating func timedOut(flightSize: Int, mss: Int, now: Instant)
    /// The connection was idle for longer than a retransmission timeout
    /// (RFC 5681 §4.1): restart from the initial window.
    mutating func restartAfterIdle(mss: Int)
    /// Slow start ends without a loss (HyStart++): the threshold becomes
    /// the window.
    mutating func endSlowStart()
}

/// The initial window of RFC 6928: min(10·MSS, max(2·MSS, 14600)).
func initialWindow(mss: Int) -> Int {
    min(10 * mss, max(2 * mss, 14_600))
}

/// Which algorithm a connection uses (an enum, so calls are switched on, not
/// dispatched through an existential, per acknowledgment).
public enum CongestionAlgorithm: String, Sendable, CaseIterable {
    case newReno
    case cubic
}

enum CongestionControl: CongestionController {
    case newReno(NewReno)
    case cubic(Cubic)

    init(_ algorithm: CongestionAlgorithm, mss: Int) {
        switch algorithm {
        case .newReno: self = .newReno(NewReno(mss: mss))
        case .cubic: self = .cubic(Cubic(mss: mss))
        }
    }

    var window: Int {
        switch self {
        case .newReno(let c): c.window
        case .cubic(let c): c.window
        }
    }

    var slowStartThreshold: Int {
        switch self {
        case .newReno(let c): c.slowStartThreshold
        case .cubic(let c): c.slowStartThreshold
        }
    }

    mutating func acknowledged(_ acked: Int, mss: Int, now: Instant, rtt: Duration?) {
        switch self {
        case .newReno(var c): c.acknowledged(acked, mss: mss, now: now, rtt: rtt); self = .newReno(c)
        case .cubic(var c): c.acknowledged(acked, mss: mss, now: now, rtt: rtt); self = .cubic(c)
        }
    }

    mutating func enterRecovery(flightSize: Int, mss: Int, now: Instant) {
        switch self {
        case .newReno(var c): c.enterRecovery(flightSize: flightSize, mss: mss, now: now); self = .newReno(c)
        case .cubic(var c): c.enterRecovery(flightSize: flightSize, mss: mss, now: now); self = .cubic(c)
        }
    }

    /// An ECN echo (RFC 3168 §6.1.2): the window is cut as for a loss (half,
    /// or CUBIC's beta), without fast recovery, since nothing was lost.
    mutating func congestionSignalled(flightSize: Int, mss: Int, now: Instant) {
        enterRecovery(flightSize: flightSize, mss: mss, now: now)
        exitRecovery(mss: mss)
    }

    mutating func exitRecovery(mss: Int) {
        switch self {
        case .newReno(var c): c.exitRecovery(mss: mss); self = .newReno(c)
        case .cubic(var c): c.exitRecovery(mss: mss); self = .cubic(c)
        }
    }

    mutating func timedOut(flightSize: Int, mss: Int, now: Instant) {
        switch self {
        case .newReno(var c): c.timedOut(flightSize: flightSize, mss: mss, now: now); self = .newReno(c)
        case .cubic(var c): c.timedOut(flightSize: flightSize, mss: mss, now: now); self = .cubic(c)
        }
    }

    mutating func restartAfterIdle(mss: Int) {
        switch self {
        case .newReno(var c): c.restartAfterIdle(mss: mss); self = .newReno(c)
        case .cubic(var c): c.restartAfterIdle(mss: mss); self = .cubic(c)
        }
    }

    mutating func endSlowStart() {
        switch self {
        case .newReno(var c): c.endSlowStart(); self = .newReno(c)
        case .cubic(var c): c.endSlowStart(); self = .cubic(c)
        }
    }
}

/// NewReno (RFC 5681, RFC 6582): slow start by up to one MSS per ACK,
/// congestion avoidance by about one MSS per round trip, halving on loss.
struct NewReno: CongestionController {
    private(set) var window: Int
    private(set) var slowStartThreshold = Int.max
    /// Bytes acknowledged in congestion avoidance not yet turned into growth.
    private var avoidanceCredit = 0

    init(mss: Int) {
        window = initialWindow(mss: mss)
    }

    mutating func acknowledged(_ acked: Int, mss: Int, now: Instant, rtt: Duration?) {
        if window < slowStartThreshold {
            // RFC 5681 (2); with appropriate byte counting's L = 2·SMSS (RFC 3465).
            window += min(acked, 2 * mss)
        } else {
            // RFC 5681 (3), by byte counting: one MSS per window acknowledged.
            avoidanceCredit += acked
            if avoidanceCredit >= window {
                avoidanceCredit -= window
                window += mss
            }
        }
    }

    mutating func enterRecovery(flightSize: Int, mss: Int, now: Instant) {
        slowStartThreshold = max(flightSize / 2, 2 * mss)   // RFC 5681 (4)
        window = slowStartThreshold
        avoidanceCredit = 0
    }

    mutating func exitRecovery(mss: Int) {
        window = slowStartThreshold
    }

    mutating func timedOut(flightSize: Int, mss: Int, now: Instant) {
        slowStartThreshold = max(flightSize / 2, 2 * mss)
        window = mss   // the loss window
        avoidanceCredit = 0
    }

    mutating func restartAfterIdle(mss: Int) {
        window = min(window, initialWindow(mss: mss))
    }

    mutating func endSlowStart() {
        slowStartThreshold = window
    }
}

/// CUBIC (RFC 9438): after a loss the window grows along a cubic curve that
/// is flat near the window where the loss happened, with a Reno-friendly floor.
struct Cubic: CongestionController {
    static let beta = 0.7
    static let c = 0.4

    private(set) var window: Int
    private(set) var slowStartThreshold = Int.max
    /// W_max in segments: the window before the last reduction.
    private var windowMaximum = 0.0
    /// The previous W_max, for fast convergence (RFC 9438 §4.7).
    private var lastWindowMaximum = 0.0
    /// When the current congestion-avoidance epoch began.
    private var epochStart: Instant?
    private var k = 0.0
    /// The Reno-friendly estimate W_est, in segments (RFC 9438 §4.3).
    private var renoEstimate = 0.0
    private var ackedInEpoch = 0.0

    init(mss: Int) {
        window = initialWindow(mss: mss)
    }

    mutating func acknowledged(_ acked: Int, mss: Int, now: Instant, rtt: Duration?) {
        if window < slowStartThreshold {
            window += min(acked, 2 * mss)
            return
        }
        let segment = Double(mss)
        let current = Double(window) / segment
        if epochStart == nil {
            // First acknowledgment of an epoch (RFC 9438 §4.2).
            epochStart = now
            if windowMaximum < current {
                k = 0
                windowMaximum = current
            } else {
                k = cbrt((windowMaximum - current) / Self.c)
            }
            renoEstimate = current
            ackedInEpoch = 0
        }
        let elapsed = (now - epochStart!).seconds + (rtt ?? .zero).seconds
        let cubicTarget = Self.c * pow3(elapsed - k) + windowMaximum
        // Reno-friendly region: W_est grows by α per window acknowledged.
        let alpha = 3 * (1 - Self.beta) / (1 + Self.beta)
        ackedInEpoch += Double(acked) / segment
        renoEstimate += alpha * (Double(acked) / segment) / current
        if cubicTarget < renoEstimate {
            window = max(window, Int(renoEstimate * segment))
        } else {
            // Concave and convex regions: close a fraction of the gap per ACK.
            let target = min(cubicTarget, 1.5 * current)
            if target > current {
                window += max(1, Int((target - current) / current * segment * Double(acked) / segment))
            }
        }
    }

    private func pow3(_ x: Double) -> Double { x * x * x }

    private func cbrt(_ x: Double) -> Double {
        guard x > 0 else { return 0 }
        var y = x
        for _ in 0..<60 { y = (2 * y + x / (y * y)) / 3 }
        return y
    }

    private mutating func reduce(mss: Int) {
        let segment = Double(mss)
        let current = Double(window) / segment
        // Fast convergence (RFC 9438 §4.7).
        if current < lastWindowMaximum {
            lastWindowMaximum = current
            windowMaximum = current * (1 + Self.beta) / 2
        } else {
            lastWindowMaximum = current
            windowMaximum = current
        }
        slowStartThreshold = max(Int(current * Self.beta * segment), 2 * mss)
        epochStart = nil
    }

    mutating func enterRecovery(flightSize: Int, mss: Int, now: Instant) {
        reduce(mss: mss)
        window = slowStartThreshold
    }

    mutating func exitRecovery(mss: Int) {
        window = slowStartThreshold
    }

    mutating func timedOut(flightSize: Int, mss: Int, now: Instant) {
        reduce(mss: mss)
        window = mss
    }

    mutating func restartAfterIdle(mss: Int) {
        window = min(window, initialWindow(mss: mss))
        epochStart = nil
    }

    mutating func endSlowStart() {
        slowStartThreshold = window
        epochStart = nil
    }
}

/// HyStart++ (RFC 9406): leaves the initial slow start when the round trip
/// grows, before the queue it is filling overflows. Each round (a window of
/// data, from SND.NXT when it began to its acknowledgment) keeps its smallest
/// RTT sample; once a round has 8 samples and its minimum exceeds the last
/// round's by an eighth of it (4 to 16 ms), slow start turns conservative
/// (CSS: a quarter of the growth) for 5 rounds, then congestion avoidance
/// begins. A round in CSS whose minimum falls back below the one that began
/// CSS was a false alarm: slow start resumes. It runs only while the
/// threshold is still unset (RFC 9406 §4.3: the initial slow start), so a
/// loss, which sets it, ends HyStart++ for the connection.
struct HyStart {
    enum Verdict: Equatable {
        case slowStart
        /// Conservative slow start: grow by a quarter.
        case conservative
        /// Set the threshold to the window: congestion avoidance.
        case endSlowStart
    }

    static let minimumThreshold: Int64 = 4_000_000
    static let maximumThreshold: Int64 = 16_000_000
    static let thresholdDivisor: Int64 = 8
    static let samplesPerRound = 8
    static let conservativeRounds = 5
    static let growthDivisor = 4

    private var roundEnd: SequenceNumber?
    private var lastRoundMinimum = Int64.max
    private var currentRoundMinimum = Int64.max
    private var samples = 0
    /// In CSS: the minimum RTT that started it, and the rounds left.
    private var conservative: (baseline: Int64, roundsLeft: Int)?
    private(set) var finished = false

    /// An ACK in the initial slow start that acknowledged new data up to
    /// `acknowledgment`, with `sample` if it gave an RTT measurement;
    /// `sendNext` is where the next round will end.
    mutating func acknowledged(_ acknowledgment: SequenceNumber, sendNext: SequenceNumber,
                               sample: Duration?) -> Verdict {
        guard !finished else { return .slowStart }
        if roundEnd.map({ acknowledgment - $0 >= 0 }) ?? true {
            // A new round (RFC 9406 §4.2).
            roundEnd = sendNext
            lastRoundMinimum = currentRoundMinimum
            currentRoundMinimum = .max
            samples = 0
            if var css = conservative {
                css.roundsLeft -= 1
                conservative = css
                if css.roundsLeft == 0 {
                    finished = true
                    return .endSlowStart
                }
            }
        }
        if let sample {
            currentRoundMinimum = min(currentRoundMinimum, sample.nanoseconds)
            samples += 1
        }
        guard samples >= Self.samplesPerRound, currentRoundMinimum != .max else {
            return conservative == nil ? .slowStart : .conservative
        }
        if let css = conservative {
            if currentRoundMinimum < css.baseline {
                conservative = nil
                return .slowStart
            }
            return .conservative
        }
        guard lastRoundMinimum != .max else { return .slowStart }
        let threshold = min(max(lastRoundMinimum / Self.thresholdDivisor, Self.minimumThreshold),
                            Self.maximumThreshold)
        if currentRoundMinimum >= lastRoundMinimum + threshold {
            conservative = (currentRoundMinimum, Self.conservativeRounds)
            return .conservative
        }
        return .slowStart
    }
}
