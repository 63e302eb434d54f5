#!/usr/bin/env bash
# Runs every test of swift-netstack: unit, fixture replay, simulation and the
# integration tests that start netstackd in network namespaces they create.
#
# On a fresh Debian machine with only the Swift toolchain, it first installs
# what the tests use (with apt-get, as root). Extra arguments go to `swift test`
# (for example `--filter NetstackWireTests`).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
    libpcap-dev pkg-config          # CPcap
    iproute2 iputils-ping           # namespaces, TAP addresses, ping
    netcat-openbsd socat curl       # host-side peers in integration tests
    tcpdump                         # reading --pcap output
    nftables hping3 iperf3          # loss, SYN floods, throughput
    python3 nginx apache2-utils     # programs run on the stack with netstack-run
    openssh-server openssh-client
    prometheus                      # promtool, which checks the metrics endpoint
    python3-scapy ethtool           # the hostile-traffic suite (scripts/hostile.sh)
    bison flex make gcc             # packetdrill (scripts/packetdrill.sh builds it)
)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "test.sh: installing ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "test.sh: need root to install packages (or install them yourself)" >&2
        exit 2
    fi
    apt-get update -qq
    # Packages with daemons (nginx, sshd) are installed without starting
    # them: the tests start their own, inside namespaces.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    rm -f "$policy"
    trap - EXIT
fi

# Build everything first, then run. The tests are debug builds; the programs
# the integration tests start (netstackd, netstackctl, netstack-run and its
# preload library) are the release builds the README's run command runs, so
# that what they measure under load (a SYN flood, iperf3) is the product's
# speed. NETSTACK_BIN_DIR tells the tests where those are; without it (a
# plain `swift test`) they take the debug ones next to the test bundle.
swift build --build-tests
swift build -c release
NETSTACK_BIN_DIR="$(swift build -c release --show-bin-path)"
export NETSTACK_BIN_DIR
exec swift test --skip-build "$@"
