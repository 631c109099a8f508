#!/bin/sh
# OpenStack area.
# - Graphviz draws the incident graph (`autoremedy collect` writes graph.dot always and
#   graph.svg/png when `dot` exists; the tests check both). iputils-ping is the ICMP probe
#   of the compute-node check (the tests put a stand-in on the boundary's PATH, a real
#   node needs the real one).
# - A real Nova for tests/openstack (tests/openstack/realnova.py): nova 34.0.0,
#   openstack-placement 16.0.0 and keystone 30.0.0 from PyPI in a venv of their own,
#   apart from the bundle's, outside the work tree so that a fresh clone reuses it
#   ($AUTOREMEDY_NOVA_VENV, default /opt/autoremedy/nova-venv), plus the MariaDB client
#   and mysqldump the harness uses to create, cache and drop its databases. The shared
#   MariaDB and RabbitMQ come from 20-rabbitmq.sh and 30-mysql.sh.
# - The schema cache (/var/cache/autoremedy/nova-schema, $AUTOREMEDY_NOVA_CACHE): the
#   databases as Nova's and Placement's migrations leave them, dumped once per release so
#   that a test session restores them in seconds instead of migrating for a minute or two
#   inside its bring-up budget (tests/openstack/realnova.py schema-cache; needs the shared
#   MariaDB of 30-mysql.sh).
# Idempotent: the venv is rebuilt only when its marker does not name these versions, the
# cache written only when it lacks this release.
set -eu
. "$(dirname "$0")/../setup-lib.sh"
need_pkgs graphviz iputils-ping mariadb-client python3-venv
dot -V >/dev/null 2>&1 || { echo "graphviz installed but 'dot' does not run" >&2; exit 1; }

venv=${AUTOREMEDY_NOVA_VENV:-/opt/autoremedy/nova-venv}
want="nova==34.0.0 openstack-placement==16.0.0 keystone==30.0.0 PyMySQL==1.1.1"
marker="$venv/.autoremedy-installed"
if ! { [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ] && "$venv/bin/nova-compute" --version >/dev/null 2>&1; }; then
    echo "openstack: building the Nova venv at $venv ($want)"
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check $want
    "$venv/bin/pip" check
    echo "$want" > "$marker"
fi

cache=$(AUTOREMEDY_NOVA_VENV="$venv" "$venv/bin/python" \
    "$(dirname "$0")/../../tests/openstack/realnova.py" schema-cache)
echo "openstack: schema cache $cache"
