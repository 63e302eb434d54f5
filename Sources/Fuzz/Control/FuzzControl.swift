// fuzz-control: libFuzzer harness for the control protocol's decoder, built
// only by scripts/fuzz.sh. Any bytes: a frame length prefix and a message;
// decoding must throw a ControlError or give a message that encodes to the
// same frame it came from.
import NetstackControl

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzControl(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if bytes.count >= 4 { _ = try? ControlCodec.frameLength(bytes[0..<4]) }
    guard let message = try? ControlCodec.decode(bytes) else { return 0 }
    let frame = ControlCodec.encode(message)
    guard let again = try? ControlCodec.decode(Array(frame[4...])), again == message else {
        fatalError("\(message) does not survive encoding again")
    }
    return 0
}
