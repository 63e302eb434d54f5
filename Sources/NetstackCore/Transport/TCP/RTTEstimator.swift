/// The retransmission timeout of RFC 6298: smoothed round-trip time and its
/// variation, exponential backoff, and clamping to configured bounds.
struct RTTEstimator {
    private(set) var smoothed: Duration?
    private(set) var variation: Duration = .zero
    private(set) var timeout: Duration
    /// Times the timeout was doubled since the last new acknowledgment.
    private(set) var backoffs = 0
    let minimum: Duration
    let maximum: Duration

    /// Clock granularity G of RFC 6298 §2.
    static let granularity: Duration = .milliseconds(1)

    init(initial: Duration, minimum: Duration, maximum: Duration) {
        timeout = initial
        self.minimum = minimum
        self.maximum = maximum
    }

    /// Takes one round-trip measurement (RFC 6298 §2.2–§2.3). Never from a
    /// retransmitted segment unless timestamps tell which copy was acked (Karn).
    mutating func sample(_ rtt: Duration) {
        let rtt = max(rtt, .zero)
        if let srtt = smoothed {
            let error = srtt > rtt ? srtt - rtt : rtt - srtt
            variation = variation * 3 / 4 + error / 4
            smoothed = srtt * 7 / 8 + rtt / 8
        } else {
            smoothed = rtt
            variation = rtt / 2
        }
        backoffs = 0
        timeout = clamp(smoothed! + max(Self.granularity, variation * 4))
    }

    /// The timer expired: double the timeout (RFC 6298 §5.5).
    mutating func backOff() {
        backoffs += 1
        timeout = clamp(timeout * 2)
    }

    /// New data was acknowledged: the backed-off timeout goes back to the
    /// computed one (RFC 6298 §5.7 keeps it; Linux recomputes, as here).
    mutating func resetBackoff() {
        guard backoffs > 0 else { return }
        backoffs = 0
        if let srtt = smoothed { timeout = clamp(srtt + max(Self.granularity, variation * 4)) }
    }

    private func clamp(_ value: Duration) -> Duration {
        min(max(value, minimum), maximum)
    }
}
