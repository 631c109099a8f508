#!/bin/sh
# RabbitMQ for the rabbitmq tests (tests/rabbitmq) and bench/bench_rabbitmq.py.
#
# - the broker itself (Debian's rabbitmq-server), started if nothing answers on 5672;
# - on the SHARED node (rabbit@..., 5672): the management plugin (HTTP API on 15672,
#   what the checks use) and the shovel plugins (what the "move" remediation uses).
#   Enabling plugins is additive and does not restart the node; nothing else of the
#   shared node is changed. CI machines start with every plugin disabled.
# - the throwaway nodes of the mnesia tests are started by the tests themselves
#   (tests/rabbitmq/nodes.py), on their own ports, names and directories.
# Idempotent: a second run only checks.
set -eu
. "$(dirname "$0")/../setup-lib.sh"

need_pkgs rabbitmq-server curl

# dash has no /dev/tcp: ask bash when it is there, else the CLI.
port_open() { bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

if ! port_open 5672; then
    echo "rabbitmq: nothing on 5672, starting the shared node"
    rabbitmq-server -detached
    i=0
    until rabbitmq-diagnostics -q check_running >/dev/null 2>&1; do
        i=$((i + 1)); [ $i -gt 120 ] && { echo "rabbitmq: node did not start in 60s" >&2; exit 1; }
        sleep 0.5
    done
fi

wanted="rabbitmq_management rabbitmq_shovel rabbitmq_shovel_management"
if rabbitmq-plugins -q is_enabled $wanted >/dev/null 2>&1; then
    echo "rabbitmq: plugins already enabled: $wanted"
else
    echo "rabbitmq: enabling $wanted on the shared node"
    rabbitmq-plugins -q enable $wanted
fi

# The API answers as soon as the plugin is up (measured: at once after enable).
i=0
until curl -fsS -o /dev/null -u guest:guest http://127.0.0.1:15672/api/overview; do
    i=$((i + 1)); [ $i -gt 120 ] && { echo "rabbitmq: management API not answering on 15672" >&2; exit 1; }
    sleep 0.5
done
echo "rabbitmq: management API answering on 127.0.0.1:15672"
