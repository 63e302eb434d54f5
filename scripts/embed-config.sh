#!/usr/bin/env bash
# Regenerates Sources/NetstackDaemon/Configuration/EmbeddedConfiguration.swift
# from config/netstackd.toml (a test fails when they differ).
set -euo pipefail
cd "$(dirname "$0")/.."
if grep -q '"""\|\\' config/netstackd.toml; then
    echo "embed-config.sh: the file may not contain \"\"\" or backslashes" >&2
    exit 2
fi
{
    echo '/// `config/netstackd.toml`, built into the binary: the configuration used'
    echo '/// when no `--config` is given. A test checks that it equals the file.'
    echo 'public let embeddedConfiguration = """'
    cat config/netstackd.toml
    echo '"""'
} > Sources/NetstackDaemon/Configuration/EmbeddedConfiguration.swift
