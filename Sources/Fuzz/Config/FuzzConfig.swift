// fuzz-config: libFuzzer harness for the configuration parser, built only by
// scripts/fuzz.sh. Any bytes as a TOML file: parsing must give a
// configuration or a ConfigurationError, never trap. The input is also read
// as a --fault value, whose parser must likewise only succeed or throw.
import NetstackDaemon
import NetstackIO

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    if let configuration = try? ConfigurationFile.parse(text, source: "fuzz") {
        // What parses must also pass or fail validation cleanly.
        _ = try? configuration.validate()
    }
    _ = try? FaultSettings(parsing: text)
    return 0
}
