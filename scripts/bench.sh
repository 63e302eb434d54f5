#!/usr/bin/env bash
# Benchmarks that need the daemon and the kernel side by side. They print
# numbers; they are not tests. Everything runs inside namespaces this script
# creates and removes.
#
#   scripts/bench.sh ping     median ping RTT: netstackd over a TAP vs the
#                             Linux kernel over a veth pair, same run
#   scripts/bench.sh tcp      TCP throughput host→stack (into discard) and
#                             stack→host (out of chargen), the same nc/dd
#                             pipelines against the Linux kernel over veth
#                             (socat servers there); MIB=1024 by default
#
# In-memory benchmarks are `swift run -c release netstack-bench wire|core`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench.sh: must run as root" >&2; exit 2; }

what="${1:-ping}"
count="${COUNT:-500}"
swift build -c release --product netstackd >/dev/null
binary="$(swift build -c release --show-bin-path)/netstackd"
tag="bench-$$"
stack_ns="$tag-stack"
veth_a="$tag-a"
veth_b="$tag-b"
daemon=""

cleanup() {
    [ -n "$daemon" ] && kill -INT "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
    for ns in "$stack_ns" "$veth_a" "$veth_b"; do ip netns del "$ns" 2>/dev/null || true; done
}
trap cleanup EXIT

# netstackd on tap0, host side 192.168.69.100.
ip netns add "$stack_ns"
ip netns exec "$stack_ns" ip tuntap add dev tap0 mode tap
ip netns exec "$stack_ns" ip link set tap0 address 02:00:00:00:00:64 up
ip netns exec "$stack_ns" ip addr add 192.168.69.100/24 dev tap0
ip netns exec "$stack_ns" ip -6 addr add fdaa::100/64 dev tap0 nodad
ip netns exec "$stack_ns" "$binary" --log-level warning > "/tmp/$tag.out" 2>&1 &
daemon=$!
for _ in $(seq 100); do grep -q "ready" "/tmp/$tag.out" 2>/dev/null && break; sleep 0.1; done

# The Linux kernel as the peer: two namespaces joined by a veth pair.
ip netns add "$veth_a"
ip netns add "$veth_b"
ip link add "$tag-x" netns "$veth_a" type veth peer name "$tag-y" netns "$veth_b"
ip netns exec "$veth_a" ip link set "$tag-x" up
ip netns exec "$veth_b" ip link set "$tag-y" up
ip netns exec "$veth_a" ip addr add 10.99.0.1/24 dev "$tag-x"
ip netns exec "$veth_b" ip addr add 10.99.0.2/24 dev "$tag-y"

median() {
    grep -o 'time=[0-9.]*' | cut -d= -f2 | sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print "n/a"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

case "$what" in
ping)
    ip netns exec "$stack_ns" ping -c 5 -i 0.01 192.168.69.1 >/dev/null   # warm the caches
    ip netns exec "$veth_a" ping -c 5 -i 0.01 10.99.0.2 >/dev/null
    stack=$(ip netns exec "$stack_ns" ping -c "$count" -i 0.002 192.168.69.1 | median)
    linux=$(ip netns exec "$veth_a" ping -c "$count" -i 0.002 10.99.0.2 | median)
    stack6=$(ip netns exec "$stack_ns" ping -6 -c "$count" -i 0.002 fdaa::1 | median)
    echo "median ping RTT over $count pings (ms):"
    echo "  netstackd over TAP, IPv4   $stack"
    echo "  netstackd over TAP, IPv6   $stack6"
    echo "  Linux over veth, IPv4      $linux"
    ;;
tcp)
    mib="${MIB:-1024}"
    # Linux's side of the comparison: a discard and a chargen-like server.
    # `ip netns exec` execs the server, so these are the servers' own pids.
    ip netns exec "$veth_b" socat -u TCP-LISTEN:9,reuseaddr,fork OPEN:/dev/null >/dev/null 2>&1 &
    discard_pid=$!
    ip netns exec "$veth_b" socat -u OPEN:/dev/zero TCP-LISTEN:19,reuseaddr,fork >/dev/null 2>&1 &
    source_pid=$!
    sleep 0.5
    # Seconds a pipeline takes, with 3 decimals.
    timed() {
        local start end
        start=$(date +%s.%N)
        "$@" >/dev/null 2>&1
        end=$(date +%s.%N)
        echo "$start $end" | awk '{ printf "%.3f", $2 - $1 }'
    }
    gbps() { echo "$mib $1" | awk '{ printf "%.2f", $1 * 8 * 1048576 / $2 / 1e9 }'; }
    into() { timed ip netns exec "$1" sh -c "head -c ${mib}M /dev/zero | nc -N $2 9"; }
    out_of() { timed ip netns exec "$1" sh -c "nc $2 19 </dev/null | head -c ${mib}M >/dev/null"; }
    stack_in=$(into "$stack_ns" 192.168.69.1)
    linux_in=$(into "$veth_a" 10.99.0.2)
    stack_out=$(out_of "$stack_ns" 192.168.69.1)
    linux_out=$(out_of "$veth_a" 10.99.0.2)
    kill "$discard_pid" "$source_pid" 2>/dev/null || true
    wait "$discard_pid" "$source_pid" 2>/dev/null || true
    echo "TCP throughput, $mib MiB each way (Gbit/s; the same nc pipelines on both):"
    printf '  host→stack (discard)   netstackd over TAP %6s   Linux over veth %6s   stack/Linux %s\n' \
        "$(gbps "$stack_in")" "$(gbps "$linux_in")" "$(echo "$linux_in $stack_in" | awk '{ printf "%.2f", $1 / $2 }')"
    printf '  stack→host (chargen)   netstackd over TAP %6s   Linux over veth %6s   stack/Linux %s\n' \
        "$(gbps "$stack_out")" "$(gbps "$linux_out")" "$(echo "$linux_out $stack_out" | awk '{ printf "%.2f", $1 / $2 }')"
    ;;
*)
    echo "bench.sh: unknown benchmark $what" >&2
    exit 2
    ;;
esac
