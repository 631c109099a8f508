#!/bin/sh
# Install and start everything the tests need, idempotently, on a fresh Debian/Ubuntu
# machine. Each part lives in scripts/setup.d/NN-<part>.sh so that it can be read
# (and re-run) on its own. Never stops or reconfigures a shared service in a way
# that breaks it for others: destructive tests start their own throwaway instances.
set -eu
here=$(dirname "$0")
for part in "$here"/setup.d/*.sh; do
    [ -e "$part" ] || continue
    echo "== setup: $(basename "$part")"
    sh "$part"
done
