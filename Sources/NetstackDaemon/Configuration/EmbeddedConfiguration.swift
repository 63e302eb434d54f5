/// `config/netstackd.toml`, built into the binary: the configuration used
/// when no `--config` is given. A test checks that it equals the file.
public let embeddedConfiguration = """
# netstackd: the default configuration.
#
# This file is also embedded in the binary: `netstackd` with no --config uses
# it. Every key is optional; command-line flags override it. An unknown key,
# or a value of the wrong kind, stops the daemon with exit status 2 and a
# message naming the key.

[interface]
# The TAP interface to open (created if it does not exist).
name = "tap0"
# The stack's own MAC address (the kernel side of the TAP has another).
mac = "02:00:00:00:00:01"
mtu = 1500
# IPv4 and IPv6 addresses with their prefixes; each prefix is on-link.
addresses = ["192.168.69.1/24", "fdaa::1/64"]
# At most one default gateway per IP version.
gateways = ["192.168.69.100", "fdaa::100"]
# Add the EUI-64 link-local address fe80::/64 (RFC 4862).
ipv6-link-local = true
# Frames carry a virtio-net header, so that the kernel hands over and takes
# 64 KiB TCP segments and finishes checksums (TSO/GRO; IFF_VNET_HDR). If the
# kernel refuses, the daemon says so and uses plain frames. --no-offloads
# turns it off.
offloads = true

[daemon]
# trace, debug, info, notice, warning, error, critical
log-level = "info"
# Write every frame in and out to this pcap file.
# pcap = "/tmp/netstackd.pcap"
# Only the frames this BPF expression (tcpdump's syntax) selects.
# pcap-filter = "icmp or icmp6"
# pcap, or pcapng (which also records each frame's direction).
# pcap-format = "pcap"
# Past this size the capture moves to FILE.1 (older ones to FILE.2, ...) and
# a new FILE starts; at most pcap-files files are kept (10 unless set).
# pcap-rotate = "100M"
# pcap-files = 10
# Frames are queued for a writer thread: a full queue drops frames
# (capture.dropped in netstackctl stats), the engine never waits.
# Faults injected on the link, both ways, to watch loss recovery by hand:
# drop, corrupt, duplicate, reorder (held 1 ms), delay, rate, seed. Offloads
# are off while faults are on.
# fault = "drop=5%,reorder=10%,delay=2ms,rate=100mbit,seed=1"
# Seconds between counter summaries at log level info; 0 turns them off.
statistics-interval = 10
# Microseconds the engine keeps polling the TAP after the last frame or
# request before it sleeps; 0 sleeps at once. Polling saves the wake-up of a
# sleeping thread on the next frame, at the price of up to this much of a
# core after each burst of traffic; while polling the engine yields to any
# other thread ready to run on its core (docs/decisions.md).
busy-poll-us = 50

[control]
# The Unix-domain socket local programs (netstackctl, NetstackClient) use;
# "" turns it off. It is mode 0600: root and the daemon's user may connect.
socket = "/run/netstackd.sock"
# A group whose members (by primary group) may connect too; the socket is
# then mode 0660 and owned by it.
# group = "netstack"
# Control connections at most, in all and from one process: every socket of
# a program run with netstack-run is one. A connection over a limit gets an
# error (EMFILE for the process's limit, ENFILE for the total) and is closed.
max-clients = 16384
max-clients-per-process = 8192

[ipv6]
# Duplicate address detection probes per address (RFC 4862); 0 turns it off.
dad-transmits = 1
# Router solicitations sent once the link-local address is ready.
router-solicitations = 3
# MLDv2 (RFC 3810) for the solicited-node groups, so that switches that
# snoop MLD deliver neighbour solicitations: every change is reported this
# many times (the robustness variable) and queries are answered; 0 sends no
# MLD.
mld-robustness = 2

[tcp]
# Explicit congestion notification (RFC 3168): "passive" answers a peer that
# asks for it (Linux's and FreeBSD's default), "active" asks on connect
# too, "off" never. Counted as tcp.ecnNegotiated, tcp.ecnCongestionExperienced
# and tcp.ecnReductions.
ecn = "passive"

[limits]
# Bytes that incomplete fragmented datagrams may hold together.
reassembly-memory = 4194304
# Neighbour cache entries (ARP and NDP each); when full, entries still
# resolving are evicted before resolved ones.
neighbor-entries = 1024
# ICMP errors per second and burst, all destinations together (RFC 4443
# §2.4(f), RFC 1812 §4.3.2.8).
icmp-errors-per-second = 1000
icmp-error-burst = 50
# And to any one destination: a burst, then one error per interval (Linux:
# icmp_ratelimit, 1000 ms, burst 6), so that a port scan from one host draws
# a handful of unreachables. "Packet too big" is exempt. 0 ms: no limit.
icmp-destination-interval-ms = 1000
icmp-destination-burst = 6
# TCP connections in every state but TIME-WAIT (half-open ones included), in
# all and with one remote address. A SYN past either is dropped and counted
# (drop.tcp.connectionLimit); a local connect fails with ENOBUFS.
tcp-connections = 65536
tcp-connections-per-peer = 16384
# Half-open connections (SYN received, not yet acknowledged) per listener;
# past it SYNs are answered with SYN cookies (RFC 4987 §3.6), which hold
# nothing (tcp.synCookiesSent).
syn-queue = 256
# Destinations whose path MTU, learned from ICMP "fragmentation needed" /
# "packet too big" (RFC 1191, RFC 8201), is remembered (10 minutes each);
# past it the entry nearest expiry is forgotten, without a log line
# (ip.pathMTULowered counts what is learned).
path-mtu-entries = 1024
# Bytes all socket buffers (TCP send and receive rings, UDP queues) may hold
# together (Linux: tcp_mem). Buffers grow with use; past this, each may
# still grow to 4 KiB, a TCP receiver drops what does not fit
# (drop.tcp.bufferMemory) and stops widening its window, a sender takes
# fewer bytes from its program, a UDP socket drops datagrams
# (drop.udp.bufferMemory). `netstackctl status` shows what is in use.
#
# Reaching any limit in this section is counted and logged, one line per
# limit per 10 s at most.
socket-buffer-memory = 268435456

# Built-in services (RFC 862 echo, RFC 863 discard, RFC 867 daytime, RFC 864
# chargen), each on its port over the listed transports, on every address of
# both IP versions. Remove a section to turn the service off.
#
# Each service runs inside a middleware stack (logging, metrics, rate limit,
# connection limit, idle timeout); its limits are optional keys, shown here
# for echo with their defaults:
#   max-connections  TCP connections served at once (IPv4 and IPv6 together)
#   overflow         "wait": a connection over the limit waits for a slot
#                    (at most 128 wait; more are reset); "refuse": it is reset
#   idle-timeout     seconds a TCP connection may move no byte; 0: forever
#   rate-limit       new TCP connections or UDP datagrams per second; 0: no
#                    limit. Connections over the rate wait, datagrams are dropped.
[services.echo]
port = 7
transports = ["udp", "tcp"]
max-connections = 16384
overflow = "wait"
idle-timeout = 300
rate-limit = 0

[services.discard]
port = 9
transports = ["udp", "tcp"]

[services.daytime]
port = 13
transports = ["udp", "tcp"]

[services.chargen]
port = 19
transports = ["tcp"]

# An iperf3 server (iperf3's own protocol): `iperf3 -c 192.168.69.1` with -R,
# -u, -P, -6, --bidir and -J. One test at a time; the limits above do not
# apply to it.
[services.iperf3]
port = 5201
transports = ["tcp", "udp"]

# Metrics in the Prometheus text format over HTTP/1.1, served by the stack
# itself: `curl http://192.168.69.1:9100/metrics`. The stack's counters and
# drops by reason, and the services' metrics. TCP only; slow or idle clients
# are reset after idle-timeout seconds (10 by default for both web services).
[services.metrics]
port = 9100
transports = ["tcp"]

# The status page (interface, addresses, neighbours, sockets, counters; it
# refreshes itself) on port 80, for a browser: http://192.168.69.1/. The
# same server as the metrics: each serves / and /metrics.
[services.status]
port = 80
transports = ["tcp"]
"""
