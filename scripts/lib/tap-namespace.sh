# Sourced by the scripts that run netstackd on a TAP inside a namespace of
# their own (bench.sh, hostile.sh, soak.sh): the host side of tap0 as the
# daemon's default configuration expects it, and the daemon started there.

# tap_namespace NAME: a new namespace NAME, loopback up, and tap0 with the
# host's MAC 02:00:00:00:00:64, 192.168.69.100/24 and fdaa::100/64.
tap_namespace() {
    ip netns add "$1"
    ip netns exec "$1" ip link set lo up
    ip netns exec "$1" ip tuntap add dev tap0 mode tap
    ip netns exec "$1" ip link set tap0 address 02:00:00:00:00:64 up
    ip netns exec "$1" ip addr add 192.168.69.100/24 dev tap0
    ip netns exec "$1" ip -6 addr add fdaa::100/64 dev tap0 nodad
}

# start_netstackd NAMESPACE LOG COMMAND...: runs COMMAND (netstackd and its
# flags) in NAMESPACE with its output in LOG, and waits up to 10 s for its
# ready line. Sets $daemon to netstackd's own pid (ip execs it, so $! is the
# daemon, not a subshell). Fails with the log when it does not start.
start_netstackd() {
    local namespace=$1 log=$2
    shift 2
    ip netns exec "$namespace" "$@" > "$log" 2>&1 &
    daemon=$!
    for _ in $(seq 200); do grep -q ready "$log" 2>/dev/null && break; sleep 0.05; done
    grep -q ready "$log" 2>/dev/null && return 0
    echo "$(basename "$0"): netstackd did not start:" >&2
    cat "$log" >&2
    return 1
}
