/// The smallest value seen within a sliding window of time, in O(1) per
/// sample and three stored samples (Kathleen Nichols' windowed filter, the
/// one BBR describes): the best of the whole window, the best since a
/// quarter of it, the best since half of it. When the best ages out, the
/// next takes its place, so the minimum can rise after a path changes.
struct WindowedMinimum {
    struct Sample: Equatable {
        var value: Int64
        var time: Int64
    }

    /// Nanoseconds a sample stays the minimum for.
    let window: Int64
    private var best: Sample?
    private var second = Sample(value: 0, time: 0)
    private var third = Sample(value: 0, time: 0)

    init(window: Duration) {
        self.window = window.nanoseconds
    }

    /// The minimum of the window, nil before the first sample.
    var value: Int64? { best?.value }

    /// Takes `value` measured at `time` (nanoseconds on the stack clock).
    mutating func add(_ value: Int64, at time: Int64) {
        let sample = Sample(value: value, time: time)
        guard let first = best, value > first.value, time - third.time <= window else {
            // A new minimum, or everything kept is older than the window.
            best = sample
            second = sample
            third = sample
            return
        }
        if value <= second.value {
            second = sample
            third = sample
        } else if value <= third.value {
            third = sample
        }
        let age = time - first.time
        if age > window {
            // The best aged out: the later ones move up.
            best = second
            second = third
            third = sample
            if let promoted = best, time - promoted.time > window {
                best = second
                second = third
            }
        } else if second == first && age > window / 4 {
            // A quarter of the window without a second choice: take this one.
            second = sample
            third = sample
        } else if third == second && age > window / 2 {
            third = sample
        }
    }
}
