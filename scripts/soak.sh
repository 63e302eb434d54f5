#!/usr/bin/env bash
# The soak (issue 14): netstackd on a TAP in a namespace this script makes,
# under mixed traffic for MINUTES (30 by default, at most 240): ping, UDP
# echo, TCP echo connections with random lifetimes, resets and abandoned
# transfers (scripts/soak/traffic.py), and a slow random-source SYN flood
# (hping3, 100 SYNs/s). Resident memory is sampled every SAMPLE seconds (60);
# after the traffic the stack must hold no sockets but its listeners (TIME-WAIT
# allowed to expire). Prints the samples and a verdict, and plots them to
# docs/soak-memory.png (matplotlib from Debian's python3-matplotlib).
#
#   scripts/soak.sh [MINUTES]        SAMPLE=10 scripts/soak.sh 5
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/tap-namespace.sh
[ "$(id -u)" -eq 0 ] || { echo "soak.sh: must run as root" >&2; exit 2; }
minutes="${1:-30}"
sample="${SAMPLE:-60}"
[[ "$minutes" =~ ^[0-9]+$ ]] && [ "$minutes" -ge 1 ] && [ "$minutes" -le 240 ] \
    || { echo "soak.sh: MINUTES must be 1...240" >&2; exit 2; }
[[ "$sample" =~ ^[0-9]+$ ]] && [ "$sample" -ge 1 ] || { echo "soak.sh: SAMPLE must be a whole number of seconds" >&2; exit 2; }
for product in netstackd netstackctl; do swift build -c release --product "$product" >/dev/null; done
bin="$(swift build -c release --show-bin-path)"
namespace="soak-$$"
control="/tmp/$namespace.sock"
log="/tmp/$namespace.log"
samples="/tmp/$namespace.samples"
pids=()
daemon=""
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [ -n "$daemon" ]; then kill -INT "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; fi
    ip netns del "$namespace" 2>/dev/null || true
    rm -f "$control" "$log" "$samples"
}
trap cleanup EXIT
trap 'exit 1' INT TERM PIPE
tap_namespace "$namespace"
ip netns exec "$namespace" sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1
start_netstackd "$namespace" "$log" "$bin/netstackd" --control-socket "$control" --log-level warning
rss() { awk '/VmRSS/ { print $2 }' "/proc/$daemon/status"; }
seconds=$((minutes * 60))
start=$(date +%s)
ip netns exec "$namespace" timeout -k 5 $((seconds + 30)) /usr/bin/python3 scripts/soak/traffic.py "$seconds" "${SEED:-1}" > "/tmp/$namespace.traffic" 2>&1 &
pids+=($!)
ip netns exec "$namespace" timeout -k 1 "$seconds" ping -q -i 0.05 192.168.69.1 > /dev/null 2>&1 &
pids+=($!)
ip netns exec "$namespace" timeout -k 1 "$seconds" hping3 -q -S -p 7 -i u10000 --rand-source 192.168.69.1 > /dev/null 2>&1 &
pids+=($!)
echo "soak: $minutes min, a sample every $sample s (elapsed s, resident KiB)"
: > "$samples"
while true; do
    now=$(($(date +%s) - start))
    kill -0 "$daemon" 2>/dev/null || { echo "soak: netstackd died" >&2; tail -20 "$log" >&2; exit 1; }
    echo "$now $(rss)" | tee -a "$samples"
    [ "$now" -ge "$seconds" ] && break
    sleep "$sample"
done
wait "${pids[0]}" || true
cat "/tmp/$namespace.traffic"; rm -f "/tmp/$namespace.traffic"
# No socket left but the listeners, once TIME-WAIT (60 s) and the SYN
# flood's half-open connections have expired.
leftover=""
for _ in $(seq 120); do
    leftover=$("$bin/netstackctl" sockets --socket "$control" | awk 'NR > 1 && $2 != "listen" && $1 !~ /^udp/')
    [ -z "$leftover" ] && break
    sleep 1
done
verdict=0
if [ -n "$leftover" ]; then
    echo "soak: sockets left after the traffic:"; echo "$leftover" | head -20; verdict=1
fi
# Flat after warm-up: the last third's peak within 10% (and 4 MiB) of the
# peak of the first third after the first sample.
/usr/bin/python3 - "$samples" <<'PY' || verdict=1
import sys
points = [tuple(map(int, l.split())) for l in open(sys.argv[1]) if l.strip()]
values = [kib for _, kib in points[1:]] or [points[0][1]]
third = max(1, len(values) // 3)
early, late = max(values[:third]), max(values[-third:])
flat = late <= max(early * 1.10, early + 4096)
print(f"soak: resident memory peak {early / 1024:.1f} MiB early, {late / 1024:.1f} MiB late: {'flat' if flat else 'GROWING'}")
sys.exit(0 if flat else 1)
PY
/usr/bin/python3 scripts/soak/plot.py "$samples" docs/soak-memory.png \
    "netstackd under mixed traffic and a slow SYN flood, $minutes min" && echo "soak: plot in docs/soak-memory.png"
"$bin/netstackctl" stats --socket "$control" | grep -E "tcp\.(passiveOpens|resetsReceived|timeouts)|synCookies|drop\." | head -20 || true
exit $verdict
