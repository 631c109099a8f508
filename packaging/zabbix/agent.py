"""Generate the Zabbix agent's UserParameter drop-in (zabbix_agentd.d/autoremedy.conf)
from the classes' manifests (the "userparameters" of their "zabbix" entry,
checks/<class>.py) and the batch's own parameters below.

    $ python3 packaging/zabbix/agent.py          # rewrites zabbix_agentd.d/autoremedy.conf

A test keeps the committed file equal to this output.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.append(os.path.join(os.path.dirname(HERE), "tools"))
import class_manifests  # noqa: E402  (packaging/tools/class_manifests.py)

OUTPUT = os.path.join(HERE, "zabbix_agentd.d", "autoremedy.conf")

HEADER = """\
# autoremedy: Zabbix agent user parameters for the node checks.
# Installed as /etc/zabbix/zabbix_agentd.conf.d/autoremedy.conf (Debian) or
# /etc/zabbix/zabbix_agentd.d/autoremedy.conf (Zabbix's own packages); used by
# the autoremedy templates (packaging/zabbix/autoremedy_template.yaml: "autoremedy node",
# and "autoremedy RabbitMQ" / "autoremedy OpenStack consistency" on nodes with that role).
#
# Every value is printed on stdout only (Zabbix merges stderr into the value and
# ignores the exit code: the state is the JSON's "status", 0-3). Parameters are
# quoted: Zabbix pastes $1..$9 into an `sh -c` command line textually; keep
# UnsafeUserParameters=0 so they cannot carry shell metacharacters.
# --timeout stays under the agent's Timeout (3 s by default): a check that cannot
# finish reports UNKNOWN with the reason instead of turning the item unsupported.
# The checks read /etc/autoremedy/autoremedy.yaml (checks.process.watch, checks.batch).
"""

# `check batch` is not a failure class: its parameters are this file's own.
BATCH = ("Every node check in one process: the JSON master item and its discovery.", [
    ("autoremedy.batch", "/usr/bin/autoremedy check batch --format zabbix --timeout 2.8"),
    ("autoremedy.batch.discovery", "/usr/bin/autoremedy check batch --discover"),
])


def blocks(manifests):
    """(comment or None, [(key, command)]) per class with agent parameters, in
    generation order; a block without a comment follows the one before it."""
    yield BATCH
    for m in manifests:
        zabbix = m.get("zabbix") or {}
        if zabbix.get("userparameters"):
            yield zabbix.get("agent_comment"), zabbix["userparameters"]


def render(manifests=None):
    found = class_manifests.manifests() if manifests is None else manifests
    out = [HEADER]
    for comment, params in blocks(class_manifests.by_order(found, "zabbix")):
        if comment:
            out.append("\n" + "".join(f"# {line}\n" for line in comment.split("\n")))
        out.extend(f"UserParameter={key},{command}\n" for key, command in params)
    return "".join(out)


def main():
    with open(OUTPUT, "w") as handle:
        handle.write(render())


if __name__ == "__main__":
    sys.exit(main())
