// swift-tools-version: 6.2
import PackageDescription

// Swift 6 language mode (the default for tools 6.x) gives complete strict
// concurrency checking everywhere. Wire views are `~Escapable` structs over
// `RawSpan`; declaring them needs the `Lifetimes` feature.
let lifetimes: [SwiftSetting] = [.enableExperimentalFeature("Lifetimes")]
// Release builds specialise generics and inline small accessors across modules.
let crossModule: [SwiftSetting] = [.unsafeFlags(["-cross-module-optimization"], .when(configuration: .release))]
// The data path runs on one thread (the engine's); dynamic exclusivity
// checks of its class properties cost several percent per packet there.
// Debug builds (every test) keep them, so a violation is still caught.
let uncheckedExclusivity: [SwiftSetting] = [.unsafeFlags(["-enforce-exclusivity=unchecked"],
                                                         .when(configuration: .release))]
// The wire formats and the core are optimised in debug builds too: every test
// pushes megabytes through them, and unoptimised generic code is ~100x slower.
let optimizedInDebug: [SwiftSetting] = [.unsafeFlags(["-O"], .when(configuration: .debug))]

let package = Package(
    name: "swift-netstack",
    products: [
        .library(name: "NetstackWire", targets: ["NetstackWire"]),
        .library(name: "NetstackCore", targets: ["NetstackCore"]),
        .library(name: "NetstackIO", targets: ["NetstackIO"]),
        .library(name: "NetstackService", targets: ["NetstackService"]),
        .library(name: "NetstackSockets", targets: ["NetstackSockets"]),
        .library(name: "NetstackControl", targets: ["NetstackControl"]),
        .library(name: "NetstackClient", targets: ["NetstackClient"]),
        .executable(name: "netstackd", targets: ["netstackd"]),
        .executable(name: "netstackctl", targets: ["netstackctl"]),
        .executable(name: "netstack-bench", targets: ["netstack-bench"]),
        .executable(name: "netstack-run", targets: ["netstack-run"]),
        // LD_PRELOAD library: unmodified programs get sockets inside netstackd.
        .library(name: "netstack-preload", type: .dynamic, targets: ["CNetstackPreload"]),
        // packetdrill's --so_filename backend: the core on a virtual clock.
        .library(name: "netstack-packetdrill", type: .dynamic, targets: ["NetstackPacketdrill"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.0"),
    ],
    targets: [
        // C shims.
        .target(name: "CTap"),
        .target(name: "CMallocCounter"),
        .target(name: "CNetstackPreload", cSettings: [.unsafeFlags(["-fvisibility=default"])],
                linkerSettings: [.linkedLibrary("dl")]),
        .target(name: "CNetstackPacketdrill", cSettings: [.unsafeFlags(["-fvisibility=hidden"])]),
        .systemLibrary(name: "CPcap", pkgConfig: "libpcap", providers: [.apt(["libpcap-dev"])]),

        // Libraries, bottom up.
        .target(name: "NetstackWire", swiftSettings: lifetimes + crossModule + optimizedInDebug + uncheckedExclusivity),
        .target(name: "NetstackCore",
                dependencies: ["NetstackWire", .product(name: "DequeModule", package: "swift-collections"),
                               .product(name: "HeapModule", package: "swift-collections")],
                swiftSettings: lifetimes + crossModule + optimizedInDebug + uncheckedExclusivity),
        .target(name: "NetstackIO",
                dependencies: ["NetstackWire", "NetstackCore", "CTap", "CPcap",
                               .product(name: "DequeModule", package: "swift-collections"),
                               .product(name: "Logging", package: "swift-log")],
                swiftSettings: lifetimes + crossModule + uncheckedExclusivity),

        // Service/Layer middleware; imports nothing of ours.
        .target(name: "NetstackService",
                dependencies: [.product(name: "DequeModule", package: "swift-collections"),
                               .product(name: "Logging", package: "swift-log"),
                               .product(name: "Metrics", package: "swift-metrics")],
                swiftSettings: [.enableUpcomingFeature("NonisolatedNonsendingByDefault")]),
        .target(name: "NetstackSockets",
                dependencies: ["NetstackWire", "NetstackCore", "NetstackIO",
                               .product(name: "DequeModule", package: "swift-collections")],
                swiftSettings: lifetimes + crossModule + uncheckedExclusivity
                    + [.enableUpcomingFeature("NonisolatedNonsendingByDefault")]),
        .target(name: "NetstackPacketdrill",
                dependencies: ["NetstackWire", "NetstackCore", "CNetstackPacketdrill",
                               .product(name: "DequeModule", package: "swift-collections")],
                swiftSettings: lifetimes),
        // The control protocol (shared by daemon and clients) and the client library.
        .target(name: "NetstackControl"),
        .target(name: "NetstackClient", dependencies: ["NetstackControl"]),
        .target(name: "NetstackDaemon",
                dependencies: ["NetstackWire", "NetstackCore", "NetstackIO", "NetstackSockets", "NetstackService", "NetstackControl",
                               .product(name: "ArgumentParser", package: "swift-argument-parser"),
                               .product(name: "Metrics", package: "swift-metrics"),
                               .product(name: "Prometheus", package: "swift-prometheus"),
                               .product(name: "Logging", package: "swift-log"),
                               .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                               .product(name: "TOMLKit", package: "TOMLKit")],
                swiftSettings: lifetimes + crossModule),

        // Executables.
        .executableTarget(name: "netstackd", dependencies: ["NetstackDaemon"], swiftSettings: crossModule),
        .executableTarget(name: "netstackctl",
                          dependencies: ["NetstackClient", "NetstackControl",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .executableTarget(name: "netstack-run",
                          dependencies: [.product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .executableTarget(name: "netstack-bench",
                          dependencies: ["NetstackWire", "NetstackCore", "NetstackIO", "CMallocCounter"],
                          swiftSettings: lifetimes + crossModule),

        // Tests.
        .target(name: "NetstackTestSupport",
                dependencies: ["NetstackWire", "NetstackCore", "NetstackIO", "NetstackControl", "CTap",
                               .product(name: "DequeModule", package: "swift-collections"),
                               .product(name: "HeapModule", package: "swift-collections"),
                               .product(name: "Logging", package: "swift-log")],
                path: "Tests/NetstackTestSupport", swiftSettings: lifetimes + optimizedInDebug),
        .testTarget(name: "NetstackWireTests",
                    dependencies: ["NetstackWire", "NetstackIO", "NetstackTestSupport",
                                   .product(name: "PropertyBased", package: "swift-property-based")],
                    swiftSettings: lifetimes),
        .testTarget(name: "NetstackCoreTests", dependencies: ["NetstackCore", "NetstackWire", "NetstackIO", "NetstackTestSupport"],
                    swiftSettings: lifetimes),
        .testTarget(name: "NetstackDaemonTests",
                    dependencies: ["NetstackDaemon", "NetstackControl", "NetstackCore", "NetstackWire", "NetstackTestSupport"],
                    swiftSettings: lifetimes),
        .testTarget(name: "NetstackSocketsTests",
                    dependencies: ["NetstackSockets", "NetstackCore", "NetstackIO", "NetstackWire", "NetstackTestSupport"],
                    swiftSettings: lifetimes),
        .testTarget(name: "NetstackIntegrationTests",
                    dependencies: ["NetstackWire", "NetstackCore", "NetstackIO", "NetstackTestSupport", "NetstackClient",
                                   "NetstackControl"],
                    swiftSettings: lifetimes),
        .testTarget(name: "NetstackServiceTests",
                    dependencies: ["NetstackService",
                                   .product(name: "Logging", package: "swift-log"),
                                   .product(name: "Metrics", package: "swift-metrics"),
                                   .product(name: "MetricsTestKit", package: "swift-metrics")],
                    swiftSettings: [.enableUpcomingFeature("NonisolatedNonsendingByDefault")]),
        .testTarget(name: "NetstackIOTests", dependencies: ["NetstackIO", "NetstackCore", "NetstackWire", "NetstackTestSupport"],
                    swiftSettings: lifetimes),
    ]
)

// libFuzzer harnesses (Sources/Fuzz): only when scripts/fuzz.sh asks, since
// they have no `main` of their own (libFuzzer's) and link only with
// `--sanitize fuzzer`.
if Context.environment["NETSTACK_FUZZ"] != nil {
    package.targets += [
        .executableTarget(name: "fuzz-stack", dependencies: ["NetstackCore", "NetstackWire"], path: "Sources/Fuzz/Stack",
                          swiftSettings: lifetimes),
        .executableTarget(name: "fuzz-control", dependencies: ["NetstackControl"], path: "Sources/Fuzz/Control"),
        .executableTarget(name: "fuzz-wire", dependencies: ["NetstackWire"], path: "Sources/Fuzz/Wire"),
        .executableTarget(name: "fuzz-config", dependencies: ["NetstackDaemon", "NetstackIO"], path: "Sources/Fuzz/Config"),
    ]
    package.products += [
        .executable(name: "fuzz-stack", targets: ["fuzz-stack"]),
        .executable(name: "fuzz-control", targets: ["fuzz-control"]),
        .executable(name: "fuzz-wire", targets: ["fuzz-wire"]),
        .executable(name: "fuzz-config", targets: ["fuzz-config"]),
    ]
}
