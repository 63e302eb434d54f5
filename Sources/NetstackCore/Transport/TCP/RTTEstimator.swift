/// The retransmission timeout of RFC 6298: smoothed round-trip time and its
/// variation, exponential backoff, and clamping to configured bounds.
///
/// Kept in whole nanoseconds: `Duration` is 128-bit, and its multiplication
/// and division were a tenth of the core's time per connection (one sample
/// per acknowledgment).
struct RTTEstimator {
    private var smoothedNanoseconds: Int64?
    private var variationNanoseconds: Int64 = 0
    private(set) var timeout: Duration
    /// Times the timeout was doubled since the last new acknowledgment.
    private(set) var backoffs = 0
    private let minimum: Int64
    private let maximum: Int64

    /// Clock granularity G of RFC 6298 §2, in nanoseconds.
    static let granularity: Int64 = 1_000_000

    init(initial: Duration, minimum: Duration, maximum: Duration) {
        timeout = initial
        self.minimum = minimum.nanoseconds
        self.maximum = maximum.nanoseconds
    }

    var smoothed: Duration? { smoothedNanoseconds.map { .nanoseconds($0) } }
    var variation: Duration { .nanoseconds(variationNanoseconds) }

    /// Takes one round-trip measurement (RFC 6298 §2.2–§2.3). Never from a
    /// retransmitted segment unless timestamps tell which copy was acked (Karn).
    mutating func sample(_ rtt: Duration) {
        let rtt = max(rtt.nanoseconds, 0)
        if let srtt = smoothedNanoseconds {
            let error = srtt > rtt ? srtt - rtt : rtt - srtt
            variationNanoseconds = variationNanoseconds * 3 / 4 + error / 4
            smoothedNanoseconds = srtt * 7 / 8 + rtt / 8
        } else {
            smoothedNanoseconds = rtt
            variationNanoseconds = rtt / 2
        }
        backoffs = 0
        updateTimeout()
    }

    /// The timer expired: double the timeout (RFC 6298 §5.5).
    mutating func backOff() {
        backoffs += 1
        timeout = .nanoseconds(clamp(timeout.nanoseconds.multipliedReportingOverflow(by: 2).partialValue))
    }

    /// New data was acknowledged: the backed-off timeout goes back to the
    /// computed one (RFC 6298 §5.7 keeps it; Linux recomputes, as here).
    mutating func resetBackoff() {
        guard backoffs > 0 else { return }
        backoffs = 0
        if smoothedNanoseconds != nil { updateTimeout() }
    }

    private mutating func updateTimeout() {
        guard let srtt = smoothedNanoseconds else { return }
        timeout = .nanoseconds(clamp(srtt &+ max(Self.granularity, variationNanoseconds &* 4)))
    }

    private func clamp(_ value: Int64) -> Int64 {
        min(max(value, minimum), maximum)
    }
}
