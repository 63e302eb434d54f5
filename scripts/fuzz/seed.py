#!/usr/bin/env python3
"""Seeds the fuzzers' corpora: each fixture capture's host-side frames as
an input of fuzz-stack (plain Ethernet and behind virtio-net headers), the
captures' distinct frames one per input of fuzz-wire, and a few control
messages for fuzz-control, and the configuration file with variations of
it for fuzz-config. Usage: seed.py FIXTURES OUT CONFIG"""
import os
import struct
import sys

STACK_MAC = bytes.fromhex("020000000001")


def frames(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    order = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    nanoseconds = magic in (0xA1B23C4D, 0x4D3CB2A1)
    at, last = 24, None
    while at + 16 <= len(data):
        seconds, fraction, captured, _ = struct.unpack(order + "IIII", data[at:at + 16])
        at += 16
        frame = data[at:at + captured]
        at += captured
        when = seconds + fraction / (1e9 if nanoseconds else 1e6)
        gap = 0 if last is None else when - last
        last = when
        yield gap, frame


def record(op, payload):
    return bytes([op]) + struct.pack(">H", len(payload)) + payload


def stack_input(path, virtio):
    out = bytearray([1 if virtio else 0])
    for gap, frame in frames(path):
        if frame[6:12] == STACK_MAC:
            continue  # the stack's own frames: it answers them itself
        if gap > 0.01:
            out += record(2, bytes([min(255, max(1, int(gap / 0.05)))]))
        header = bytes([2]) + bytes(11) if virtio else b""  # DATA_VALID, no GSO
        out += record(0, header + frame)
        out += record(3, b"\x00")
        if len(out) > 60000:
            break
    return bytes(out)


def main():
    fixtures, out = sys.argv[1], sys.argv[2]
    stack, control, wire, config = (os.path.join(out, name) for name in ("stack", "control", "wire", "config"))
    for directory in (stack, control, wire, config):
        os.makedirs(directory, exist_ok=True)
    for name in sorted(os.listdir(fixtures)):
        if not name.endswith(".pcap"):
            continue
        for virtio in (False, True):
            with open(os.path.join(stack, f"{name}{'-virtio' if virtio else ''}"), "wb") as f:
                f.write(stack_input(os.path.join(fixtures, name), virtio))
        # The first frames of each capture (handshakes, fragments, errors).
        for index, (_, frame) in enumerate(frames(os.path.join(fixtures, name))):
            if index >= 40:
                break
            with open(os.path.join(wire, f"{name}-{index}"), "wb") as f:
                f.write(frame)
    messages = {
        "hello": b"\x01\x00\x01", "query": b"\x02\x04", "open": b"\x03\x06\x01", "join": b"\x04" + bytes(8),
        "listen": b"\x11\x00\x00\x10\x00", "accept": b"\x12", "accept-stream": b"\x1c", "stream": b"\x1b",
        "receive": b"\x15\x00\x01\x00\x00", "shutdown": b"\x16\x02", "option": b"\x1a\x01" + bytes(7) + b"\x01",
        "failure": b"\xff\x00\x08\x00\x00\x00\x6f" + b"\x00\x00\x00\x07refused",
    }
    for name, body in messages.items():
        with open(os.path.join(control, name), "wb") as f:
            f.write(body)
    text = open(sys.argv[3], "rb").read()
    variations = {
        "standard": text,
        "capture": b'[daemon]\npcap = "/tmp/x"\npcap-rotate = "10M"\npcap-files = 3\npcap-format = "pcapng"\n',
        "fault": b'[daemon]\nfault = "drop=5%,corrupt=0.1%,duplicate=1%,reorder=10%,delay=2ms,rate=100mbit,seed=1"\n',
        "limits": b"[limits]\nreassembly-memory = 65536\ntcp-connections = 10\n",
        "services": b'[services.echo]\nport = 7\ntransports = ["tcp", "udp"]\n',
        "fault-value": b"drop=5%,delay=2ms",
    }
    for name, body in variations.items():
        with open(os.path.join(config, name), "wb") as f:
            f.write(body)


main()
