#!/usr/bin/env python3
"""Mixed traffic for the soak (scripts/soak.sh), run in the host namespace:
TCP echo connections with random lifetimes and sizes, some ended by a
reset (SO_LINGER 0) or abandoned half-way, UDP echo exchanges, until the
deadline. Prints what it did and how many exchanges failed."""
import random, socket, struct, sys, threading, time

STACK4, STACK6 = "192.168.69.1", "fdaa::1"
deadline = time.time() + float(sys.argv[1])
random.seed(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
stats = {"tcp": 0, "tcpFailed": 0, "resets": 0, "abandoned": 0, "udp": 0, "udpLost": 0}
lock = threading.Lock()


def count(name):
    with lock:
        stats[name] += 1


def tcp_worker(seed):
    rng = random.Random(seed)
    while time.time() < deadline:
        family, host = (socket.AF_INET6, STACK6) if rng.random() < 0.3 else (socket.AF_INET, STACK4)
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect((host, 7))
            for _ in range(rng.randint(1, 20)):
                data = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 4096)))
                s.sendall(data)
                got = b""
                while len(got) < len(data):
                    piece = s.recv(65536)
                    if not piece:
                        raise OSError("closed early")
                    got += piece
                if got != data:
                    raise OSError("echo differs")
                time.sleep(rng.random() * 0.05)
            ending = rng.random()
            if ending < 0.15:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                count("resets")
            elif ending < 0.25:
                s.sendall(b"x" * rng.randint(1, 65536))  # abandoned with data in flight
                count("abandoned")
            s.close()
            count("tcp")
        except OSError:
            count("tcpFailed")
            time.sleep(0.1)


def udp_worker(seed):
    rng = random.Random(seed)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1)
    while time.time() < deadline:
        data = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 1400)))
        s.sendto(data, (STACK4, 7))
        try:
            if s.recvfrom(2048)[0] == data:
                count("udp")
            else:
                count("udpLost")
        except socket.timeout:
            count("udpLost")
        time.sleep(rng.random() * 0.02)


threads = [threading.Thread(target=tcp_worker, args=(i,)) for i in range(8)]
threads += [threading.Thread(target=udp_worker, args=(100 + i,)) for i in range(2)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print("traffic: " + ", ".join(f"{k} {v}" for k, v in stats.items()))
