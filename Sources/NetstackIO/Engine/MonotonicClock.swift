import Glibc
import NetstackCore

/// The system clocks the engine reads: monotonic time for the stack's timers,
/// wall-clock time for capture timestamps.
public enum SystemClock {
    /// Now, on the monotonic clock, as the stack's `Instant`.
    public static func monotonic() -> Instant {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Instant(nanoseconds: Int64(time.tv_sec) * 1_000_000_000 + Int64(time.tv_nsec))
    }

    /// Now, as wall-clock time, for pcap records.
    public static func wallClock() -> PcapTimestamp {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return PcapTimestamp(seconds: Int64(time.tv_sec), nanoseconds: Int32(time.tv_nsec))
    }
}
