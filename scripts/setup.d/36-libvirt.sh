#!/bin/sh
# OpenStack consistency: libvirt's own `virsh` with its built-in test driver
# (`virsh -c test:///<node.xml>`, no daemon) is the hypervisor view of each real-Nova
# compute in tests/openstack/test_real_consistency.py. Debian's libvirt-clients.
# Idempotent.
set -eu
. "$(dirname "$0")/../setup-lib.sh"
need_pkgs libvirt-clients
virsh -c test:///default list --all >/dev/null \
    || { echo "libvirt-clients installed but 'virsh -c test:///default' does not run" >&2; exit 1; }
