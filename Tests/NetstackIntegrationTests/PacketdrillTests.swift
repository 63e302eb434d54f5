import Foundation
import NetstackTestSupport
import Testing

/// `scripts/packetdrill.sh` with the stack loaded into packetdrill
/// (`--so_filename`): the project's own scripts all pass, and the shared
/// FreeBSD suite's groups do not fall below what passed when the backend
/// landed (a regression floor; the failures and their reasons are listed in
/// docs/conformance.md).
@Suite(.serialized)
struct PacketdrillTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    /// The library built with the tests, next to the test bundle.
    static var library: String {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        return URL(fileURLWithPath: executable).deletingLastPathComponent()
            .appendingPathComponent("libnetstack-packetdrill.so").path
    }

    static func run(_ targets: String) -> (status: Int32, output: String) {
        TestShell.execute("cd \(root) && NETSTACK_PACKETDRILL_LIBRARY=\(library) timeout -k 5 600 "
                          + "scripts/packetdrill.sh \(targets) 2>&1")
    }

    @Test func theProjectsOwnScriptsPass() {
        let (status, output) = Self.run("Tests/Packetdrill")
        print("packetdrill, the project's scripts:\n\(output)")
        let scripts = (try? FileManager.default.contentsOfDirectory(atPath: "\(Self.root)/Tests/Packetdrill"))?
            .filter { $0.hasSuffix(".pkt") }.count ?? 0
        #expect(scripts >= 6)
        #expect(status == 0, "\(output)")
        #expect(output.contains("\n\(scripts) passed, 0 failed"), "\(output)")
    }

    @Test func theFreeBSDSuiteDoesNotRegress() {
        let suite = "../shared/conformance/tcp-testsuite"
        let groups = ["state-event-engine", "rcv-data-segments", "snd-syn", "socket-api", "rcv-icmp"]
        let (_, output) = Self.run(groups.map { "\(suite)/\($0)" }.joined(separator: " "))
        let totals = output.split(separator: "\n").filter { $0.contains(" passed, ") }
        print("packetdrill, the FreeBSD suite:\n" + totals.joined(separator: "\n"))
        func passed(_ group: String) -> Int {
            guard let line = totals.first(where: { $0.hasPrefix("\(group): ") }) else { return -1 }
            return Int(line.split(separator: " ")[1]) ?? -1
        }
        #expect(passed("state-event-engine") >= 182, "\(totals)")
        #expect(passed("rcv-data-segments") >= 119, "\(totals)")
        #expect(passed("snd-syn") >= 2, "\(totals)")
        #expect(passed("socket-api") >= 6, "\(totals)")
        #expect(passed("rcv-icmp") >= 1, "\(totals)")
    }
}
