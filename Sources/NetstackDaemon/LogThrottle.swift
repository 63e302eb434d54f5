import Synchronization

/// At most one log line per interval for a condition that can repeat at
/// packet or connection rate (a limit reached): the first line is written at
/// once, later ones within the interval are counted, and the next line written
/// says how many were left out.
final class LogThrottle: Sendable {
    private let interval: Duration
    private let state = Mutex<(last: ContinuousClock.Instant?, suppressed: Int)>((nil, 0))

    init(interval: Duration = .seconds(1)) {
        self.interval = interval
    }

    /// Calls `write` with the number of lines left out since the last one,
    /// unless a line was written less than an interval ago.
    func log(_ write: (_ suppressed: Int) -> Void) {
        let now = ContinuousClock.now
        let suppressed: Int? = state.withLock { state in
            if let last = state.last, now - last < interval {
                state.suppressed += 1
                return nil
            }
            defer { state = (now, 0) }
            return state.suppressed
        }
        if let suppressed { write(suppressed) }
    }
}
