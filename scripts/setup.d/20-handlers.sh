#!/bin/sh
# What the handler tests need beyond the base tools: openssl makes the
# self-signed certificate of the TLS tests (StackStorm double over HTTPS).
# Nothing is started here: the StackStorm double runs inside the tests, on
# loopback, on an ephemeral port.
set -eu
. "$(dirname "$0")/../setup-lib.sh"
need_pkgs openssl
