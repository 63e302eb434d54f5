// netstack-bench: throughput figures for swift-netstack, printed as a table.
//
//   netstack-bench wire [FIXTURES_DIR]   parse + checksum over the bulk captures
//   netstack-bench core                  the core in memory: echo, fragments, allocations
//
// Build and run in release mode: `swift run -c release netstack-bench wire`.

import Glibc

func usage() -> Never {
    print("usage: netstack-bench wire [fixtures-dir] | core")
    exit(2)
}

let arguments = Array(CommandLine.arguments.dropFirst())
guard let command = arguments.first else { usage() }

func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
}

func format(_ value: Double, decimals: Int) -> String {
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let rounded = (value * scale).rounded() / scale
    return "\(rounded)"
}

switch command {
case "wire":
    let directory = arguments.count > 1 ? arguments[1] : "Tests/Fixtures/pcap"
    let fixtures = ["tcp4-bulk.pcap", "tcp6-bulk.pcap"].map { "\(directory)/\($0)" }
    do {
        let results = try WireBenchmark.run(fixtures: fixtures, minimumSeconds: 1.0)
        print(pad("measurement", 30) + pad("Mframes/s", 12) + "Gbit/s")
        for result in results {
            print(pad(result.name, 30) + pad(format(result.framesPerSecond / 1e6, decimals: 2), 12)
                  + format(result.gigabitsPerSecond, decimals: 1))
        }
    } catch {
        print("netstack-bench: \(error)")
        exit(1)
    }
case "core":
    let results = CoreBenchmark.run(minimumSeconds: 1.0)
    print(pad("measurement", 30) + pad("Mframes/s", 12) + pad("Gbit/s", 10) + "allocations/frame")
    for result in results {
        print(pad(result.name, 30) + pad(format(result.framesPerSecond / 1e6, decimals: 3), 12)
              + pad(format(result.gigabitsPerSecond, decimals: 2), 10) + format(result.allocationsPerFrame, decimals: 3))
    }
default:
    usage()
}
