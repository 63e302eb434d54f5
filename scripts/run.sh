#!/usr/bin/env bash
# Runs netstackd on tap0 with the embedded default configuration.
echo "run.sh: netstackd does not exist yet (it arrives with the daemon issue)" >&2
exit 1
