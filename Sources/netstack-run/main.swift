// netstack-run: runs a program with its TCP and UDP sockets inside netstackd.
//
//   netstack-run [--socket PATH] [--] CMD ARGS...
//
// It preloads libnetstack-preload.so (from the directory this executable is
// in) and execs CMD; the program's AF_INET and AF_INET6 TCP and UDP sockets then
// live in the stack behind PATH (netstackd's control socket). See
// docs/preload.md for what is served and what stays the kernel's.
import ArgumentParser
import Glibc

struct NetstackRun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "netstack-run",
        abstract: "Run a program with its TCP and UDP sockets inside netstackd.",
        discussion: "The program's AF_INET and AF_INET6 TCP and UDP sockets are the stack's; everything else stays the kernel's (docs/preload.md).")

    @Option(name: .long, help: "netstackd's control socket.")
    var socket = "/run/netstackd.sock"

    @Argument(parsing: .captureForPassthrough, help: "The program and its arguments.")
    var command: [String] = []

    mutating func validate() throws {
        // The arguments are captured whole (they are the program's); only
        // a leading help flag is ours.
        if command.first == "-h" || command.first == "--help" { throw CleanExit.helpRequest(self) }
        if command.first == "--" { command.removeFirst() }
        guard !command.isEmpty else { throw ValidationError("give the program to run (CMD)") }
    }

    func run() throws {
        let library = Self.libraryPath()
        guard access(library, R_OK) == 0 else {
            throw ValidationError("the preload library is missing: \(library) (build it with `swift build --product netstack-preload`)")
        }
        let preload = getenv("LD_PRELOAD").map { "\(library):\(String(cString: $0))" } ?? library
        setenv("LD_PRELOAD", preload, 1)
        setenv("NETSTACK_SOCKET", socket, 1)
        var arguments: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) }
        arguments.append(nil)
        execvp(command[0], &arguments)
        let reason = String(cString: strerror(errno))
        throw ValidationError("cannot run \(command[0]): \(reason)")
    }

    /// libnetstack-preload.so beside this executable.
    static func libraryPath() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard length > 0 else { return "libnetstack-preload.so" }
        let path = String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let directory = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        return directory + "/libnetstack-preload.so"
    }
}

// Bad arguments end with the message and exit status 2 (help: 0).
do {
    let command = try NetstackRun.parse()
    try command.run()
} catch {
    let code = NetstackRun.exitCode(for: error)
    if code == .success {
        print(NetstackRun.fullMessage(for: error))
        exit(0)
    }
    let text = Array("netstack-run: \(NetstackRun.message(for: error))\n".utf8)
    _ = text.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    exit(2)
}
