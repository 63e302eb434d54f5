#!/usr/bin/env bash
# (Debian's python3: python3-scapy is installed for it.)
# The hostile-traffic suite (issue 14): scripts/hostile/hostile.py, with
# scapy, sends malformed and attack traffic to netstackd on a TAP inside a
# namespace this script creates and removes, and checks after each case
# that the daemon lives, stays within its memory cap, answers a ping and a
# TCP echo, and counted what it dropped. Prints a table; exit status 1 if a
# case failed.
#
#   scripts/hostile.sh                 with the release build (built first)
#   NETSTACKD=PATH scripts/hostile.sh  with that netstackd (netstackctl beside it)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/tap-namespace.sh
[ "$(id -u)" -eq 0 ] || { echo "hostile.sh: must run as root" >&2; exit 2; }
/usr/bin/python3 -c "import scapy" 2>/dev/null || { echo "hostile.sh: needs python3-scapy (apt-get install python3-scapy)" >&2; exit 2; }
if [ -z "${NETSTACKD:-}" ]; then
    for product in netstackd netstackctl; do swift build -c release --product "$product" >/dev/null; done
    NETSTACKD="$(swift build -c release --show-bin-path)/netstackd"
fi
netstackctl="$(dirname "$NETSTACKD")/netstackctl"
namespace="hostile-$$"
control="/tmp/$namespace.sock"
log="/tmp/$namespace.log"
daemon=""
cleanup() {
    if [ -n "$daemon" ]; then kill -INT "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; fi
    ip netns del "$namespace" 2>/dev/null || true
    rm -f "$control" "$log"
}
trap cleanup EXIT
trap 'exit 1' INT TERM PIPE
tap_namespace "$namespace"
# No offloads: every crafted frame reaches the stack as it was written.
ip netns exec "$namespace" ethtool -K tap0 gro off gso off tso off tx off rx off >/dev/null 2>&1 || true
start_netstackd "$namespace" "$log" "$NETSTACKD" --no-offloads --control-socket "$control" --log-level warning
status=0
ip netns exec "$namespace" timeout -k 5 600 /usr/bin/python3 scripts/hostile/hostile.py --pid "$daemon" --control "$control" \
    --netstackctl "$netstackctl" --log "$log" || status=$?
kill -0 "$daemon" 2>/dev/null || { echo "hostile.sh: netstackd is gone:" >&2; tail -20 "$log" >&2; status=1; }
exit $status
