import Foundation
import NetstackCore
import NetstackDaemon
import NetstackWire
import NetstackIO
import Testing

@Suite struct ConfigurationTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    @Test func embeddedConfigurationIsTheFile() throws {
        let file = try String(contentsOf: Self.root.appendingPathComponent("config/netstackd.toml"), encoding: .utf8)
        #expect(file.trimmingCharacters(in: .newlines) == embeddedConfiguration.trimmingCharacters(in: .newlines),
                "run scripts/embed-config.sh after editing config/netstackd.toml")
    }

    @Test func defaultsAreTheTapZeroLayout() throws {
        let configuration = try DaemonConfiguration.standard()
        #expect(configuration.interface == "tap0")
        #expect(configuration.mac == MACAddress(2, 0, 0, 0, 0, 1))
        #expect(configuration.ipv4Addresses == [InterfaceAddress(IPv4Address(192, 168, 69, 1), prefixLength: 24)])
        #expect(configuration.ipv6Addresses.map(\.description) == ["fdaa::1/64"])
        #expect(configuration.ipv4Gateway == IPv4Address(192, 168, 69, 100))
        #expect(configuration.ipv6Gateway == IPv6Address("fdaa::100"))
        #expect(configuration.mtu == 1500)
        #expect(configuration.stackConfiguration.ipv6Startup.dadTransmits == 1)
    }

    @Test func flagsOverrideTheFile() throws {
        let command = try NetstackdCommand.parse(["--address", "10.0.0.2/8", "--address", "2001:db8::2/64",
                                                  "--gateway", "10.0.0.1", "--mtu", "9000", "--mac",
                                                  "02:aa:bb:cc:dd:ee", "--interface", "tap7"])
        let configuration = try command.resolve()
        #expect(configuration.ipv4Addresses.map(\.description) == ["10.0.0.2/8"])
        #expect(configuration.ipv6Addresses.map(\.description) == ["2001:db8::2/64"])
        #expect(configuration.ipv4Gateway == IPv4Address(10, 0, 0, 1))
        #expect(configuration.ipv6Gateway == nil)
        #expect(configuration.mtu == 9000)
        #expect(configuration.interface == "tap7")
    }

    @Test func badValuesNameTheirField() throws {
        func field(_ arguments: [String]) -> String? {
            do {
                _ = try NetstackdCommand.parse(arguments).resolve()
                return nil
            } catch let error as ConfigurationError {
                return error.field
            } catch {
                return "parse"
            }
        }
        #expect(field(["--mtu", "20"]) == "--mtu")
        #expect(field(["--interface", "a-name-too-long-for-linux"]) == "--interface")
        #expect(field(["--mac", "01:00:5e:00:00:01"]) == "--mac")
        #expect(field(["--gateway", "10.0.0.1", "--gateway", "10.0.0.2"]) == "--gateway")
        #expect(field(["--address", "300.1.1.1/24"]) == "parse")
    }

    @Test func captureAndFaultSettingsFromTheFile() throws {
        let file = try ConfigurationFile.parse("""
            [daemon]
            pcap = "/tmp/x.pcap"
            pcap-format = "pcapng"
            pcap-rotate = "2M"
            pcap-files = 4
            fault = "drop=1%,delay=3ms,seed=5"
            """, source: "c.toml")
        #expect(file.pcapFormat == .pcapng)
        #expect(file.pcapRotation == PcapRotation(maximumBytes: 2 << 20, files: 4))
        #expect(file.faults?.drop == 0.01)
        #expect(file.faults?.delay == .milliseconds(3))
        #expect(file.faults?.seed == 5)
        let cases = [
            ("pcap-rotate = \"1M\"", "c.toml: pcap-rotate: rotates a capture: give pcap too"),
            ("pcap = \"/tmp/x\"\npcap-files = 2", "c.toml: daemon.pcap-files: counts rotated files: give pcap-rotate too"),
            ("pcap = \"/tmp/x\"\npcap-rotate = \"1K\"",
             "c.toml: daemon.pcap-rotate: \"1K\" is not a size from 64K to 1024G (like 10M)"),
            ("fault = \"drop=2\"", "c.toml: daemon.fault: \"drop=2\": must be between 0% and 100%"),
        ]
        for (text, message) in cases {
            #expect(Self.failure { try ConfigurationFile.parse("[daemon]\n\(text)\n", source: "c.toml") }.map { "\($0)" } == message)
        }
    }

    /// Found by fuzz-config: a table header whose key starts with a
    /// non-ASCII character, or with `;`, tripped an assertion inside toml++; control
    /// characters, too, are refused before the TOML parser sees them.
    @Test func textTheTOMLParserMustNotSeeIsASyntaxError() {
        for text in ["[\u{FFFD}ervices.echo]\nport = 7\n", "[daemon]\nlog-level = \"info\"\u{0}\n",
                     "[[;daemon]\npcap = \"/tmp/x\"\n", "x = 1\n  [ ;a]\n",
                     "caf\u{E9} = 1\n", "[daemon]\nlog-level = \"\u{10}\"\n"] {
            let error = Self.failure { try ConfigurationFile.parse(text, source: "f.toml") }
            #expect(error.map { "\($0)".hasPrefix("f.toml: syntax: ") } == true, "\(String(describing: error))")
        }
        // Non-ASCII inside strings and comments is fine.
        #expect(Self.failure { try ConfigurationFile.parse("# caf\u{E9}\n[daemon]\npcap = \"/tmp/caf\u{E9}\"\n", source: "f.toml") } == nil)
    }

    /// The error `body` throws (nil when it does not).
    static func failure(_ body: () throws -> DaemonConfiguration) -> (any Error)? {
        do {
            _ = try body()
            return nil
        } catch {
            return error
        }
    }

    @Test func fileErrorsNameTheKeyAndTheFile() throws {
        #expect {
            _ = try ConfigurationFile.parse("[limits]\nreassembly-memory = 10\n", source: "x.toml")
        } throws: { error in
            "\(error)" == "x.toml: limits.reassembly-memory: must be at least 65536"
        }
        #expect {
            _ = try ConfigurationFile.parse("[limits]\nicmp-destination-burst = -1\n", source: "x.toml")
        } throws: { error in
            "\(error)" == "x.toml: limits.icmp-destination-burst: must not be negative"
        }
        #expect {
            _ = try ConfigurationFile.parse("[limits]\ntcp-connections-per-peer = 0\n", source: "x.toml")
        } throws: { error in
            "\(error)" == "x.toml: limits.tcp-connections-per-peer: must be 1...10000000"
        }
        #expect {
            _ = try ConfigurationFile.parse("[limits]\nsocket-buffer-memory = 4096\n", source: "x.toml")
        } throws: { error in
            "\(error)" == "x.toml: limits.socket-buffer-memory: must be at least 1048576"
        }
        #expect {
            _ = try ConfigurationFile.parse("[limits]\nsyn-queue = 0\n", source: "x.toml")
        } throws: { error in
            "\(error)" == "x.toml: limits.syn-queue: must be 1...1000000"
        }
        #expect {
            _ = try ConfigurationFile.parse("[tcp]\necn = \"sometimes\"\n", source: "x.toml")
        } throws: { error in
            "\(error)" == "x.toml: tcp.ecn: \"sometimes\" is not one of off, passive, active"
        }
        #expect(try ConfigurationFile.parse("[tcp]\necn = \"active\"\n", source: "x.toml").stackConfiguration.tcp.ecn == .active)
        #expect {
            _ = try ConfigurationFile.parse("[limits]\npath-mtu-entries = 0\n", source: "x.toml")
        } throws: { error in
            "\(error)" == "x.toml: limits.path-mtu-entries: must be 1...1000000"
        }
        #expect {
            _ = try ConfigurationFile.parse("[ipv6]\nmld-robustness = 8\n", source: "x.toml")
        } throws: { error in
            "\(error)" == "x.toml: ipv6.mld-robustness: must be 0...7"
        }
        let caps = try ConfigurationFile.parse(
            "[limits]\nsocket-buffer-memory = 2097152\nsyn-queue = 16\npath-mtu-entries = 8\n[ipv6]\nmld-robustness = 0\n",
            source: "x.toml")
        #expect(caps.stackConfiguration.socketBufferMemory == 2 << 20 && caps.stackConfiguration.tcp.synQueueLimit == 16)
        #expect(caps.stackConfiguration.pathMTUEntries == 8 && caps.stackConfiguration.ipv6Startup.mldRobustness == 0)
        // The embedded defaults are the core's.
        let standard = try DaemonConfiguration.standard().stackConfiguration
        let core = StackConfiguration.standard
        #expect(standard.socketBufferMemory == core.socketBufferMemory && standard.tcp.synQueueLimit == core.tcp.synQueueLimit)
        #expect(standard.pathMTUEntries == core.pathMTUEntries
                && standard.ipv6Startup.mldRobustness == core.ipv6Startup.mldRobustness)
        let unlimited = try ConfigurationFile.parse("[limits]\nicmp-destination-interval-ms = 0\n", source: "x.toml")
        #expect(unlimited.stackConfiguration.icmp.perDestinationInterval == nil)
        #expect(DaemonConfiguration().stackConfiguration.icmp.perDestinationInterval == .seconds(1))
        #expect {
            _ = try ConfigurationFile.parse("[interface]\ngateways = [\"10.0.0.1\", \"10.0.0.2\"]\n", source: "y.toml")
        } throws: { error in
            "\(error)".contains("interface.gateways")
        }
        #expect {
            _ = try ConfigurationFile.parse("[control]\nmax-clients = 0\n", source: "z.toml")
        } throws: { error in
            "\(error)" == "z.toml: control.max-clients: 0 is outside 1...1000000"
        }
        let limited = try ConfigurationFile.parse("[control]\nmax-clients-per-process = 3\n", source: "w.toml")
        #expect(limited.controlMaximumClientsPerProcess == 3)
        #expect(limited.controlMaximumClients == 16_384)
    }
}
