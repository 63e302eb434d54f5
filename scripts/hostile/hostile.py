#!/usr/bin/env python3
"""Hostile traffic against netstackd, from the host side of its TAP.

Run by scripts/hostile.sh inside the namespace it creates (tap0 with the
host's addresses, netstackd holding the TAP). Each case sends its frames
through a packet socket on tap0, then checks that the daemon is alive, that
its resident memory is within the cap, that a ping and a TCP echo still
work, and which drop counters rose. Prints one table row per case and exits
1 if any case failed.
"""
import argparse, json, os, random, socket, struct, subprocess, sys, time

from scapy.all import (ARP, ICMP, IP, IPv6, TCP, UDP, Ether, ICMPv6EchoRequest, ICMPv6ND_NA, ICMPv6ND_NS,
                       ICMPv6NDOptSrcLLAddr, ICMPv6NDOptDstLLAddr, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
                       PadN, Raw, fragment, raw)

HOST_MAC, STACK_MAC = "02:00:00:00:00:64", "02:00:00:00:00:01"
HOST4, STACK4 = "192.168.69.100", "192.168.69.1"
HOST6, STACK6 = "fdaa::100", "fdaa::1"

parser = argparse.ArgumentParser()
parser.add_argument("--pid", type=int, required=True)
parser.add_argument("--control", required=True)
parser.add_argument("--netstackctl", required=True)
parser.add_argument("--memory-cap-mib", type=float, default=256)
parser.add_argument("--log", help="the daemon's log, checked for its limit-reached warnings")
options = parser.parse_args()

link = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
link.bind(("tap0", 0))
link.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
link.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)


def send(frames):
    """Sends scapy packets or raw bytes; returns how many."""
    count = 0
    for frame in frames:
        data = frame if isinstance(frame, (bytes, bytearray)) else raw(frame)
        while True:
            try:
                link.send(data)
                break
            except BlockingIOError:
                time.sleep(0.001)
            except OSError as error:
                if error.errno == 105:  # ENOBUFS: the TAP's queue is full; let the stack catch up
                    time.sleep(0.001)
                    continue
                raise
        count += 1
    return count


def drain():
    link.setblocking(False)
    try:
        while True:
            link.recv(65536)
    except BlockingIOError:
        pass
    link.setblocking(True)


def replies(seconds=0.3, match=lambda frame: True):
    """Frames from the stack within `seconds` that `match` accepts."""
    found = []
    end = time.time() + seconds
    link.settimeout(0.05)
    while time.time() < end:
        try:
            data = link.recv(65536)
        except socket.timeout:
            continue
        frame = Ether(data)
        if frame.src == STACK_MAC and match(frame):
            found.append(frame)
    link.settimeout(None)
    return found


def e4(payload):
    return Ether(src=HOST_MAC, dst=STACK_MAC) / payload


def e6(payload):
    return Ether(src=HOST_MAC, dst=STACK_MAC) / payload


def counters():
    out = subprocess.run([options.netstackctl, "stats", "--json", "--socket", options.control],
                         capture_output=True, text=True, timeout=10).stdout
    return json.loads(out)["counters"] if out else {}


def resources():
    """Each cap of [limits]: (name, in use, limit), from `netstackctl status`."""
    out = subprocess.run([options.netstackctl, "status", "--json", "--socket", options.control],
                         capture_output=True, text=True, timeout=10).stdout
    return [(r["name"], r["inUse"], r["limit"]) for r in json.loads(out).get("resources", [])] if out else []


def resident_mib():
    with open(f"/proc/{options.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def alive():
    try:
        os.kill(options.pid, 0)
        return True
    except OSError:
        return False


def ping_works():
    return subprocess.run(["ping", "-c", "1", "-W", "2", STACK4], capture_output=True).returncode == 0


def echo_works():
    try:
        with socket.create_connection((STACK4, 7), timeout=3) as s:
            s.sendall(b"still here")
            return s.recv(64) == b"still here"
    except OSError:
        return False


def tcp_flags(frame):
    return str(frame[TCP].flags) if TCP in frame else "-"


# The cases. Each sends, and may return a note (what the stack answered) and
# a failure text when the stack answered what it must not.

def malformed_ipv4():
    good = IP(src=HOST4, dst=STACK4) / ICMP() / (b"x" * 32)
    data = bytearray(raw(good))
    frames = []
    for mutate in [lambda d: d.__setitem__(0, 0x55),           # version 5
                   lambda d: d.__setitem__(0, 0x43),           # IHL 3
                   lambda d: d.__setitem__(0, 0x4F),           # IHL 15, past the packet
                   lambda d: d.__setitem__(slice(2, 4), b"\xff\xff"),  # total length past the frame
                   lambda d: d.__setitem__(slice(2, 4), b"\x00\x0a"),  # total length inside the header
                   lambda d: d.__setitem__(slice(10, 12), b"\x12\x34")]:  # checksum
        bad = bytearray(data)
        mutate(bad)
        frames.append(raw(Ether(src=HOST_MAC, dst=STACK_MAC, type=0x0800)) + bytes(bad))
    # Options running past the header: IHL 6, an option claiming 40 bytes.
    frames.append(e4(IP(src=HOST4, dst=STACK4, options=b"\x07\x28\x04\x00") / ICMP()))
    frames.append(raw(Ether(src=HOST_MAC, dst=STACK_MAC, type=0x0800)) + b"\x45\x00")  # a truncated header
    frames *= 50
    send(frames)
    answered = replies(match=lambda f: ICMP in f and f[ICMP].type == 0)
    return f"{len(answered)} echo replies to {len(frames)} bad packets", (None if not answered else "a bad packet was answered")


def malformed_tcp_udp():
    frames = []
    syn = IP(src=HOST4, dst=STACK4) / TCP(sport=4000, dport=7, flags="S", seq=1)
    header = bytearray(raw(syn))
    for offset in [0x20, 0xF0]:                       # data offset 2 and 15 (past the segment)
        bad = bytearray(header)
        bad[32] = offset
        frames.append(raw(Ether(src=HOST_MAC, dst=STACK_MAC, type=0x0800)) + bytes(bad))
    frames.append(e4(IP(src=HOST4, dst=STACK4) / TCP(sport=4001, dport=7, flags="S", chksum=0x1234)))
    # Zero-length and huge options.
    frames.append(e4(IP(src=HOST4, dst=STACK4) / TCP(sport=4002, dport=7, flags="S", options=[(2, b"")])))
    frames.append(e4(IP(src=HOST4, dst=STACK4) / TCP(sport=4003, dport=7, flags="S") ))
    zero = bytearray(raw(IP(src=HOST4, dst=STACK4) / TCP(sport=4004, dport=7, flags="S", dataofs=6) / b"\x02\x00\x00\x00"))
    frames.append(raw(Ether(src=HOST_MAC, dst=STACK_MAC, type=0x0800)) + bytes(zero))
    huge = IP(src=HOST4, dst=STACK4) / TCP(sport=4005, dport=7, flags="S", dataofs=6) / b"\x08\xff\x00\x00"
    frames.append(e4(huge))
    frames.append(e4(IP(src=HOST4, dst=STACK4) / UDP(sport=4006, dport=7, len=200) / b"short"))
    frames.append(e4(IP(src=HOST4, dst=STACK4) / UDP(sport=4007, dport=7, chksum=0x4321) / b"checksum"))
    frames.append(e4(IP(src=HOST4, dst=STACK4, proto=1) / b"\x08"))  # ICMP of one byte
    send(frames * 20)
    return f"{len(frames) * 20} bad segments and datagrams", None


def ping_of_death():
    # ICMP echo fragments whose last one ends past 65,535 bytes.
    frames = []
    for offset in range(0, 65440, 1480):
        frames.append(e4(IP(src=HOST4, dst=STACK4, id=777, proto=1, flags="MF", frag=offset // 8)
                         / (b"\x08\x00\x00\x00" + b"x" * 1476 if offset == 0 else b"x" * 1480)))
    frames.append(e4(IP(src=HOST4, dst=STACK4, id=777, proto=1, frag=65440 // 8) / (b"x" * 200)))
    count = send(frames)
    answered = replies(match=lambda f: ICMP in f and f[ICMP].type == 0)
    return f"{count} fragments reaching byte 65,640", ("answered" if answered else None)


def teardrop():
    frames = []
    for ident in range(100):
        # Overlapping IPv4 fragments (the second starts inside the first).
        frames.append(e4(IP(src=HOST4, dst=STACK4, id=1000 + ident, flags="MF", frag=0, proto=17) / (b"a" * 48)))
        frames.append(e4(IP(src=HOST4, dst=STACK4, id=1000 + ident, frag=3, proto=17) / (b"b" * 48)))
        # IPv6 overlap (RFC 5722: the whole datagram is dropped).
        frames.append(e6(IPv6(src=HOST6, dst=STACK6) / IPv6ExtHdrFragment(id=2000 + ident, m=1, offset=0, nh=58)
                         / (b"c" * 48)))
        frames.append(e6(IPv6(src=HOST6, dst=STACK6) / IPv6ExtHdrFragment(id=2000 + ident, m=0, offset=3, nh=58)
                         / (b"d" * 48)))
    send(frames)
    return f"{len(frames)} overlapping fragments, v4 and v6", None


def tiny_fragments():
    # The TCP header split across 8-byte fragments.
    syn = IP(src=HOST4, dst=STACK4, id=4242) / TCP(sport=4010, dport=7, flags="S")
    pieces = fragment(syn, fragsize=8)
    send(e4(p) for p in pieces * 50)
    return f"{len(pieces) * 50} 8-byte fragments", None


def fragment_flood():
    frames = [raw(e4(IP(src=HOST4, dst=STACK4, id=i & 0xFFFF, flags="MF", proto=17) / (b"f" * 1400)))
              for i in range(20000)]
    send(frames)
    return "20,000 first fragments that never complete", None


def extension_chain():
    chain = IPv6(src=HOST6, dst=STACK6)
    for _ in range(150):  # 1,200 bytes of headers: as many as a 1500-byte frame holds
        chain = chain / IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\x00" * 4)])
    send([e6(chain / ICMPv6EchoRequest())] * 50)
    answered = replies(match=lambda f: IPv6 in f and f[IPv6].nh == 58)
    return f"50 packets with 150 extension headers; {len(answered)} ICMPv6 answers", None


def land():
    send([e4(IP(src=STACK4, dst=STACK4) / TCP(sport=7, dport=7, flags="S", seq=5))] * 50)
    send([e6(IPv6(src=STACK6, dst=STACK6) / TCP(sport=7, dport=7, flags="S", seq=5))] * 50)
    answered = replies(match=lambda f: TCP in f)
    return f"100 SYNs from the stack's own addresses; {len(answered)} answers", ("answered" if answered else None)


def impossible_flags():
    notes, failures = [], []
    for name, flags, port, must in [("SYN+FIN", "SF", 7, "none"), ("SYN+RST", "SR", 7, "none"),
                                     ("Xmas", "FPU", 7, "none"), ("null", "", 7, "none"),
                                     ("Xmas closed", "FPU", 9999, "R"), ("null closed", "", 9999, "R"),
                                     ("SYN+FIN closed", "SF", 9999, "R")]:
        drain()
        sport = random.randint(20000, 60000)
        send([e4(IP(src=HOST4, dst=STACK4) / TCP(sport=sport, dport=port, flags=flags, seq=100))])
        got = replies(match=lambda f: TCP in f and f[TCP].dport == sport)
        answer = ",".join(tcp_flags(f) for f in got) or "none"
        notes.append(f"{name}: {answer}")
        if must == "none" and got:
            failures.append(f"{name} answered {answer}")
        if must == "R" and not any("R" in tcp_flags(f) for f in got):
            failures.append(f"{name} not reset")
    return "; ".join(notes), ("; ".join(failures) or None)


def blind_injection():
    """RFC 5961 against a live connection: RST, SYN and data with sequence
    numbers in and out of the window, and an ACK for data never sent."""
    client = socket.create_connection((STACK4, 7), timeout=3)
    client.sendall(b"hello")
    client.recv(64)
    sport = client.getsockname()[1]
    # Learn the stack's sequence numbers from its next segment.
    drain()
    client.sendall(b"x")
    got = replies(match=lambda f: TCP in f and f[TCP].dport == sport and len(f[TCP].payload) > 0)
    client.recv(64)
    if not got:
        return "no segment seen", "could not learn the connection's numbers"
    their_seq = got[0][TCP].seq + len(got[0][TCP].payload)
    our_seq = got[0][TCP].ack
    base = IP(src=HOST4, dst=STACK4)
    attacks = [TCP(sport=sport, dport=7, flags="R", seq=our_seq + 1000),            # in window, not exact
               TCP(sport=sport, dport=7, flags="R", seq=our_seq + 10_000_000),      # out of window
               TCP(sport=sport, dport=7, flags="S", seq=our_seq + 5),               # SYN in the window
               TCP(sport=sport, dport=7, flags="PA", seq=our_seq + 50_000_000, ack=their_seq) / b"evil",
               TCP(sport=sport, dport=7, flags="A", seq=our_seq, ack=their_seq + 1_000_000)]  # ACK for unsent data
    drain()
    send(e4(base / a) for a in attacks)
    challenges = replies(match=lambda f: TCP in f and f[TCP].dport == sport)
    try:
        client.sendall(b"after")
        survived = client.recv(64) == b"after"
    except OSError:
        survived = False
    client.close()
    note = f"{len(challenges)} challenge or duplicate ACKs; connection {'survived' if survived else 'was broken'}"
    return note, (None if survived else "a blind segment broke the connection")


def neighbor_spoofing():
    frames = [Ether(src="02:66:66:66:66:66", dst="ff:ff:ff:ff:ff:ff") /
              ARP(op=2, hwsrc="02:66:66:66:66:66", psrc=STACK4, hwdst="ff:ff:ff:ff:ff:ff", pdst=STACK4),
              Ether(src="02:66:66:66:66:66", dst=STACK_MAC) /
              ARP(op=1, hwsrc="02:66:66:66:66:66", psrc=STACK4, pdst=STACK4),
              Ether(src="02:66:66:66:66:66", dst="33:33:00:00:00:01") /
              IPv6(src="fe80::6666", dst="ff02::1") / ICMPv6ND_NA(tgt=STACK6, R=0, S=0, O=1) /
              ICMPv6NDOptDstLLAddr(lladdr="02:66:66:66:66:66")]
    send(frames * 20)
    return "ARP and NA claiming the stack's own addresses", None


def neighbor_exhaustion():
    frames = []
    for i in range(2, 255):
        if i == 100:
            continue  # the real host's address: claiming it would be spoofing the host, which ARP allows
        frames.append(Ether(src=f"02:77:00:00:00:{i:02x}", dst="ff:ff:ff:ff:ff:ff") /
                      ARP(op=1, hwsrc=f"02:77:00:00:00:{i:02x}", psrc=f"192.168.69.{i}", pdst=STACK4))
    for i in range(5000):
        source = f"fdaa::{i // 256 + 1:x}:{i % 256 + 1:x}"
        mac = f"02:78:00:00:{i // 256:02x}:{i % 256:02x}"
        frames.append(Ether(src=mac, dst="33:33:ff:00:00:01") /
                      IPv6(src=source, dst="ff02::1:ff00:1") / ICMPv6ND_NS(tgt=STACK6) / ICMPv6NDOptSrcLLAddr(lladdr=mac))
    send(frames)
    ndp = [used for name, used, _ in resources() if name == "neighbour entries, NDP"]
    return (f"252 ARP requests and 5,000 solicitations from distinct sources; NDP entries {ndp}",
            None if ndp and ndp[0] > 0 else "no NDP entries reported")


def syn_flood():
    frames = []
    for i in range(30000):
        source = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        frames.append(raw(e4(IP(src=source, dst=STACK4) / TCP(sport=1024 + i % 60000, dport=7, flags="S", seq=i))))
    start = time.time()
    send(frames)
    return f"30,000 SYNs from random sources in {time.time() - start:.1f} s", None


def udp_floods():
    open_port = [raw(e4(IP(src=HOST4, dst=STACK4) / UDP(sport=5000, dport=9) / (b"u" * 512)))] * 20000
    closed = [raw(e4(IP(src=HOST4, dst=STACK4) / UDP(sport=5001, dport=9999) / (b"u" * 512)))] * 20000
    drain()
    send(open_port + closed)
    errors = replies(1.0, match=lambda f: ICMP in f and f[ICMP].type == 3)
    return f"40,000 datagrams to discard and a closed port; {len(errors)} unreachables", (
        "unlimited ICMP errors" if len(errors) > 100 else None)


cases = [malformed_ipv4, malformed_tcp_udp, ping_of_death, teardrop, tiny_fragments, fragment_flood,
         extension_chain, land, impossible_flags, blind_injection, neighbor_spoofing, neighbor_exhaustion,
         syn_flood, udp_floods]

failed = 0
rows = []
print(f"{'case':<22} {'result':<7} {'RSS MiB':>8}  drops that rose; notes")
for case in cases:
    before = counters()
    drain()  # the previous case's ping and echo
    try:
        note, failure = case()
    except Exception as error:  # a case that cannot run is a failure, not a crash of the suite
        note, failure = f"{type(error).__name__}: {error}", "the case raised"
    time.sleep(0.5)
    problems = [failure] if failure else []
    if not alive():
        problems.append("the daemon died")
    memory = resident_mib() if alive() else float("nan")
    if not memory <= options.memory_cap_mib:
        problems.append(f"resident memory {memory:.1f} MiB over {options.memory_cap_mib}")
    over = [f"{name} {used} of {limit}" for name, used, limit in (resources() if alive() else []) if used > limit]
    if over:
        problems.append("over a cap: " + ", ".join(over))
    if alive() and not ping_works():
        problems.append("ping fails")
    if alive() and not echo_works():
        problems.append("TCP echo fails")
    after = counters() if alive() else {}
    rose = sorted(f"{k.removeprefix('drop.')}+{after[k] - before.get(k, 0)}" for k in after
                  if (k.startswith("drop.") or k in ("neighbor.evicted", "tcp.synCookiesSent"))
                  and after[k] > before.get(k, 0))
    result = "FAIL" if problems else "ok"
    failed += bool(problems)
    print(f"{case.__name__:<22} {result:<7} {memory:8.1f}  {', '.join(rose) or '-'}; {note}"
          + (f" -- {'; '.join(problems)}" if problems else ""), flush=True)
    if not alive():
        break
if options.log:
    # Reaching a cap is logged, one line per cap per 10 s: the floods above
    # reach the neighbour and half-open caps.
    with open(options.log, errors="replace") as log:
        reached = [line.split("limit reached: ", 1)[1].split(" (")[0] for line in log if "limit reached: " in line]
    print("limits reported in the log:", ", ".join(f"{name} ×{reached.count(name)}" for name in sorted(set(reached)))
          or "none")
    for expected in ("neighbour entries", "half-open connections of a listener"):
        if expected not in reached:
            print(f"missing: a 'limit reached: {expected}' line in the log")
            failed += 1
print(f"{len(cases) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
