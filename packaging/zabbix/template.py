"""Generate the Zabbix 6.0 template (autoremedy_template.yaml) from the tables below.

    $ python3 packaging/zabbix/template.py > packaging/zabbix/autoremedy_template.yaml

The tables are the one place where the template's items, discovery rules and
triggers are described; the committed YAML is this script's output (a test
keeps them equal). Why generate: Zabbix wants a UUIDv4 per object (stable across
exports, so an import updates in place) and a trigger names its item's key in
full; both are derived here, never typed twice.

Trigger tags: autoremedy_class, autoremedy_target (the remediation's allowlist
key), autoremedy_status (the check's own verdict), and, where the node-side hook
can re-run the check, autoremedy_check_args (the "autoremedy node hook" action
of `autoremedy zabbix-setup --node-hook` runs `handle hook` with them).

How values flow: each check prints one JSON object (``--format zabbix``), stored
by a *master* item; *dependent* items pick ``status`` (0 OK, 1 WARNING,
2 CRITICAL, 3 UNKNOWN, value map "autoremedy status") and a few metrics out of
it with JSONPath, and the triggers compare the status. One check process thus
serves every value of its class.
"""
import sys
import uuid

import yaml

TEMPLATE = "autoremedy"
GROUP = "Templates/OpenStack"
NS = uuid.UUID("5f0c1f8e-2a41-4c8e-9d61-61757c0a7e35")

# Severities per class for CRITICAL; WARNING is always WARNING, UNKNOWN is INFO
# ("the check cannot tell": someone should look, nothing is known to be broken).
# API-scoped classes run on the Zabbix server as external checks.
NODE = {                     # key, class, severity, description
    "autoremedy.rabbitmq.node": ("rabbitmq-node", "DISASTER", "RabbitMQ node on this host: running, partitions, alarms, membership, definitions"),
    "autoremedy.openstack.consistency": ("openstack-consistency", "AVERAGE", "Nova's view of this host against libvirt, stuck tasks, dead agents"),
    "autoremedy.spool": ("spool", "HIGH", "Events waiting in the spool for StackStorm"),
}
EXTERNAL = {
    "autoremedy_check[rabbitmq-queues]": ("rabbitmq-queues", "HIGH", "RabbitMQ queues: depth, consumers, growth (one management API request)"),
    "autoremedy_check[mysql-replication,--server,{$AR.MYSQL.SERVER}]": ("mysql-replication", "HIGH", "MySQL/MariaDB replication threads, errors and lag of the replica {$AR.MYSQL.SERVER} (mysql.servers)"),
    "autoremedy_check[galera,--server,{$AR.GALERA.SERVER},--expected-size,{$AR.GALERA.SIZE}]": ("galera", "DISASTER", "Galera cluster status, local state and size, seen from {$AR.GALERA.SERVER}"),
    "autoremedy_check[compute-node]": ("compute-node", "DISASTER", "nova-compute services down and their hosts unreachable"),
}
# The remediation target of a class's problems (tag autoremedy_target), where the
# host's macros or the class itself name it: the StackStorm rules pass it on.
TARGETS = {"mysql-replication": "{$AR.MYSQL.SERVER}", "galera": "{$AR.GALERA.CLUSTER}", "compute-node": "dead"}


def uid(*parts):
    """A stable UUIDv4-shaped id: Zabbix 6.0's configuration.import refuses a uuid5 hex
    ("UUIDv4 is expected"; measured on 6.0.14), so the version bits are set to 4."""
    return uuid.UUID(int=uuid.uuid5(NS, "/".join(parts)).int, version=4).hex


def status_item(master_key, key, name, cls, tags=()):
    return {
        "uuid": uid("item", key), "name": name, "type": "DEPENDENT", "key": key, "delay": "0",
        "history": "31d", "value_type": "UNSIGNED", "valuemap": {"name": "autoremedy status"},
        "preprocessing": [{"type": "JSONPATH", "parameters": ["$.status"]}],
        "master_item": {"key": master_key},
        "tags": [{"tag": "component", "value": "autoremedy"}, {"tag": "autoremedy_class", "value": cls},
                 *tags],
    }


def summary_item(master_key, key, name):
    return {
        "uuid": uid("item", key), "name": name, "type": "DEPENDENT", "key": key, "delay": "0",
        "history": "7d", "trends": "0", "value_type": "TEXT",
        "preprocessing": [{"type": "JSONPATH", "parameters": ["$.summary"]}],
        "master_item": {"key": master_key},
        "tags": [{"tag": "component", "value": "autoremedy"}],
    }


def status_triggers(key, what, critical, tags=(), prototype=False):
    """CRITICAL / WARNING / UNKNOWN triggers on a status item; the lower ones
    depend on CRITICAL so one failure raises one problem."""
    expr = f"last(/{TEMPLATE}/{key})"
    crit_name = f"{what} is CRITICAL on {{HOST.NAME}}"
    common = {"manual_close": "YES", "opdata": "{ITEM.LASTVALUE}",
              "tags": [{"tag": "autoremedy_status", "value": ""}, *tags]}
    dep = [{"name": crit_name, "expression": f"{expr}=2"}]
    triggers = []
    for value, name, priority in ((2, crit_name, critical),
                                  (1, f"{what} is WARNING on {{HOST.NAME}}", "WARNING"),
                                  (3, f"{what} cannot be checked on {{HOST.NAME}}", "INFO")):
        trig = {"uuid": uid("trigger", key, str(value)), "expression": f"{expr}={value}", "name": name,
                "priority": priority, **common}
        trig["tags"] = [{"tag": "autoremedy_status", "value": str(value)}, *tags]
        if value != 2:
            trig["dependencies"] = dep
        triggers.append(trig)
    return triggers


def master(key, name, kind, delay, description, tags=()):
    item = {"uuid": uid("item", key), "name": name, "type": kind, "key": key, "delay": delay,
            "history": "1d", "trends": "0", "value_type": "TEXT", "description": description,
            "tags": [{"tag": "component", "value": "autoremedy"}, *tags]}
    return item


def nodata_trigger(key, what):
    return {"uuid": uid("trigger", key, "nodata"), "name": f"autoremedy: no {what} results from {{HOST.NAME}} for {{$AR.NODATA}}",
            "expression": f"nodata(/{TEMPLATE}/{key},{{$AR.NODATA}})=1", "priority": "AVERAGE",
            "manual_close": "YES"}


def class_items(key, cls, critical, description, kind, delay):
    tag = [{"tag": "autoremedy_class", "value": cls}]
    if cls in TARGETS:
        tag.append({"tag": "autoremedy_target", "value": TARGETS[cls]})
    m = master(key, f"autoremedy {cls}: result", kind, delay, description, tag)
    status_key = f"autoremedy.status[{cls}]"
    s = status_item(key, status_key, f"autoremedy {cls}: status", cls)
    s["triggers"] = status_triggers(status_key, f"autoremedy {cls}", critical, tag)
    return [m, s, summary_item(key, f"autoremedy.summary[{cls}]", f"autoremedy {cls}: summary")]


def batch_rule():
    """Every node check of checks.batch in one agent call (`check batch`)."""
    proto_status = "autoremedy.batch.status[{#AR.CHECK}]"
    tags = [{"tag": "autoremedy_class", "value": "{#AR.CLASS}"}, {"tag": "autoremedy_check", "value": "{#AR.CHECK}"}]
    status = {
        "uuid": uid("proto", proto_status), "name": "autoremedy {#AR.CHECK} ({#AR.CLASS}): status",
        "type": "DEPENDENT", "key": proto_status, "delay": "0", "history": "31d", "value_type": "UNSIGNED",
        "valuemap": {"name": "autoremedy status"},
        "preprocessing": [{"type": "JSONPATH", "parameters": ['$.data.checks["{#AR.CHECK}"].status']}],
        "master_item": {"key": "autoremedy.batch"},
        "tags": [{"tag": "component", "value": "autoremedy"}, *tags],
        "trigger_prototypes": status_triggers(proto_status, "autoremedy {#AR.CHECK}", "HIGH", tags),
    }
    summary = {
        "uuid": uid("proto", "batch-summary"), "name": "autoremedy {#AR.CHECK} ({#AR.CLASS}): summary",
        "type": "DEPENDENT", "key": "autoremedy.batch.summary[{#AR.CHECK}]", "delay": "0", "history": "7d",
        "trends": "0", "value_type": "TEXT",
        "preprocessing": [{"type": "JSONPATH", "parameters": ['$.data.checks["{#AR.CHECK}"].summary']}],
        "master_item": {"key": "autoremedy.batch"},
        "tags": [{"tag": "component", "value": "autoremedy"}],
    }
    return {"uuid": uid("rule", "batch"), "name": "autoremedy: checks of the batch",
            "key": "autoremedy.batch.discovery", "delay": "{$AR.LLD.INTERVAL}", "lifetime": "7d",
            "description": "One row per check in checks.batch of /etc/autoremedy/autoremedy.yaml.",
            "item_prototypes": [status, summary]}


def node_rule(cls, macro, key, master_uid, what, check_args, metric, rule):
    """A discovery rule for one node check per discovered object: the passive
    master item (the check's JSON), its status with triggers, and one metric
    taken out of the JSON. ``metric`` = (key, name, extra fields); ``rule`` =
    (name, key, description)."""
    tags = [{"tag": "autoremedy_class", "value": cls}, {"tag": "autoremedy_target", "value": macro},
            {"tag": "autoremedy_check_args", "value": check_args}]
    component = [{"tag": "component", "value": "autoremedy"}]
    master_proto = {"uuid": uid("proto", master_uid), "name": f"autoremedy {cls} {macro}: result",
                    "type": "ZABBIX_PASSIVE", "key": key, "delay": "{$AR.INTERVAL}", "history": "1d",
                    "trends": "0", "value_type": "TEXT", "tags": component}
    status_key = f"autoremedy.{cls}.status[{macro}]"
    status = status_item(key, status_key, f"autoremedy {cls} {macro}: status", cls, tags[1:2])
    status["uuid"] = uid("proto", status_key)
    status["trigger_prototypes"] = status_triggers(status_key, f"{what} {macro}", "HIGH", tags)
    metric_key, metric_name, fields = metric
    value = {"uuid": uid("proto", metric_key), "name": metric_name, "type": "DEPENDENT", "key": metric_key,
             "delay": "0", "history": "31d", **fields, "master_item": {"key": key}, "tags": component}
    name, rule_key, description = rule
    return {"uuid": uid("rule", cls), "name": name, "key": rule_key, "delay": "{$AR.LLD.INTERVAL}",
            "lifetime": "7d", "description": description, "item_prototypes": [master_proto, status, value]}


def process_rule():
    key = "autoremedy.process[{#PROC.NAME}]"
    count = {"value_type": "UNSIGNED", "preprocessing": [{"type": "JSONPATH", "parameters": ["$.metrics.count"]}]}
    return node_rule("process", "{#PROC.NAME}", key, key, "Process", "--watch {#PROC.NAME}",
                     ("autoremedy.process.count[{#PROC.NAME}]", "autoremedy process {#PROC.NAME}: count", count),
                     ("autoremedy: watched processes", "autoremedy.process.discovery",
                      "One row per entry of checks.process.watch."))


def disk_rule():
    args = '"{#FSNAME}","{$AR.DISK.PUSED.WARN:\\"{#FSNAME}\\"}","{$AR.DISK.PUSED.CRIT:\\"{#FSNAME}\\"}"'
    pused = {"value_type": "FLOAT", "units": "%",
             "preprocessing": [{"type": "JSONPATH", "parameters": ['$.metrics["{#FSNAME}"]']}]}
    return node_rule("disk", "{#FSNAME}", f"autoremedy.disk[{args}]", "disk-master", "Disk", "-p {#FSNAME}",
                     ("autoremedy.disk.pused[{#FSNAME}]", "autoremedy disk {#FSNAME}: used %", pused),
                     ("autoremedy: mounted filesystems", "autoremedy.disk.discovery",
                      "Real filesystems, with the macros of vfs.fs.discovery ({#FSNAME}, {#FSTYPE})."))


def queue_rule():
    """RabbitMQ queues discovered by the external check; their depth comes out of
    the queue check's master item (one API request for every queue)."""
    depth_key = "autoremedy.rabbitmq.queue.messages[{#VHOST},{#QUEUE}]"
    path = "$.data.queues[?(@.vhost == '{#VHOST}' && @.name == '{#QUEUE}')].messages.first()"
    depth = {"uuid": uid("proto", depth_key), "name": "RabbitMQ queue {#VHOST}/{#QUEUE}: messages",
             "type": "DEPENDENT", "key": depth_key, "delay": "0", "history": "31d", "value_type": "UNSIGNED",
             # A queue the check did not list this time (filtered, or gone): no value
             # rather than an unsupported item.
             "preprocessing": [{"type": "JSONPATH", "parameters": [path], "error_handler": "DISCARD_VALUE"}],
             "master_item": {"key": "autoremedy_check[rabbitmq-queues]"},
             "tags": [{"tag": "component", "value": "autoremedy"},
                      {"tag": "autoremedy_class", "value": "rabbitmq-queues"}]}
    return {"uuid": uid("rule", "queues"), "name": "autoremedy: RabbitMQ queues",
            "type": "EXTERNAL", "key": "autoremedy_check[rabbitmq-queues,--discover]", "delay": "{$AR.LLD.INTERVAL}",
            "lifetime": "1d", "description": "Queues as the rabbitmq-queues check selects them ({#VHOST}, {#QUEUE}).",
            "item_prototypes": [depth]}


def template():
    items = [master("autoremedy.batch", "autoremedy batch: results", "ZABBIX_PASSIVE", "{$AR.INTERVAL}",
                    "Every node check of checks.batch in one process (autoremedy check batch); the master item "
                    "of the batch discovery's dependent items.")]
    for key, (cls, severity, text) in NODE.items():
        items += class_items(key, cls, severity, text, "ZABBIX_PASSIVE", "{$AR.INTERVAL}")
    for key, (cls, severity, text) in EXTERNAL.items():
        items += class_items(key, cls, severity, text, "EXTERNAL", "{$AR.INTERVAL}")
    items.sort(key=lambda i: i["key"])
    triggers = [nodata_trigger("autoremedy.batch", "batch")]
    body = {
        "uuid": uid("template", TEMPLATE), "template": TEMPLATE, "name": "autoremedy OpenStack self-healing",
        "description": "Checks of the autoremedy bundle: node checks through the agent "
                       "(packaging/zabbix/zabbix_agentd.d/autoremedy.conf), API-scoped checks as external "
                       "checks on the server (autoremedy_check). Problems reach StackStorm through the "
                       "autoremedy media types and action.",
        "groups": [{"name": GROUP}],
        "tags": [{"tag": "component", "value": "autoremedy"}],
        "macros": [
            {"macro": "{$AR.INTERVAL}", "value": "1m", "description": "how often the checks run"},
            {"macro": "{$AR.LLD.INTERVAL}", "value": "1h", "description": "how often discovery runs"},
            {"macro": "{$AR.NODATA}", "value": "10m", "description": "no batch result for this long is a problem"},
            {"macro": "{$AR.DISK.PUSED.WARN}", "value": "85", "description": "used % WARNING (context: mount)"},
            {"macro": "{$AR.DISK.PUSED.CRIT}", "value": "95", "description": "used % CRITICAL (context: mount)"},
            {"macro": "{$AR.MYSQL.SERVER}", "value": "db-replica-1",
             "description": "the replica to check: a mysql.servers name (also its remediation target)"},
            {"macro": "{$AR.GALERA.SERVER}", "value": "g1", "description": "a Galera node: a mysql.servers name"},
            {"macro": "{$AR.GALERA.SIZE}", "value": "3", "description": "the nodes the Galera cluster should have"},
            {"macro": "{$AR.GALERA.CLUSTER}", "value": "openstack-db",
             "description": "the cluster's key in remediations.galera.targets"},
        ],
        "items": items,
        "discovery_rules": [batch_rule(), process_rule(), disk_rule(), queue_rule()],
        "valuemaps": [{"uuid": uid("valuemap", "status"), "name": "autoremedy status", "mappings": [
            {"value": "0", "newvalue": "OK"}, {"value": "1", "newvalue": "WARNING"},
            {"value": "2", "newvalue": "CRITICAL"}, {"value": "3", "newvalue": "UNKNOWN"}]}],
    }
    return {"zabbix_export": {"version": "6.0", "date": "2025-11-25T00:00:00Z",
                              "groups": [{"uuid": uid("group", GROUP), "name": GROUP}],
                              "templates": [body], "triggers": triggers}}


HEADER = """\
# autoremedy template for Zabbix 6.0: generated by packaging/zabbix/template.py
# (edit the tables there, then: python3 packaging/zabbix/template.py > autoremedy_template.yaml).
# Import: Data collection > Templates > Import, or `autoremedy zabbix-setup`.
"""


class _Dumper(yaml.SafeDumper):
    """No &anchors / *aliases for the objects the tables share: operators read
    and diff this file, and Zabbix's own exports never use them."""

    def ignore_aliases(self, data):
        return True


def render():
    return HEADER + yaml.dump(template(), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)


if __name__ == "__main__":
    sys.stdout.write(render())
