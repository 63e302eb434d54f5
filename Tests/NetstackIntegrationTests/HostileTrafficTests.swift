import Foundation
import NetstackTestSupport
import Testing

/// `scripts/hostile.sh`: malformed and attack traffic from scapy against the
/// daemon, case by case; after each the daemon lives, stays within 256 MiB,
/// answers a ping and a TCP echo, and counted its drops.
@Suite(.enabled(if: runningAsRoot, "the hostile suite needs root for its namespace and TAP"))
struct HostileTrafficTests {
    @Test func everyHostileCaseLeavesTheDaemonServing() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
        let (status, output) = TestShell.execute(
            "cd \(root) && NETSTACKD=\(DaemonProcess.binary) timeout -k 5 900 scripts/hostile.sh 2>&1")
        print("hostile traffic suite:\n\(output)")
        #expect(status == 0, "\(output)")
        #expect(output.contains("14 passed, 0 failed"), "\(output)")
    }
}
