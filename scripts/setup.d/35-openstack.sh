#!/bin/sh
# OpenStack area: Graphviz draws the incident graph (`autoremedy collect` writes
# graph.dot always and graph.svg/png when `dot` exists; the tests check both).
# iputils-ping is the ICMP probe of the compute-node check (the tests use a fake
# on the boundary's PATH, but a real node needs the real one). The cloud itself
# is a loopback double started by the tests (tests/openstack/fakecloud.py);
# openstacksdk comes with the bundle's [test] extra.
set -eu
. "$(dirname "$0")/../setup-lib.sh"
need_pkgs graphviz iputils-ping
dot -V >/dev/null 2>&1 || { echo "graphviz installed but 'dot' does not run" >&2; exit 1; }
