import Foundation
import Glibc
import NetstackTestSupport
import Testing

/// Unmodified programs from Debian packages on the stack, through
/// `netstack-run` and the preload library: curl, Python's http.server,
/// nginx, iperf3, socat, ssh, a pre-forking server, and what a program sees
/// when the daemon stops.
@Suite(.serialized, .enabled(if: runningAsRoot, "integration tests need root for namespaces and TAP devices"))
struct PreloadTests {
    /// A directory for a test's files, removed with the value.
    final class Scratch {
        let path: String

        init(_ prefix: String) throws {
            var template = Array("/tmp/netstack-\(prefix)-XXXXXX".utf8CString)
            guard let made = mkdtemp(&template) else {
                throw TestShell.Failure(command: "mkdtemp", status: errno, output: String(cString: strerror(errno)))
            }
            path = String(cString: made)
            chmod(path, 0o755)
        }

        deinit { _ = TestShell.execute("rm -rf \(path)") }

        /// Writes `text` to `name` in the directory; its path.
        @discardableResult
        func write(_ name: String, _ text: String, executable: Bool = false) throws -> String {
            let file = "\(path)/\(name)"
            try text.write(toFile: file, atomically: true, encoding: .utf8)
            if executable { chmod(file, 0o755) }
            return file
        }

        /// A file of `bytes` random bytes; its path.
        func random(_ name: String, bytes: Int) throws -> String {
            let file = "\(path)/\(name)"
            try TestShell.run("head -c \(bytes) /dev/urandom > \(file)")
            return file
        }
    }

    static func sha256(_ path: String) throws -> String {
        String(try TestShell.run("sha256sum \(path)").prefix(64))
    }

    /// Waits (up to 5 s) until the namespace's kernel listens on TCP `port`.
    func waitForKernelListener(_ namespace: TestNamespace, port: Int) throws {
        try namespace.run("for i in $(seq 100); do ss -Hltn \"sport = :\(port)\" | grep -q . && exit 0; sleep 0.05; done; exit 1")
    }

    @Test func curlFetchesFiftyMebibytesFromTheHostOverBothVersions() throws {
        let (namespace, daemon) = try DaemonProcess.start("plcurl")
        defer { namespace.remove() }
        defer { daemon.stop() }
        let scratch = try Scratch("plcurl")
        let expected = try Self.sha256(try scratch.random("f", bytes: 50 << 20))
        let server = try BackgroundCommand(
            in: namespace, "timeout 120 python3 -m http.server 8000 --bind :: --directory \(scratch.path)")
        defer { server.stop() }
        try waitForKernelListener(namespace, port: 8000)
        for url in ["http://192.168.69.100:8000/f", "http://[fdaa::100]:8000/f"] {
            let copy = "\(scratch.path)/copy"
            try namespace.run(daemon.preloaded("timeout 60 curl -sS -g -o \(copy) \(url)"))
            #expect(try Self.sha256(copy) == expected, "\(url)")
            unlink(copy)
        }
        #expect(daemon.isRunning)
    }

    @Test func pythonHTTPServerInsideTheStackServesTheHost() throws {
        let (namespace, daemon) = try DaemonProcess.start("plpython")
        defer { namespace.remove() }
        defer { daemon.stop() }
        let scratch = try Scratch("plpython")
        let expected = try Self.sha256(try scratch.random("g", bytes: 8 << 20))
        let server = try BackgroundCommand(
            in: namespace, daemon.preloaded("timeout 60 python3 -m http.server 8080 --bind :: --directory \(scratch.path)"))
        defer { server.stop() }
        try daemon.waitForListener(port: 8080)
        let listing = try namespace.run("curl -sS http://192.168.69.1:8080/")
        #expect(listing.contains("href=\"g\""), "\(listing.prefix(300))")
        for url in ["http://192.168.69.1:8080/g", "http://[fdaa::1]:8080/g"] {
            let copy = "\(scratch.path)/copy"
            try namespace.run("curl -sS -g -o \(copy) \(url)")
            #expect(try Self.sha256(copy) == expected, "\(url)")
            unlink(copy)
        }
        #expect(server.isRunning, "\(server.output)")
    }

    @Test func nginxServesAThousandRequestsWithPreforkedWorkers() throws {
        let (namespace, daemon) = try DaemonProcess.start("plnginx")
        defer { namespace.remove() }
        defer { daemon.stop() }
        let scratch = try Scratch("plnginx")
        try TestShell.run("mkdir -p \(scratch.path)/www")
        try scratch.write("www/index.html", "<h1>served by nginx on swift-netstack</h1>\n")
        let large = try Self.sha256(try scratch.random("www/large", bytes: 4 << 20))
        // Two workers forked after the master listened; they accept on the
        // inherited sockets with epoll and answer with sendfile. Workers stay
        // root: the control socket is root's.
        try scratch.write("nginx.conf", """
            user root;
            worker_processes 2;
            pid \(scratch.path)/nginx.pid;
            error_log \(scratch.path)/error.log warn;
            events { worker_connections 1024; use epoll; }
            http {
                access_log off;
                sendfile on;
                client_body_temp_path \(scratch.path)/body;
                proxy_temp_path \(scratch.path)/proxy;
                fastcgi_temp_path \(scratch.path)/fastcgi;
                uwsgi_temp_path \(scratch.path)/uwsgi;
                scgi_temp_path \(scratch.path)/scgi;
                server {
                    listen 8081;
                    listen [::]:8081;
                    root \(scratch.path)/www;
                }
            }
            """)
        let start = try scratch.write("nginx.sh", """
            #!/bin/sh
            exec timeout 60 nginx -e \(scratch.path)/error.log -c \(scratch.path)/nginx.conf -g "daemon off;"
            """, executable: true)
        let server = try BackgroundCommand(in: namespace, daemon.preloaded(start))
        defer { server.stop() }
        try daemon.waitForListener(port: 8081)
        let report = try namespace.run("ab -q -n 1000 -c 10 http://192.168.69.1:8081/index.html 2>&1")
        func figure(_ label: String) -> Double? {
            guard let line = report.split(separator: "\n").first(where: { $0.hasPrefix(label) }) else { return nil }
            return line.split(separator: " ").compactMap { Double($0) }.first
        }
        #expect(figure("Complete requests:") == 1000, "\(report)")
        #expect(figure("Failed requests:") == 0, "\(report)")
        #expect(figure("Non-2xx responses:") == nil, "\(report)")
        print("nginx under netstack-run: \(figure("Requests per second:") ?? 0) requests/s (ab -n 1000 -c 10)")
        for url in ["http://192.168.69.1:8081/large", "http://[fdaa::1]:8081/large"] {
            let copy = "\(scratch.path)/copy"
            try namespace.run("curl -sS -g -o \(copy) \(url)")
            #expect(try Self.sha256(copy) == large, "\(url)")
            unlink(copy)
        }
        let errors = (try? String(contentsOfFile: "\(scratch.path)/error.log", encoding: .utf8)) ?? ""
        #expect(!errors.contains("[alert]") && !errors.contains("[emerg]"), "\(errors)")
        #expect(server.isRunning, "\(server.output)")
    }

    @Test func iperf3ServerThroughThePreloadBothWays() throws {
        let (namespace, daemon) = try DaemonProcess.start("pliperf")
        defer { namespace.remove() }
        defer { daemon.stop() }
        let server = try BackgroundCommand(in: namespace, daemon.preloaded("timeout 60 iperf3 -s -p 5301"))
        defer { server.stop() }
        try daemon.waitForListener(port: 5301)
        try daemon.waitForListener(port: 5201)
        var rows: [String] = []
        for (name, arguments) in [("host→program", "-c 192.168.69.1 -p 5301"),
                                  ("program→host (-R)", "-c 192.168.69.1 -p 5301 -R"),
                                  ("UDP host→program", "-c 192.168.69.1 -p 5301 -u -b 100M"),
                                  ("built-in host→stack", "-c 192.168.69.1"),
                                  ("built-in stack→host (-R)", "-c 192.168.69.1 -R")] {
            // iperf3 -s closes its listener after each test and opens a new
            // one (a few control round trips through the preload): a client
            // that comes in between is refused, so it tries again.
            var json: [String: Any] = [:]
            for attempt in 1...5 {
                let output = try namespace.run("timeout -k 1 30 iperf3 -J -t 2 \(arguments)")
                json = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
                guard let error = json["error"] as? String, error.contains("Connection refused"), attempt < 5 else { break }
                usleep(200_000)
            }
            #expect(json["error"] == nil, "\(name): \(json["error"] ?? "")")
            let end = json["end"] as? [String: Any] ?? [:]
            let sum = (end["sum_received"] ?? end["sum"]) as? [String: Any] ?? [:]
            let bits = (sum["bits_per_second"] as? Double) ?? 0
            #expect(bits > 1e6, "\(name): \(bits) bit/s")
            rows.append("\(name) \(String(format: "%.2f", bits / 1e9)) Gbit/s")
        }
        // Figures for people; the ratio target is the bench script's (scripts/bench.sh).
        print("iperf3 (2 s each, \(DaemonProcess.binary)): " + rows.joined(separator: ", "))
        #expect(server.isRunning, "\(server.output)")
    }

    @Test func socatBothWaysOverTCPAndUDP() throws {
        let (namespace, daemon) = try DaemonProcess.start("plsocat")
        defer { namespace.remove() }
        defer { daemon.stop() }
        let scratch = try Scratch("plsocat")
        let input = try scratch.random("in", bytes: 4 << 20)
        let expected = try Self.sha256(input)
        // The program sends to the host.
        let sink = try BackgroundCommand(
            in: namespace, "timeout 30 socat -u TCP-LISTEN:7001,reuseaddr CREATE:\(scratch.path)/out1")
        try waitForKernelListener(namespace, port: 7001)
        try namespace.run(daemon.preloaded("timeout 30 socat -u OPEN:\(input) TCP:192.168.69.100:7001"))
        #expect(sink.wait() == 0, "\(sink.output)")
        #expect(try Self.sha256("\(scratch.path)/out1") == expected)
        // The host sends to the program, over IPv6.
        let receiver = try BackgroundCommand(
            in: namespace, daemon.preloaded("timeout 30 socat -u TCP6-LISTEN:7002 CREATE:\(scratch.path)/out2"))
        try daemon.waitForListener(port: 7002)
        try namespace.run("timeout 30 socat -u OPEN:\(input) TCP6:[fdaa::1]:7002")
        #expect(receiver.wait() == 0, "\(receiver.output)")
        #expect(try Self.sha256("\(scratch.path)/out2") == expected)
        // UDP: the program echoes the host's datagrams (it connects to the
        // first sender, as UDP-LISTEN does).
        let echo = try BackgroundCommand(in: namespace, daemon.preloaded("timeout 30 socat UDP4-LISTEN:7003 EXEC:cat"))
        defer { echo.stop() }
        try daemon.waitForSocket { $0.proto.hasPrefix("udp") && $0.local.hasSuffix(":7003") }
        let answer = try namespace.run("printf \"datagram-one\" | timeout 10 socat -t 2 - UDP4:192.168.69.1:7003")
        #expect(answer == "datagram-one", "\(answer) \(echo.output)")
    }

    /// A non-blocking connect whose SYN goes unanswered for a while: it says
    /// EINPROGRESS, and SO_ERROR tells the result once the handshake is done.
    @Test func aNonBlockingConnectIsInProgressThenConnects() throws {
        let (namespace, daemon) = try DaemonProcess.start("plconnect")
        defer { namespace.remove() }
        defer { daemon.stop() }
        let scratch = try Scratch("plconnect")
        let lifted = "\(scratch.path)/lifted"
        let script = try scratch.write("client.py", """
            import errno, os, select, socket, sys, time
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            code = s.connect_ex(("192.168.69.100", 7030))
            print("connect:" + errno.errorcode.get(code, str(code)), flush=True)
            while not os.path.exists(sys.argv[1]):
                time.sleep(0.02)
            _, writable, _ = select.select([], [s], [], 10)
            print("writable:%s" % bool(writable), flush=True)
            print("so_error:%d" % s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR), flush=True)
            s.setblocking(True)
            s.sendall(b"after-connect")
            s.close()
            """)
        // The host's kernel drops the SYNs until the program has seen EINPROGRESS.
        try namespace.run("""
            nft add table inet hold && \
            nft "add chain inet hold input { type filter hook input priority 0 ; }" && \
            nft add rule inet hold input tcp dport 7030 drop
            """)
        let sink = try BackgroundCommand(in: namespace, "timeout 30 socat -u TCP-LISTEN:7030 CREATE:\(scratch.path)/out")
        defer { sink.stop() }
        try waitForKernelListener(namespace, port: 7030)
        let program = try BackgroundCommand(in: namespace, daemon.preloaded("timeout 30 python3 \(script) \(lifted)"))
        defer { program.stop() }
        for _ in 0..<100 where !program.output.contains("connect:") { usleep(50_000) }
        #expect(program.output.contains("connect:EINPROGRESS"), "\(program.output)")
        try namespace.run("nft delete table inet hold")
        _ = FileManager.default.createFile(atPath: lifted, contents: nil)
        #expect(program.wait() == 0, "\(program.output)")
        #expect(program.output.contains("writable:True") && program.output.contains("so_error:0"), "\(program.output)")
        #expect(sink.wait() == 0)
        #expect((try? String(contentsOfFile: "\(scratch.path)/out", encoding: .utf8)) == "after-connect")
    }

    /// SO_KEEPALIVE with TCP_KEEPIDLE/KEEPINTVL/KEEPCNT set before connect,
    /// or after it (through the stream's key): the stack probes at the
    /// program's pace and gives up on a peer that went silent, and a value
    /// outside Linux's range is EINVAL.
    @Test(arguments: [false, true])
    func keepaliveTimingSetByTheProgramApplies(afterConnect: Bool) throws {
        let (namespace, daemon) = try DaemonProcess.start("plkeep")
        defer { namespace.remove() }
        defer { daemon.stop() }
        let scratch = try Scratch("plkeep")
        let script = try scratch.write("client.py", """
            import socket, sys, time
            def configure(s):
                try:
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 0)
                    print("idle0:accepted", flush=True)
                except OSError as e:
                    print("idle0:errno%d" % e.errno, flush=True)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 2)
                print("get:%d,%d,%d" % (s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                                        s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                                        s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT)), flush=True)
            after = \(afterConnect ? "True" : "False")
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if not after:
                configure(s)
            s.connect(("192.168.69.100", 7031))
            if after:
                configure(s)
            s.sendall(b"hello")
            print("connected", flush=True)
            start = time.monotonic()
            s.settimeout(20)
            try:
                data = s.recv(100)
                outcome = "eof" if not data else "data"
            except socket.timeout:
                outcome = "hung"
            except OSError as e:
                outcome = "errno%d" % e.errno
            print("outcome:%s after %.1f s" % (outcome, time.monotonic() - start), flush=True)
            """)
        let sink = try BackgroundCommand(in: namespace, "timeout 40 socat -u TCP-LISTEN:7031 CREATE:\(scratch.path)/out")
        defer { sink.stop() }
        try waitForKernelListener(namespace, port: 7031)
        let program = try BackgroundCommand(in: namespace, daemon.preloaded("timeout 40 python3 \(script)"))
        defer { program.stop() }
        for _ in 0..<200 where !program.output.contains("connected") { usleep(50_000) }
        // The host goes silent: nothing of the connection gets through.
        try namespace.run("""
            nft add table inet silent && \
            nft "add chain inet silent input { type filter hook input priority 0 ; }" && \
            nft add rule inet silent input tcp dport 7031 drop
            """)
        defer { _ = try? namespace.run("nft delete table inet silent") }
        #expect(program.wait() == 0, "\(program.output)")
        print("keepalive through the preload: \(program.output.split(separator: "\n").joined(separator: "; "))")
        #expect(program.output.contains("idle0:errno22"), "\(program.output)")
        #expect(program.output.contains("get:1,1,2"), "\(program.output)")
        // 1 s idle, then 2 probes 1 s apart: over within a few seconds. The
        // abort reaches the program as ECONNRESET, since a Unix stream
        // cannot carry ETIMEDOUT (docs/preload.md).
        #expect(!program.output.contains("outcome:hung") && !program.output.contains("outcome:data"),
                "\(program.output)")
        let seconds = program.output.split(separator: "after ").last.flatMap { Double($0.prefix { $0 != " " }) }
        #expect((seconds ?? 99) < 8, "\(program.output)")
    }

    @Test func sshRunsARemoteCommandOnTheHostSide() throws {
        let (namespace, daemon) = try DaemonProcess.start("plssh")
        defer { namespace.remove() }
        defer { daemon.stop() }
        let scratch = try Scratch("plssh")
        try TestShell.run("""
            ssh-keygen -q -t ed25519 -N "" -f \(scratch.path)/host_key && \
            ssh-keygen -q -t ed25519 -N "" -f \(scratch.path)/client_key && \
            cp \(scratch.path)/client_key.pub \(scratch.path)/authorized_keys && mkdir -p /run/sshd
            """)
        try scratch.write("sshd_config", """
            Port 2222
            ListenAddress 192.168.69.100
            HostKey \(scratch.path)/host_key
            AuthorizedKeysFile \(scratch.path)/authorized_keys
            PermitRootLogin prohibit-password
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            StrictModes no
            UsePAM no
            PidFile \(scratch.path)/sshd.pid
            """)
        let sshd = try BackgroundCommand(in: namespace, "timeout 60 /usr/sbin/sshd -D -e -f \(scratch.path)/sshd_config")
        defer { sshd.stop() }
        try waitForKernelListener(namespace, port: 2222)
        let output = try namespace.run(daemon.preloaded("""
            timeout 30 ssh -i \(scratch.path)/client_key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
            -o BatchMode=yes -o LogLevel=ERROR -p 2222 root@192.168.69.100 echo ran-on-the-host-side
            """))
        #expect(output.contains("ran-on-the-host-side"), "\(output) \(sshd.output)")
    }

    @Test func aPreforkingServerServesFromItsChildren() throws {
        let (namespace, daemon) = try DaemonProcess.start("plfork")
        defer { namespace.remove() }
        defer { daemon.stop() }
        let scratch = try Scratch("plfork")
        // Listens, forks three children that each accept (blocking) on the
        // inherited socket, and answers with the child's pid.
        let script = try scratch.write("prefork.py", """
            import ctypes, os, signal, socket, sys
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("0.0.0.0", 7010))
            listener.listen(64)
            children = []
            for _ in range(3):
                pid = os.fork()
                if pid == 0:
                    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: end with the parent
                    while True:
                        connection, _ = listener.accept()
                        data = connection.recv(100)
                        connection.sendall(b"%d:" % os.getpid() + data)
                        connection.close()
                children.append(pid)
            def stop(*_):
                for pid in children:
                    os.kill(pid, signal.SIGKILL)
                sys.exit(0)
            signal.signal(signal.SIGTERM, stop)
            print("parent", os.getpid(), flush=True)
            while True:
                signal.pause()
            """)
        let client = try scratch.write("client.py", """
            import socket
            pids = []
            for i in range(30):
                with socket.create_connection(("192.168.69.1", 7010), timeout=5) as c:
                    c.sendall(b"hello")
                    pids.append(c.recv(100).split(b":")[0].decode())
            print(" ".join(pids))
            """)
        let server = try BackgroundCommand(in: namespace, daemon.preloaded("timeout 60 python3 \(script)"))
        defer { server.stop() }
        try daemon.waitForListener(port: 7010)
        let pids = try namespace.run("timeout 30 python3 \(client)").split(whereSeparator: \.isWhitespace).map(String.init)
        #expect(pids.count == 30)
        let parent = server.output.split(separator: " ").last.map { String($0.filter(\.isNumber)) } ?? ""
        #expect(!parent.isEmpty && !pids.contains(parent), "served by children only: \(pids), parent \(parent)")
        print("pre-forking server: 30 connections served by \(Set(pids).count) of 3 children")
    }

    /// A dual-stack listener (IPv6, V6ONLY off) whose program accepts late:
    /// connections past the backlog wait as a full Linux accept queue makes
    /// them wait (the SYN is dropped and retransmitted), and none is reset.
    @Test func connectionsPastTheBacklogOfASlowAcceptorWaitAndAreNotReset() throws {
        let (namespace, daemon) = try DaemonProcess.start("plslow")
        defer { namespace.remove() }
        defer { daemon.stop() }
        let scratch = try Scratch("plslow")
        let script = try scratch.write("slow.py", """
            import socket, time
            listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            listener.bind(("::", 7011))
            listener.listen(2)
            print("listening", flush=True)
            time.sleep(2)
            for _ in range(12):
                connection, _ = listener.accept()
                connection.sendall(connection.recv(100))
                connection.close()
            """)
        let client = try scratch.write("client.py", """
            import socket, threading
            results = []
            def one(i):
                try:
                    with socket.create_connection(("192.168.69.1", 7011), timeout=15) as c:
                        c.sendall(b"n%d" % i)
                        results.append(c.recv(100) == b"n%d" % i)
                except OSError as error:
                    results.append(repr(error))
            threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
            for t in threads: t.start()
            for t in threads: t.join()
            print(sum(1 for r in results if r is True), [r for r in results if r is not True])
            """)
        let server = try BackgroundCommand(in: namespace, daemon.preloaded("timeout 60 python3 \(script)"))
        defer { server.stop() }
        try daemon.waitForListener(port: 7011)
        let answer = try namespace.run("timeout 40 python3 \(client)")
        #expect(answer.hasPrefix("12 []"), "echoed, and the failures: \(answer)")
        print("slow acceptor, backlog 2: \(answer.trimmingCharacters(in: .whitespacesAndNewlines))")
    }

    @Test func whenTheDaemonStopsSocketsFailAtOnce() throws {
        let (namespace, daemon) = try DaemonProcess.start("plstop")
        defer { namespace.remove() }
        let scratch = try Scratch("plstop")
        let gone = "\(scratch.path)/gone"
        let script = try scratch.write("client.py", """
            import errno, os, socket, sys, time
            connection = socket.create_connection(("192.168.69.100", 7020))
            connection.sendall(b"hello")
            print("connected", flush=True)
            while not os.path.exists(sys.argv[1]):
                time.sleep(0.02)
            results = []
            def attempt(name, call):
                try:
                    results.append(name + ":" + call())
                except OSError as error:
                    results.append(name + ":" + errno.errorcode.get(error.errno, str(error.errno)))
            def send():
                for _ in range(64):
                    connection.sendall(b"x" * 65536)
                return "ok"
            attempt("recv", lambda: "eof" if connection.recv(10) == b"" else "data")
            attempt("send", send)
            attempt("socket", lambda: (socket.socket(), "ok")[1])
            print(" ".join(results), flush=True)
            """)
        let sink = try BackgroundCommand(in: namespace, "timeout 30 socat -u TCP-LISTEN:7020,reuseaddr CREATE:/dev/null")
        defer { sink.stop() }
        try waitForKernelListener(namespace, port: 7020)
        let program = try BackgroundCommand(in: namespace, daemon.preloaded("timeout 30 python3 \(script) \(gone)"))
        defer { program.stop() }
        for _ in 0..<100 where !program.output.contains("connected") { usleep(50_000) }
        #expect(program.output.contains("connected"), "\(program.output)")
        #expect(daemon.stop() == 0)
        _ = FileManager.default.createFile(atPath: gone, contents: nil)
        #expect(program.wait() == 0, "\(program.output)")
        let results = program.output.split(separator: "\n").last.map(String.init) ?? ""
        print("after the daemon stopped: \(results)")
        // The read says ECONNRESET, writes fail with EPIPE, as on a kernel
        // socket whose connection was reset; a new socket cannot reach the
        // stack: ECONNREFUSED.
        #expect(results.contains("recv:ECONNRESET"), "\(results)")
        #expect(results.contains("send:EPIPE"), "\(results)")
        #expect(results.contains("socket:ECONNREFUSED"), "\(results)")
    }

    /// A reset from the peer reads as ECONNRESET in the program (after the
    /// bytes that came before it), then writes fail with EPIPE; a clean close
    /// in both directions reads as end of file, and stays so once the daemon
    /// has let go of the connection.
    @Test func aResetReadsAsConnectionResetAndACleanEndAsEndOfFile() throws {
        let (namespace, daemon) = try DaemonProcess.start("plreset")
        defer { namespace.remove() }
        defer { daemon.stop() }
        let scratch = try Scratch("plreset")
        // The host side: the first connection gets "bye" and a reset (linger
        // 0), the second "bye" and a clean close once the program's end came.
        let server = try scratch.write("server.py", """
            import socket, struct
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("0.0.0.0", 7030))
            listener.listen(4)
            connection, _ = listener.accept()
            connection.recv(100)
            connection.sendall(b"bye")
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            connection.close()
            connection, _ = listener.accept()
            while connection.recv(100):
                pass
            connection.sendall(b"bye")
            connection.close()
            """)
        let client = try scratch.write("client.py", """
            import errno, socket, time
            def attempt(call):
                try:
                    return call()
                except OSError as error:
                    return errno.errorcode.get(error.errno, str(error.errno))
            c = socket.create_connection(("192.168.69.100", 7030), timeout=10)
            c.sendall(b"hello")
            time.sleep(0.5)
            first = attempt(lambda: c.recv(100).decode() or "eof")
            second = attempt(lambda: c.recv(100).decode() or "eof")
            written = attempt(lambda: (c.send(b"more"), "sent")[1])
            c.close()
            d = socket.create_connection(("192.168.69.100", 7030), timeout=10)
            d.sendall(b"hello")
            d.shutdown(socket.SHUT_WR)
            got = b""
            while True:
                piece = d.recv(100)
                if not piece:
                    break
                got += piece
            time.sleep(0.5)
            after = attempt(lambda: d.recv(100).decode() or "eof")
            print("reset:", first, second, written, "clean:", got.decode(), after, flush=True)
            """)
        let host = try BackgroundCommand(in: namespace, "timeout 30 python3 \(server)")
        defer { host.stop() }
        try waitForKernelListener(namespace, port: 7030)
        let answer = try namespace.run(daemon.preloaded("timeout 30 python3 \(client)"))
            .trimmingCharacters(in: .whitespacesAndNewlines)
        print("reset and clean end through the preload: \(answer)")
        #expect(answer == "reset: bye ECONNRESET EPIPE clean: bye eof", "\(answer)")
        #expect(host.wait() == 0, "\(host.output)")
    }

    /// SO_LINGER on with a zero time: closing resets the connection, on a
    /// connected socket and on an accepted one (inherited from its
    /// listener), and only when the last descriptor goes (a forked child's
    /// copy keeps the connection open); without it a close is a FIN.
    @Test func lingerWithAZeroTimeClosesWithAReset() throws {
        let (namespace, daemon) = try DaemonProcess.start("pllinger")
        defer { namespace.remove() }
        defer { daemon.stop() }
        let scratch = try Scratch("pllinger")
        // The host side: each connection answers its first bytes with "ok",
        // then reads to its end, which is an end of file or a reset.
        let server = try scratch.write("server.py", """
            import socket, time
            def drain(c, got):
                try:
                    while True:
                        piece = c.recv(100)
                        if not piece:
                            return got.decode() + ":eof"
                        got += piece
                except ConnectionResetError:
                    return got.decode() + ":reset"
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("0.0.0.0", 7031))
            listener.listen(4)
            results = []
            for case in range(3):
                c, _ = listener.accept()
                got = c.recv(100)
                c.sendall(b"ok")
                results.append(drain(c, got))
                c.close()
            # The program's listener (SO_LINGER set before listen).
            for attempt in range(100):
                try:
                    c = socket.create_connection(("192.168.69.1", 7032), timeout=10)
                    break
                except OSError:
                    time.sleep(0.05)
            c.sendall(b"in")
            results.append(drain(c, b"accepted"))
            print(" ".join(results), flush=True)
            """)
        let client = try scratch.write("client.py", """
            import os, socket, struct, time
            zero = struct.pack("ii", 1, 0)
            def connect(first):
                c = socket.create_connection(("192.168.69.100", 7031), timeout=10)
                c.sendall(first)
                assert c.recv(2) == b"ok"
                return c
            connect(b"plain").close()
            c = connect(b"linger")
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, zero)
            c.close()
            c = connect(b"parent")
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, zero)
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, zero)
            listener.bind(("0.0.0.0", 7032))
            listener.listen(4)
            child = os.fork()
            if child == 0:
                listener.close()
                c.sendall(b"child")
                time.sleep(0.3)   # "child" is sent before the reset
                c.close()
                os._exit(0)
            c.close()
            os.waitpid(child, 0)
            accepted, _ = listener.accept()
            assert accepted.recv(2) == b"in"
            accepted.close()
            """)
        let host = try BackgroundCommand(in: namespace, "timeout 30 python3 \(server)")
        defer { host.stop() }
        try waitForKernelListener(namespace, port: 7031)
        _ = try namespace.run(daemon.preloaded("timeout 30 python3 \(client)"))
        #expect(host.wait() == 0, "\(host.output)")
        let results = host.output.trimmingCharacters(in: .whitespacesAndNewlines)
        print("closes through the preload: \(results)")
        #expect(results == "plain:eof linger:reset parentchild:reset accepted:reset", "\(results)")
    }
}
