#!/usr/bin/env bash
# Runs netstackd on tap0 with the embedded default configuration, in the
# foreground (Ctrl-C stops it and removes what this script made).
#
#   scripts/run.sh                  tap0 in this network namespace
#   scripts/run.sh --netns NAME     tap0 inside a new network namespace NAME,
#                                   removed on exit (the way to try it safely)
#   scripts/run.sh ... -- FLAGS     extra flags for netstackd (--pcap x.pcap, ...)
#
# It installs what is missing (Debian packages), builds netstackd in release
# mode, creates tap0, gives the host side 192.168.69.100/24 and fdaa::100/64,
# and runs netstackd (192.168.69.1, fdaa::1). Then, from the same namespace:
#   ping 192.168.69.1        ping -6 fdaa::1
# Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

netns=""
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --netns) netns="${2:?--netns needs a name}"; shift 2 ;;
        --) shift; extra+=("$@"); break ;;
        *) echo "run.sh: unknown argument $1 (netstackd flags go after --)" >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" -ne 0 ]; then
    echo "run.sh: must run as root (TAP devices and namespaces need it)" >&2
    exit 2
fi

missing=()
for package in libpcap-dev pkg-config iproute2; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

swift build -c release --product netstackd
binary="$(swift build -c release --show-bin-path)/netstackd"

in_ns() {
    if [ -n "$netns" ]; then ip netns exec "$netns" "$@"; else "$@"; fi
}

cleanup() {
    if [ -n "$netns" ]; then
        ip netns del "$netns" 2>/dev/null || true
    else
        ip link del tap0 2>/dev/null || true
    fi
}
trap cleanup EXIT

if [ -n "$netns" ]; then
    ip netns add "$netns"
    in_ns ip link set lo up
fi
in_ns ip tuntap add dev tap0 mode tap
in_ns ip link set tap0 address 02:00:00:00:00:64
in_ns ip link set tap0 up
in_ns ip addr add 192.168.69.100/24 dev tap0
in_ns ip -6 addr add fdaa::100/64 dev tap0 nodad

echo "run.sh: netstackd on tap0${netns:+ in namespace $netns}; host side 192.168.69.100, fdaa::100"
in_ns "$binary" "${extra[@]}"
