@testable import NetstackCore
import Testing

/// RACK's min_RTT filter (RFC 8985 §6.2 uses the minimum RTT of a recent
/// window): the minimum of the last five minutes, kept in three samples.
@Suite struct WindowedMinimumTests {
    let second: Int64 = 1_000_000_000

    @Test func aSmallerSampleIsTheMinimumAtOnce() {
        var filter = WindowedMinimum(window: .seconds(300))
        #expect(filter.value == nil)
        for (value, time) in [(50, 0), (40, 1), (45, 2), (30, 3)] as [(Int64, Int64)] {
            filter.add(value, at: time * second)
        }
        #expect(filter.value == 30)
    }

    @Test func theMinimumRisesWhenItAgesOut() {
        var filter = WindowedMinimum(window: .seconds(300))
        filter.add(10, at: 0)
        filter.add(20, at: 100 * second)
        filter.add(30, at: 200 * second)
        filter.add(25, at: 250 * second)
        #expect(filter.value == 10, "still within the window")
        filter.add(40, at: 301 * second)
        #expect(filter.value == 20, "the best of the last five minutes")
        filter.add(45, at: 401 * second)
        #expect(filter.value == 25)
    }

    @Test func aSampleAfterALongSilenceStartsAgain() {
        var filter = WindowedMinimum(window: .seconds(300))
        filter.add(10, at: 0)
        filter.add(50, at: 400 * second)
        #expect(filter.value == 50)
    }
}
