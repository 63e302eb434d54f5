#!/usr/bin/env bash
# Runs each libFuzzer harness (Sources/Fuzz) for SECONDS (60 by default),
# with the address sanitizer, from corpora seeded with the fixture captures.
# Prints each harness's executions and coverage; a crash leaves its input in
# .build-fuzz/crashes/ and ends the script with status 1.
#
#   scripts/fuzz.sh [SECONDS]
#
# Corpora grow in .build-fuzz/corpus/<harness>; replay one crash with
# `.build-fuzz/debug/fuzz-stack .build-fuzz/crashes/<file>`.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
case "$seconds" in ''|*[!0-9]*) echo "fuzz.sh: SECONDS must be a whole number, not $seconds" >&2; exit 2 ;; esac
scratch=.build-fuzz
mkdir -p "$scratch"
harnesses=(fuzz-stack fuzz-wire fuzz-control fuzz-config)
for harness in "${harnesses[@]}"; do
    # Without --disable-dead-strip the linker drops the coverage counters, and
    # modules built with an experimental feature (Lifetimes: the wire views and
    # the core) lose `-sanitize=fuzzer` on the way to the frontend, so the
    # coverage instrumentation is asked for by name as well.
    NETSTACK_FUZZ=1 swift build --scratch-path "$scratch" --sanitize fuzzer --sanitize address --disable-dead-strip \
        -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp --product "$harness" \
        > "$scratch/build.log" 2>&1 || { cat "$scratch/build.log" >&2; exit 1; }
done
python3 scripts/fuzz/seed.py Tests/Fixtures/pcap "$scratch/seeds" config/netstackd.toml
mkdir -p "$scratch/crashes"
status=0
for harness in "${harnesses[@]}"; do
    name="${harness#fuzz-}"
    corpus="$scratch/corpus/$name"
    mkdir -p "$corpus"
    log="$scratch/$harness.log"
    # Swift's own backtracer would take the trap and libFuzzer would write no crash file.
    if SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=0 "$scratch/debug/$harness" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1 \
        -artifact_prefix="$scratch/crashes/$harness-" "$corpus" "$scratch/seeds/$name" > "$log" 2>&1; then
        result="no crash"
    else
        result="CRASH (see $log and $scratch/crashes/)"
        status=1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    coverage=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo "?")
    features=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo "?")
    units=$(find "$corpus" -type f | wc -l)
    printf '%-13s %ss: %s executions, coverage %s edges, %s features, corpus %s inputs: %s\n' \
        "$harness" "$seconds" "$runs" "$coverage" "$features" "$units" "$result"
done
exit "$status"
