#!/usr/bin/env bash
# Runs packetdrill scripts against the stack: packetdrill's --so_filename mode
# loads the netstack-packetdrill library (Sources/NetstackPacketdrill), which
# runs the whole stack in packetdrill's process on a virtual clock.
#
#   scripts/packetdrill.sh [FILE|DIR ...]     (default: the shared FreeBSD suite)
#
# Prints `PASS path` or `FAIL path: first difference` per script, the totals
# per group (the directory under the suite, or the one given), and a last
# line `N passed, N failed`. Exit status 0 when every script passed.
#
# FreeBSD-only lines are treated alike in every script, here and nowhere
# else (docs/conformance.md has the reasons):
#  - `sysctl ...` and `sockstat ...` in backquotes run stand-ins
#    (scripts/packetdrill/): sysctl accepts only settings the stack has,
#    sockstat lists the stack's sockets. Other FreeBSD tools (tcpdrop,
#    kldstat, setkey) are not there, and a script that needs one fails there.
#  - Choices the RFCs leave open, stated once as substitutions applied to
#    every script's expected outbound lines: the stack's SYN option order
#    (mss, sackOK, TS, nop, wscale, as Linux) for FreeBSD's (mss, nop,
#    wscale, sackOK, TS), and without timestamps or window scaling
#    (mss, nop, nop, sackOK) for FreeBSD's (mss, sackOK, eol, eol); its
#    window scale 7 for FreeBSD's default 6.
#    The scripts themselves are never changed; packetdrill reads a copy.
# Each script gets 30 s of real time (its virtual time runs much faster).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
suite=$root/../shared/conformance/tcp-testsuite
[ $# -gt 0 ] || set -- "$suite"

# packetdrill, built once from the vendored tarball.
build=$root/.build/packetdrill
packetdrill=$build/packetdrill/gtests/net/packetdrill/packetdrill
if [ ! -x "$packetdrill" ]; then
    for tool in bison flex make gcc; do
        command -v "$tool" >/dev/null || missing="${missing:-} $tool"
    done
    if [ -n "${missing:-}" ]; then
        if [ "$(id -u)" -ne 0 ]; then echo "packetdrill.sh: install$missing first" >&2; exit 2; fi
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bison flex make gcc >/dev/null
    fi
    rm -rf "$build" && mkdir -p "$build"
    tar xzf "$root/../shared/vendor/packetdrill-2c4001c.tar.gz" -C "$build"
    (cd "$build/packetdrill/gtests/net/packetdrill" && ./configure >/dev/null && make -j"$(nproc)" packetdrill >/dev/null)
fi
# NETSTACK_PACKETDRILL_LIBRARY: a library already built (the test suite
# passes its own, since it cannot run swift build while it runs).
library=${NETSTACK_PACKETDRILL_LIBRARY:-}
if [ -z "$library" ]; then
    swift build --product netstack-packetdrill >/dev/null
    library="$(swift build --show-bin-path)/libnetstack-packetdrill.so"
fi

scripts=()
for target in "$@"; do
    if [ -d "$target" ]; then
        # snippets/ holds fragments the suite's scripts were written from, not tests.
        while IFS= read -r file; do scripts+=("$file"); done < <(find "$target" -name '*.pkt' -not -path '*/snippets/*' | sort)
    else
        scripts+=("$target")
    fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
declare -A group_passed group_failed
passed=0 failed=0
for script in "${scripts[@]}"; do
    path=$(realpath "$script")
    if [[ $path == "$(realpath "$suite")"/* ]]; then
        name=${path#"$(realpath "$suite")/"}
        group=${name%%/*}
    else
        name=${path#"$root/"}
        group=$(basename "$(dirname "$path")")
    fi
    if grep -q -- '--ip_version=ipv6' "$path"; then
        addresses=(--local_ip=fd3d:fa7b:d17d::1 --remote_ip=2001:db8::1)
    else
        addresses=(--local_ip=192.168.0.1 --remote_ip=192.0.2.1)
    fi
    copy=$work/$(basename "$path")
    sed -E '/^[[:space:]]*[+0-9.]+[[:space:]]+>/ {
        s/<mss ([0-9]+),nop,wscale 6,sackOK,TS val ([0-9]+) ecr ([0-9]+)/<mss \1,sackOK,TS val \2 ecr \3,nop,wscale 7/
        s/<mss ([0-9]+),nop,wscale ([0-9]+),sackOK,TS val ([0-9]+) ecr ([0-9]+)/<mss \1,sackOK,TS val \3 ecr \4,nop,wscale \2/
        s/<mss ([0-9]+),sackOK,eol,eol>/<mss \1,nop,nop,sackOK>/
    }' "$path" > "$copy"
    rm -f "$work/sysctl" "$work/sockets"
    set +e
    output=$(cd "$work" && PATH="$root/scripts/packetdrill:$PATH" NETSTACK_PACKETDRILL_SYSCTL="$work/sysctl" \
        NETSTACK_PACKETDRILL_SOCKETS="$work/sockets" timeout -k 2 30 "$packetdrill" --so_filename="$library" \
        "${addresses[@]}" "$(basename "$copy")" 2>&1)
    status=$?
    set -e
    if [ $status -eq 0 ]; then
        echo "PASS $name"
        passed=$((passed + 1)); group_passed[$group]=$(( ${group_passed[$group]:-0} + 1 ))
    else
        reason=$(printf '%s\n' "$output" | grep -E '\.pkt:[0-9]+|netstack-packetdrill:|^sysctl:|^sockstat:' | head -1 || true)
        [ $status -eq 124 ] && reason="timed out after 30 s${reason:+: $reason}"
        [ -n "$reason" ] || reason="exit status $status: $(printf '%s' "$output" | tail -1)"
        echo "FAIL $name: $(printf '%s' "$reason" | tr -s ' \t' ' ' | cut -c1-400)"
        failed=$((failed + 1)); group_failed[$group]=$(( ${group_failed[$group]:-0} + 1 ))
    fi
done
echo
for group in $(printf '%s\n' "${!group_passed[@]}" "${!group_failed[@]}" | sort -u); do
    echo "$group: ${group_passed[$group]:-0} passed, ${group_failed[$group]:-0} failed"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
