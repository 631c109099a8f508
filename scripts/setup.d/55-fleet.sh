#!/bin/sh
# Coordination backends of the fleet tests (tests/fleet) and bench/bench_fleet.py:
# the tests start a Redis, a MariaDB and an etcd of their own (own ports, own data
# directories: tests/fleet/services.py). mariadbd comes with 30-mysql.sh; redis-server
# and redis-cli are on the machine already (need_pkgs only checks them); this part
# adds the etcd server binary (Debian's etcd-server: /usr/bin/etcd).
# No test needs etcdctl (autoremedy/clients/coordination_etcd.py talks to etcd's JSON
# gateway itself), so etcd-client is not installed. The Python side (tooz, redis,
# for the Redis backend) is in setup.py's "test" extra.
#
# The package ships an etcd service listening on 127.0.0.1:2379. The tests do not
# use it, and a system etcd left running is a stray daemon on a well-known port, so:
# - at install, need_pkgs' policy-rc.d keeps the postinst from starting it;
# - if this run installed the package (and only then: an etcd the machine had
#   before is someone else's), its service is stopped in case it started anyway
#   and disabled, so that it does not come up at the next boot either.
# Idempotent: a second run only checks.
set -eu
. "$(dirname "$0")/../setup-lib.sh"

installed_before=""
dpkg-query -W -f='${Status}' etcd-server 2>/dev/null | grep -q "install ok installed" && installed_before=1

need_pkgs etcd-server redis-server redis-tools

command -v etcd >/dev/null 2>&1 || { echo "etcd-server installed no etcd binary on PATH" >&2; exit 1; }

if [ -z "$installed_before" ]; then
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        systemctl stop etcd.service 2>/dev/null || true
    elif [ -x /etc/init.d/etcd ]; then
        # No systemd (a container): the sysv script itself (invoke-rc.d would ask
        # policy-rc.d, which may forbid the stop as well).
        /etc/init.d/etcd stop >/dev/null 2>&1 || true
    fi
    # Not at boot either: update-rc.d disable turns the sysv links into K links and,
    # through init-system-helpers, removes the systemd unit's links (etcd.service,
    # its alias etcd2.service); deb-systemd-helper again in case it did not.
    update-rc.d etcd disable >/dev/null 2>&1 || true
    command -v deb-systemd-helper >/dev/null 2>&1 && deb-systemd-helper disable etcd.service >/dev/null 2>&1 || true
    echo "etcd: the package's own etcd service stopped and disabled (the tests run their own)"
fi
if pgrep -u etcd -x etcd >/dev/null 2>&1; then
    echo "etcd: note: a system etcd (user etcd) is running; not started here, left alone"
fi

echo "etcd: $(etcd --version 2>/dev/null | head -1)"
# dash has no /dev/tcp: ask bash.
if bash -c 'exec 3<>/dev/tcp/127.0.0.1/2379' 2>/dev/null; then
    echo "etcd: note: something listens on 2379 (not started here); the fleet tests use ports of their own"
fi
