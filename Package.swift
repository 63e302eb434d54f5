// swift-tools-version: 6.2
import PackageDescription

// Swift 6 language mode (the default for tools 6.x) gives complete strict
// concurrency checking everywhere. Wire views are `~Escapable` structs over
// `RawSpan`; declaring them needs the `Lifetimes` feature.
let lifetimes: [SwiftSetting] = [.enableExperimentalFeature("Lifetimes")]
// Release builds specialise generics and inline small accessors across modules.
let crossModule: [SwiftSetting] = [.unsafeFlags(["-cross-module-optimization"], .when(configuration: .release))]

let package = Package(
    name: "swift-netstack",
    products: [
        .library(name: "NetstackWire", targets: ["NetstackWire"]),
        .library(name: "NetstackIO", targets: ["NetstackIO"]),
        .executable(name: "netstack-bench", targets: ["netstack-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.0"),
    ],
    targets: [
        // C shims.
        .target(name: "CTap"),
        .systemLibrary(name: "CPcap", pkgConfig: "libpcap", providers: [.apt(["libpcap-dev"])]),

        // Libraries, bottom up.
        .target(name: "NetstackWire", swiftSettings: lifetimes + crossModule),
        .target(name: "NetstackIO", dependencies: ["NetstackWire", "CTap", "CPcap"],
                swiftSettings: lifetimes + crossModule),

        // Executables.
        .executableTarget(name: "netstack-bench", dependencies: ["NetstackWire", "NetstackIO"],
                          swiftSettings: lifetimes + crossModule),

        // Tests.
        .target(name: "NetstackTestSupport", dependencies: ["NetstackWire", "NetstackIO", "CTap"],
                path: "Tests/NetstackTestSupport", swiftSettings: lifetimes),
        .testTarget(name: "NetstackWireTests",
                    dependencies: ["NetstackWire", "NetstackIO", "NetstackTestSupport",
                                   .product(name: "PropertyBased", package: "swift-property-based")],
                    swiftSettings: lifetimes),
        .testTarget(name: "NetstackIOTests", dependencies: ["NetstackIO", "NetstackWire", "NetstackTestSupport"],
                    swiftSettings: lifetimes),
    ]
)
