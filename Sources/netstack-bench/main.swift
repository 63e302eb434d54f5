// netstack-bench: throughput figures for swift-netstack, printed as a table.
//
//   netstack-bench wire [FIXTURES_DIR]   parse + checksum over the bulk captures
//   netstack-bench core                  the core in memory: echo, fragments, TCP bulk and
//                                        connections between two stacks, allocations
//
// Build and run in release mode: `swift run -c release netstack-bench wire`.

import Glibc

func usage() -> Never {
    print("usage: netstack-bench wire [fixtures-dir] | core [frames|bulk|connections]")
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
    // `core frames`, `core bulk` or `core connections` runs one part (for a profiler).
    let part = arguments.count > 1 ? arguments[1] : "all"
    if part == "all" || part == "frames" {
        let results = CoreBenchmark.run(minimumSeconds: 1.0)
        print(pad("measurement", 30) + pad("Mframes/s", 12) + pad("Gbit/s", 10) + "allocations/frame")
        for result in results {
            print(pad(result.name, 30) + pad(format(result.framesPerSecond / 1e6, decimals: 3), 12)
                  + pad(format(result.gigabitsPerSecond, decimals: 2), 10) + format(result.allocationsPerFrame, decimals: 3))
        }
        print()
    }
    var tcp: [TCPCoreBenchmark.Result] = []
    if part == "all" || part == "bulk" {
        tcp += [TCPCoreBenchmark.bulk(offloads: .none, 1.0), TCPCoreBenchmark.bulk(offloads: .virtio, 1.0)]
    }
    if part == "all" || part == "connections" { tcp.append(TCPCoreBenchmark.connections(1.0)) }
    if !tcp.isEmpty { print(pad("two stacks, one thread", 40) + pad("rate", 22) + "allocations/segment") }
    for result in tcp {
        print(pad(result.name, 40) + pad(format(result.value, decimals: 2) + " " + result.unit, 22)
              + format(result.allocationsPerSegment, decimals: 3))
    }
default:
    usage()
}
