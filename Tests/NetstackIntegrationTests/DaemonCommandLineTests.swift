import Foundation
import NetstackTestSupport
import Testing

/// Bad flags or configuration end with exit status 2 and a message naming the field.
@Suite(.enabled(if: runningAsRoot, "runs netstackd in namespaces; needs root"))
struct DaemonCommandLineTests {
    func run(_ arguments: String, as user: String? = nil) throws -> (status: Int32, output: String) {
        let namespace = try TestNamespace("cli")
        defer { namespace.remove() }
        let prefix = user.map { "setpriv --reuid=\($0) --regid=\($0) --clear-groups " } ?? ""
        // Bounded: a daemon that wrongly starts instead of failing is ended.
        return namespace.execute("timeout -k 1 20 \(prefix)\(DaemonProcess.binary) \(arguments)")
    }

    @Test func aBadCaptureFilterNamesItself() throws {
        let (status, output) = try run("--pcap /tmp/netstackd-test-\(getpid()).pcap --pcap-filter \"tcp port banana\"")
        unlink("/tmp/netstackd-test-\(getpid()).pcap")
        #expect(status == 2)
        #expect(output.contains("pcap-filter"), "\(output)")
        let (alone, text) = try run("--pcap-filter icmp")
        #expect(alone == 2)
        #expect(text.contains("pcap-filter"), "\(text)")
    }

    @Test func badCaptureAndFaultFlagsNameThemselves() throws {
        let capture = "/tmp/netstackd-test-\(getpid())-flags.pcap"
        defer { unlink(capture) }
        for (arguments, field) in [("--pcap-rotate 10M", "pcap-rotate"),
                                   ("--pcap \(capture) --pcap-rotate 10Q", "--pcap-rotate"),
                                   ("--pcap \(capture) --pcap-files 3", "--pcap-files"),
                                   ("--pcap \(capture) --pcap-rotate 1M --pcap-files 0", "--pcap-files"),
                                   ("--pcap \(capture) --pcap-format pcapx", "--pcap-format"),
                                   ("--fault drop=150%", "--fault"), ("--fault jitter=1ms", "--fault")] {
            let (status, output) = try run(arguments)
            #expect(status == 2, "\(arguments): \(output)")
            #expect(output.contains(field), "\(arguments): \(output)")
        }
    }

    @Test func badAddressFlag() throws {
        let (status, output) = try run("--address 300.1.1.1/24")
        #expect(status == 2)
        #expect(output.contains("--address"), "\(output)")
        #expect(output.contains("300.1.1.1/24"))
    }

    @Test func unknownKeyInTheConfigurationFile() throws {
        let path = "/tmp/netstackd-test-\(getpid())-unknown.toml"
        defer { unlink(path) }
        _ = FileManager.default.createFile(atPath: path, contents: Data("[interface]\nname = \"tap0\"\nspeed = 10\n".utf8))
        let (status, output) = try run("--config \(path)")
        #expect(status == 2)
        #expect(output.contains("interface.speed"), "\(output)")
    }

    @Test func wrongTypeAndBadValuesInTheConfigurationFile() throws {
        let path = "/tmp/netstackd-test-\(getpid())-wrong.toml"
        defer { unlink(path) }
        for (text, field) in [("[interface]\nmtu = \"big\"\n", "interface.mtu"),
                              ("[interface]\nmac = \"02:00\"\n", "interface.mac"),
                              ("[interface]\naddresses = [\"fdaa::1/129\"]\n", "interface.addresses"),
                              ("[daemon]\nlog-level = \"loud\"\n", "daemon.log-level"),
                              ("[nonsense]\n", "nonsense"),
                              ("[services.echo]\nmax-connections = 0\n", "services.echo.max-connections"),
                              ("[services.echo]\noverflow = \"drop\"\n", "services.echo.overflow"),
                              ("[services.echo]\nidle-timeout = -1\n", "services.echo.idle-timeout"),
                              ("[interface\n", "syntax")] {
            _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
            let (status, output) = try run("--config \(path)")
            #expect(status == 2, "\(text)")
            #expect(output.contains(field), "\(text): \(output)")
        }
    }

    /// A configuration without services or addresses: the daemon
    /// still says it is ready and stops on SIGINT with status 0 (the built-in
    /// services' task ending at once must not take the daemon's signal
    /// handling with it).
    @Test func aDaemonWithNothingToServeIsReadyAndStops() throws {
        let path = "/tmp/netstackd-test-\(getpid())-empty.toml"
        defer { unlink(path) }
        _ = FileManager.default.createFile(atPath: path, contents: Data("[daemon]\nlog-level = \"info\"\n".utf8))
        let namespace = try TestNamespace("bare")
        defer { namespace.remove() }
        let daemon = try DaemonProcess(in: namespace, arguments: ["--config", path])
        #expect(daemon.stop() == 0, "\(daemon.standardError)")
    }

    @Test func missingInterfacePermission() throws {
        // As user nobody, the TAP cannot be created: /dev/net/tun refuses
        // (EACCES where it is mode 0600) or TUNSETIFF does (EPERM).
        let (status, output) = try run("--interface tapx", as: "65534")
        #expect(status == 2)
        #expect(output.contains("interface tapx: open /dev/net/tun:"), "\(output)")
        #expect(output.contains("permission denied") || output.contains("not permitted"), "\(output)")
        #expect(output.contains("run as root"), "\(output)")
    }

    @Test func helpExitsZero() throws {
        let (status, output) = try run("--help")
        #expect(status == 0)
        #expect(output.contains("USAGE: netstackd"))
    }
}
