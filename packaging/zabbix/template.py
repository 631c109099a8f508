"""Generate the Zabbix 6.0 templates (autoremedy_template.yaml) from the classes'
manifests (their "zabbix" items, checks/<class>.py) and the tables below.

    $ python3 packaging/zabbix/template.py > packaging/zabbix/autoremedy_template.yaml

The manifests and these tables are the one place where the templates' items, discovery rules and
triggers are described; the committed YAML is this script's output (a test
keeps them equal). Why generate: Zabbix wants a UUIDv4 per object (stable across
exports, so an import updates in place) and a trigger names its item's key in
full; both are derived here, never typed twice.

One template per role, as Zabbix's own templates are split (a host links what it
runs: "Linux by Zabbix agent" on every node, "MySQL by Zabbix agent" on database
hosts): a check that has nothing to check on a host must not be there to say
"cannot be checked". All of them are in the one export file, so one
configuration.import brings every template in.

    autoremedy node                    every node: watched processes, disks, the batch, the spool
    autoremedy RabbitMQ                RabbitMQ nodes: the node's health, the queues (external)
    autoremedy MySQL replication       a host standing for a replica ({$AR.MYSQL.SERVER})
    autoremedy Galera                  a host standing for a Galera cluster ({$AR.GALERA.*})
    autoremedy OpenStack consistency   compute nodes: Nova's view against libvirt
    autoremedy compute-node failure    one host for the cloud (e.g. the Zabbix server): dead computes

Trigger tags: autoremedy_class, autoremedy_target (the remediation's allowlist
key), autoremedy_status (the check's own verdict), and, where the node-side hook
can re-run the check, autoremedy_check_args (the "autoremedy node hook" action
of `autoremedy zabbix-setup --node-hook` runs `handle hook` with them). A target
is only ever what the operator configured or the discovery found (a watch name,
a mount point, a compute host, a macro set on the host): never a sample value.
Where no such value exists the tag is left out (NO_TARGET says why) and
StackStorm's untargeted rule escalates the problem instead of refusing it.

How values flow: each check prints one JSON object (``--format zabbix``), stored
by a *master* item; *dependent* items pick ``status`` (0 OK, 1 WARNING,
2 CRITICAL, 3 UNKNOWN, value map "autoremedy status") and a few metrics out of
it with JSONPath, and the triggers compare the status. One check process thus
serves every value of its class.

One failure, one problem. The node template watches a process and a mount
through its per-object discovery rules (a problem names the object, carries the
target and the node hook's check options); the batch discovery, which sees the
same checks through `check batch`, skips the classes the template already
watches per object ({$AR.BATCH.CLASS.NOT_MATCHES}, default process, disk and
spool), so a dead process raises one problem, not two (see docs/handlers.md,
"One failure, one problem").
"""
import os
import sys
import uuid

import yaml

sys.path.append(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import class_manifests  # noqa: E402  (packaging/tools/class_manifests.py)

GROUP = "Templates/OpenStack"
# The namespace of every uuid. Not the one of the all-in-one "autoremedy" template
# (5f0c1f8e-...): Zabbix's import finds an object by its uuid first, and an item
# of the old template must not be taken for (and moved to) one of the new ones.
NS = uuid.UUID("8d3c6b1e-4f7a-4e52-b0a9-2c61d5e0f413")

NODE = "autoremedy node"
RABBITMQ = "autoremedy RabbitMQ"
MYSQL = "autoremedy MySQL replication"
GALERA = "autoremedy Galera"
CONSISTENCY = "autoremedy OpenStack consistency"
COMPUTE = "autoremedy compute-node failure"

# The classes the node template watches per object (process and disk discovery,
# the spool item): the batch discovery leaves them out by default so that one
# failure raises one problem (the per-object one: it names its target).
PER_OBJECT = "^(process|disk|spool)$"

# The classes' own rows come from their manifests ("zabbix" in checks/<class>.py):
# their items (template, key, CRITICAL severity, item type, description, target
# tag) and, for a class whose problems carry no autoremedy_target, why not
# (docs/handlers.md). WARNING is always WARNING, UNKNOWN is INFO ("the check
# cannot tell": someone should look, nothing is known to be broken).
MANIFESTS = class_manifests.by_order(class_manifests.manifests(), "zabbix")
CLASS_ITEMS = [(item["template"], item["key"], m["name"], item["severity"], item["kind"], item["description"],
                item.get("target"), {k: item[k] for k in ("critical_and", "critical_name") if k in item})
               for m in MANIFESTS for item in m["zabbix"].get("items", [])]
NO_TARGET = {m["name"]: m["zabbix"]["no_target"] for m in MANIFESTS if "no_target" in m["zabbix"]}
QUEUES_KEY = next(row[1] for row in CLASS_ITEMS if row[2] == "rabbitmq-queues")
COMPUTE_KEY = next(row[1] for row in CLASS_ITEMS if row[2] == "compute-node")

COMMON_MACROS = [
    {"macro": "{$AR.INTERVAL}", "value": "1m", "description": "how often the checks run"},
    {"macro": "{$AR.LLD.INTERVAL}", "value": "1h", "description": "how often discovery runs"},
]
# Per template, on top of COMMON_MACROS. No sample values: a role's macros are
# empty until the operator sets them on the host that stands for it (an empty
# one makes that host's check say what is missing, on that host only).
MACROS = {
    NODE: [
        {"macro": "{$AR.NODATA}", "value": "10m", "description": "no batch result for this long is a problem"},
        {"macro": "{$AR.DISK.PUSED.WARN}", "value": "85", "description": "used % WARNING (context: mount)"},
        {"macro": "{$AR.DISK.PUSED.CRIT}", "value": "95", "description": "used % CRITICAL (context: mount)"},
        # Mount discovery filters, with the semantics (and defaults) of the
        # {$VFS.FS.*} macros of Zabbix's "Linux by Zabbix agent" template
        # (https://www.zabbix.com/integrations/linux): a mount is watched when its
        # type and its mount point match and are not excluded.
        {"macro": "{$AR.DISK.FSTYPE.MATCHES}",
         "value": "^(btrfs|ext2|ext3|ext4|reiser|xfs|ffs|ufs|jfs|jfs2|vxfs|hfs|apfs|refs|ntfs|fat32|zfs)$",
         "description": "filesystem types to watch (add tmpfs, nfs4... here)"},
        {"macro": "{$AR.DISK.FSTYPE.NOT_MATCHES}", "value": "^\\s$",
         "description": "filesystem types never watched"},
        {"macro": "{$AR.DISK.FSNAME.MATCHES}", "value": ".+",
         "description": "mount points to watch (e.g. ^(/|/var|/var/lib/nova/tmp)$)"},
        {"macro": "{$AR.DISK.FSNAME.NOT_MATCHES}", "value": "^(/dev|/sys|/run|/proc|.+/shm$)",
         "description": "mount points never watched"},
        {"macro": "{$AR.BATCH.CLASS.NOT_MATCHES}", "value": PER_OBJECT,
         "description": "classes the batch discovery leaves to the per-object rules (one failure, one problem)"},
    ],
    MYSQL: [
        {"macro": "{$AR.MYSQL.SERVER}", "value": "",
         "description": "set on the host: the replica to check, a mysql.servers name (also its remediation target)"},
    ],
    GALERA: [
        {"macro": "{$AR.GALERA.SERVER}", "value": "", "description": "set on the host: a Galera node, a mysql.servers name"},
        {"macro": "{$AR.GALERA.SIZE}", "value": "3", "description": "the nodes the Galera cluster should have"},
        {"macro": "{$AR.GALERA.CLUSTER}", "value": "",
         "description": "set on the host: the cluster's key in remediations.galera.targets (the remediation target)"},
    ],
}
DESCRIPTIONS = {
    NODE: "Link to every node. Watched processes (checks.process.watch) and mounted filesystems, one problem "
          "per object with its target; the spool of undelivered events; the other checks of checks.batch "
          "in one agent call. Agent parameters: packaging/zabbix/zabbix_agentd.d/autoremedy.conf.",
    RABBITMQ: "Link to RabbitMQ nodes: the node's health through the agent, the queues through the "
              "server's external check (autoremedy_check).",
    MYSQL: "Link to a host standing for one replica and set {$AR.MYSQL.SERVER} on it (a mysql.servers "
           "name). External check on the server.",
    GALERA: "Link to a host standing for the Galera cluster and set {$AR.GALERA.SERVER} and "
            "{$AR.GALERA.CLUSTER} on it. External check on the server.",
    CONSISTENCY: "Link to compute nodes: Nova's view of the node against libvirt, through the agent.",
    COMPUTE: "Link to one host for the whole cloud (e.g. the Zabbix server): nova-compute services down "
             "and their hosts dead, one problem per dead compute (target: that compute). External check.",
}
TEMPLATES = [NODE, RABBITMQ, MYSQL, GALERA, CONSISTENCY, COMPUTE]


def uid(*parts):
    """A stable UUIDv4-shaped id: Zabbix 6.0's configuration.import refuses a uuid5 hex
    ("UUIDv4 is expected"; measured on 6.0.14), so the version bits are set to 4."""
    return uuid.UUID(int=uuid.uuid5(NS, "/".join(parts)).int, version=4).hex


COMPONENT = [{"tag": "component", "value": "autoremedy"}]


def class_tags(cls, target=None):
    tags = [{"tag": "autoremedy_class", "value": cls}]
    if target is not None:
        tags.append({"tag": "autoremedy_target", "value": target})
    return tags


def status_item(master_key, key, name, cls, tags=()):
    return {
        "uuid": uid("item", key), "name": name, "type": "DEPENDENT", "key": key, "delay": "0",
        "history": "31d", "value_type": "UNSIGNED", "valuemap": {"name": "autoremedy status"},
        "preprocessing": [{"type": "JSONPATH", "parameters": ["$.status"]}],
        "master_item": {"key": master_key},
        "tags": [*COMPONENT, {"tag": "autoremedy_class", "value": cls}, *tags],
    }


def summary_item(master_key, key, name):
    return {
        "uuid": uid("item", key), "name": name, "type": "DEPENDENT", "key": key, "delay": "0",
        "history": "7d", "trends": "0", "value_type": "TEXT",
        "preprocessing": [{"type": "JSONPATH", "parameters": ["$.summary"]}],
        "master_item": {"key": master_key}, "tags": list(COMPONENT),
    }


def status_triggers(template, key, what, critical, tags=(), critical_and=None, critical_name=None):
    """CRITICAL / WARNING / UNKNOWN triggers on a status item; the lower ones
    depend on CRITICAL so one failure raises one problem. ``critical_and`` narrows
    the CRITICAL trigger (an extra condition, e.g. "no dead host raised its own")."""
    expr = f"last(/{template}/{key})"
    crit_expr = f"{expr}=2" + (f" and {critical_and}" if critical_and else "")
    crit_name = critical_name or f"{what} is CRITICAL on {{HOST.NAME}}"
    dep = [{"name": crit_name, "expression": crit_expr}]
    triggers = []
    for value, name, priority, expression in (
            (2, crit_name, critical, crit_expr),
            (1, f"{what} is WARNING on {{HOST.NAME}}", "WARNING", f"{expr}=1"),
            (3, f"{what} cannot be checked on {{HOST.NAME}}", "INFO", f"{expr}=3")):
        trig = {"uuid": uid("trigger", template, key, str(value)), "expression": expression, "name": name,
                "priority": priority, "manual_close": "YES", "opdata": "{ITEM.LASTVALUE}",
                "tags": [{"tag": "autoremedy_status", "value": str(value)}, *tags]}
        if value != 2:
            trig["dependencies"] = dep
        triggers.append(trig)
    return triggers


def master(key, name, kind, delay, description, tags=()):
    return {"uuid": uid("item", key), "name": name, "type": kind, "key": key, "delay": delay,
            "history": "1d", "trends": "0", "value_type": "TEXT", "description": description,
            "tags": [*COMPONENT, *tags]}


def nodata_trigger(template, key, what):
    return {"uuid": uid("trigger", key, "nodata"),
            "name": f"autoremedy: no {what} results from {{HOST.NAME}} for {{$AR.NODATA}}",
            "expression": f"nodata(/{template}/{key},{{$AR.NODATA}})=1", "priority": "AVERAGE",
            "manual_close": "YES"}


def class_items(template, key, cls, critical, kind, description, target, **critical_opts):
    tags = class_tags(cls, target)
    m = master(key, f"autoremedy {cls}: result", kind, "{$AR.INTERVAL}", description, tags)
    status_key = f"autoremedy.status[{cls}]"
    s = status_item(key, status_key, f"autoremedy {cls}: status", cls)
    s["triggers"] = status_triggers(template, status_key, f"autoremedy {cls}", critical, tags, **critical_opts)
    return [m, s, summary_item(key, f"autoremedy.summary[{cls}]", f"autoremedy {cls}: summary")]


def lld_filter(conditions):
    """An AND filter of (macro, regex or user macro, operator) rows, as the LLD
    filters of Zabbix's own templates."""
    return {"evaltype": "AND", "conditions": [
        {"macro": macro, "value": value, **({"operator": op} if op != "MATCHES_REGEX" else {}),
         "formulaid": chr(ord("A") + i)} for i, (macro, value, op) in enumerate(conditions)]}


def batch_rule():
    """The checks of checks.batch in one agent call (`check batch`), except the
    classes the per-object rules watch ({$AR.BATCH.CLASS.NOT_MATCHES}): a check
    seen by both would raise two problems with two ids for one failure.

    The target: the discovery's {#AR.TARGET} (the entry's ``target``, else the one
    watch name / mount / server its arguments name). A row without one (a disk
    check of every mount) gets no autoremedy_target tag rather than an empty one:
    the override adds the tag only where the row has a target."""
    proto_status = "autoremedy.batch.status[{#AR.CHECK}]"
    tags = class_tags("{#AR.CLASS}") + [{"tag": "autoremedy_check", "value": "{#AR.CHECK}"}]
    status = {
        "uuid": uid("proto", proto_status), "name": "autoremedy {#AR.CHECK} ({#AR.CLASS}): status",
        "type": "DEPENDENT", "key": proto_status, "delay": "0", "history": "31d", "value_type": "UNSIGNED",
        "valuemap": {"name": "autoremedy status"},
        "preprocessing": [{"type": "JSONPATH", "parameters": ['$.data.checks["{#AR.CHECK}"].status']}],
        "master_item": {"key": "autoremedy.batch"},
        "tags": [*COMPONENT, *tags],
        "trigger_prototypes": status_triggers(NODE, proto_status, "autoremedy {#AR.CHECK}", "HIGH", tags),
    }
    summary = {
        "uuid": uid("proto", "batch-summary"), "name": "autoremedy {#AR.CHECK} ({#AR.CLASS}): summary",
        "type": "DEPENDENT", "key": "autoremedy.batch.summary[{#AR.CHECK}]", "delay": "0", "history": "7d",
        "trends": "0", "value_type": "TEXT",
        "preprocessing": [{"type": "JSONPATH", "parameters": ['$.data.checks["{#AR.CHECK}"].summary']}],
        "master_item": {"key": "autoremedy.batch"}, "tags": list(COMPONENT),
    }
    return {"uuid": uid("rule", "batch"), "name": "autoremedy: checks of the batch",
            "key": "autoremedy.batch.discovery", "delay": "{$AR.LLD.INTERVAL}", "lifetime": "7d",
            "description": "One row per check in checks.batch of /etc/autoremedy/autoremedy.yaml, except the "
                           "classes in {$AR.BATCH.CLASS.NOT_MATCHES} (watched per object by this template).",
            "filter": lld_filter([("{#AR.CLASS}", "{$AR.BATCH.CLASS.NOT_MATCHES}", "NOT_MATCHES_REGEX")]),
            "item_prototypes": [status, summary],
            "overrides": [{"name": "the row names a target", "step": "1", "filter": lld_filter(
                [("{#AR.TARGET}", ".+", "MATCHES_REGEX")]),
                "operations": [{"operationobject": "TRIGGER_PROTOTYPE", "operator": "LIKE",
                                "value": "autoremedy",
                                "tags": [{"tag": "autoremedy_target", "value": "{#AR.TARGET}"}]}]}]}


def node_rule(cls, macro, key, master_uid, what, check_args, metric, rule, lld_filters=()):
    """A discovery rule for one node check per discovered object: the passive
    master item (the check's JSON), its status with triggers, and one metric
    taken out of the JSON. ``metric`` = (key, name, extra fields); ``rule`` =
    (name, key, description)."""
    tags = class_tags(cls, macro) + [{"tag": "autoremedy_check_args", "value": check_args}]
    master_proto = {"uuid": uid("proto", master_uid), "name": f"autoremedy {cls} {macro}: result",
                    "type": "ZABBIX_PASSIVE", "key": key, "delay": "{$AR.INTERVAL}", "history": "1d",
                    "trends": "0", "value_type": "TEXT", "tags": list(COMPONENT)}
    status_key = f"autoremedy.{cls}.status[{macro}]"
    status = status_item(key, status_key, f"autoremedy {cls} {macro}: status", cls, tags[1:2])
    status["uuid"] = uid("proto", status_key)
    status["trigger_prototypes"] = status_triggers(NODE, status_key, f"{what} {macro}", "HIGH", tags)
    metric_key, metric_name, fields = metric
    value = {"uuid": uid("proto", metric_key), "name": metric_name, "type": "DEPENDENT", "key": metric_key,
             "delay": "0", "history": "31d", **fields, "master_item": {"key": key}, "tags": list(COMPONENT)}
    name, rule_key, description = rule
    out = {"uuid": uid("rule", cls), "name": name, "key": rule_key, "delay": "{$AR.LLD.INTERVAL}",
           "lifetime": "7d", "description": description}
    if lld_filters:
        out["filter"] = lld_filter(lld_filters)
    out["item_prototypes"] = [master_proto, status, value]
    return out


def process_rule():
    key = "autoremedy.process[{#PROC.NAME}]"
    count = {"value_type": "UNSIGNED", "preprocessing": [{"type": "JSONPATH", "parameters": ["$.metrics.count"]}]}
    return node_rule("process", "{#PROC.NAME}", key, key, "Process", "--watch {#PROC.NAME}",
                     ("autoremedy.process.count[{#PROC.NAME}]", "autoremedy process {#PROC.NAME}: count", count),
                     ("autoremedy: watched processes", "autoremedy.process.discovery",
                      "One row per entry of checks.process.watch."))


def disk_rule():
    """Every mounted filesystem is discovered (`check disk --discover --all`, as the
    agent's vfs.fs.discovery lists them); the filter macros decide, so a tmpfs or
    one listed mount point is watched by setting a macro, not by editing the
    template."""
    args = '"{#FSNAME}","{$AR.DISK.PUSED.WARN:\\"{#FSNAME}\\"}","{$AR.DISK.PUSED.CRIT:\\"{#FSNAME}\\"}"'
    pused = {"value_type": "FLOAT", "units": "%",
             "preprocessing": [{"type": "JSONPATH", "parameters": ['$.metrics["{#FSNAME}"]']}]}
    return node_rule("disk", "{#FSNAME}", f"autoremedy.disk[{args}]", "disk-master", "Disk", "-p {#FSNAME}",
                     ("autoremedy.disk.pused[{#FSNAME}]", "autoremedy disk {#FSNAME}: used %", pused),
                     ("autoremedy: mounted filesystems", "autoremedy.disk.discovery",
                      "Every mounted filesystem ({#FSNAME}, {#FSTYPE}, as vfs.fs.discovery), watched when it "
                      "passes the {$AR.DISK.FSTYPE.*} and {$AR.DISK.FSNAME.*} filters."),
                     [("{#FSTYPE}", "{$AR.DISK.FSTYPE.MATCHES}", "MATCHES_REGEX"),
                      ("{#FSTYPE}", "{$AR.DISK.FSTYPE.NOT_MATCHES}", "NOT_MATCHES_REGEX"),
                      ("{#FSNAME}", "{$AR.DISK.FSNAME.MATCHES}", "MATCHES_REGEX"),
                      ("{#FSNAME}", "{$AR.DISK.FSNAME.NOT_MATCHES}", "NOT_MATCHES_REGEX")])


def queue_rule():
    """RabbitMQ queues discovered by the external check (the same selection as the
    queue check's item); their depth comes out of the queue check's master item
    (one API request for every queue)."""
    depth_key = "autoremedy.rabbitmq.queue.messages[{#VHOST},{#QUEUE}]"
    path = "$.data.queues[?(@.vhost == '{#VHOST}' && @.name == '{#QUEUE}')].messages.first()"
    depth = {"uuid": uid("proto", depth_key), "name": "RabbitMQ queue {#VHOST}/{#QUEUE}: messages",
             "type": "DEPENDENT", "key": depth_key, "delay": "0", "history": "31d", "value_type": "UNSIGNED",
             # A queue the check did not list this time (filtered, or gone): no value
             # rather than an unsupported item.
             "preprocessing": [{"type": "JSONPATH", "parameters": [path], "error_handler": "DISCARD_VALUE"}],
             "master_item": {"key": QUEUES_KEY},
             "tags": [*COMPONENT, {"tag": "autoremedy_class", "value": "rabbitmq-queues"}]}
    discover = QUEUES_KEY.replace("autoremedy_check[rabbitmq-queues,", "autoremedy_check[rabbitmq-queues,--discover,")
    return {"uuid": uid("rule", "queues"), "name": "autoremedy: RabbitMQ queues",
            "type": "EXTERNAL", "key": discover, "delay": "{$AR.LLD.INTERVAL}",
            "lifetime": "1d", "description": "Queues as the rabbitmq-queues check selects them ({#VHOST}, {#QUEUE}).",
            "item_prototypes": [depth]}


# A compute's verdict out of the compute-node check's JSON; "up" when the check
# lists it no more (it lists only computes that are not up), nothing at all when
# the check could not judge (no data.hosts: the problem stays as it was).
# (JSONPath first: Zabbix 6.0 has no "custom on fail" for JavaScript steps.)
VERDICT_JS = """var mine = JSON.parse(value).filter(function (h) { return h.host === '{#OS.COMPUTE}'; });
return mine.length ? mine[0].verdict : 'up';"""
DEAD_VERDICTS = ("dead", "unreachable-powered-on")      # checks/compute_node.py DEAD, UNREACHABLE_ON


def compute_rule():
    """One problem per dead compute, its target the compute itself (the host the
    remediation evacuates), discovered from Nova's service list."""
    key = "autoremedy.compute.verdict[{#OS.COMPUTE}]"
    verdict = {"uuid": uid("proto", key), "name": "autoremedy compute {#OS.COMPUTE}: verdict", "type": "DEPENDENT",
               "key": key, "delay": "0", "history": "31d", "trends": "0", "value_type": "CHAR",
               "preprocessing": [{"type": "JSONPATH", "parameters": ["$.data.hosts"],
                                  "error_handler": "DISCARD_VALUE"},
                                 {"type": "JAVASCRIPT", "parameters": [VERDICT_JS]}],
               "master_item": {"key": COMPUTE_KEY},
               "tags": [*COMPONENT, *class_tags("compute-node", "{#OS.COMPUTE}")]}
    expr = " or ".join(f'last(/{COMPUTE}/{key})="{v}"' for v in DEAD_VERDICTS)
    verdict["trigger_prototypes"] = [{
        "uuid": uid("trigger", COMPUTE, key), "expression": expr,
        "name": "Compute {#OS.COMPUTE} is dead (nova-compute down, host unreachable)", "priority": "DISASTER",
        "manual_close": "YES", "opdata": "{ITEM.LASTVALUE}",
        "tags": [{"tag": "autoremedy_status", "value": "2"}, *class_tags("compute-node", "{#OS.COMPUTE}")]}]
    return {"uuid": uid("rule", "computes"), "name": "autoremedy: nova-compute services",
            "type": "EXTERNAL", "key": "autoremedy_check[compute-node,--discover]", "delay": "{$AR.LLD.INTERVAL}",
            "lifetime": "7d", "description": "One row per nova-compute service ({#OS.COMPUTE}, {#OS.ZONE}).",
            "item_prototypes": [verdict]}


def dead_count_item():
    return {"uuid": uid("item", "autoremedy.compute.dead"), "name": "autoremedy compute-node: dead computes",
            "type": "DEPENDENT", "key": "autoremedy.compute.dead", "delay": "0", "history": "31d",
            "value_type": "UNSIGNED",
            "preprocessing": [{"type": "JSONPATH", "parameters": ["$.data.dead.length()"],
                               "error_handler": "DISCARD_VALUE"}],
            "master_item": {"key": COMPUTE_KEY}, "tags": [*COMPONENT, *class_tags("compute-node")]}


def template_body(name, items, rules):
    body = {"uuid": uid("template", name), "template": name, "name": name, "description": DESCRIPTIONS[name],
            "groups": [{"name": GROUP}], "tags": list(COMPONENT),
            "macros": COMMON_MACROS + MACROS.get(name, [])}
    if items:
        body["items"] = sorted(items, key=lambda i: i["key"])
    if rules:
        body["discovery_rules"] = rules
    body["valuemaps"] = [{"uuid": uid("valuemap", name), "name": "autoremedy status", "mappings": [
        {"value": "0", "newvalue": "OK"}, {"value": "1", "newvalue": "WARNING"},
        {"value": "2", "newvalue": "CRITICAL"}, {"value": "3", "newvalue": "UNKNOWN"}]}]
    return body


def templates():
    items = {name: [] for name in TEMPLATES}
    items[NODE].append(master("autoremedy.batch", "autoremedy batch: results", "ZABBIX_PASSIVE", "{$AR.INTERVAL}",
                              "Every node check of checks.batch in one process (autoremedy check batch); the "
                              "master item of the batch discovery's dependent items."))
    for template, key, cls, severity, kind, text, target, opts in CLASS_ITEMS:
        items[template] += class_items(template, key, cls, severity, kind, text, target, **opts)
    items[COMPUTE].append(dead_count_item())
    rules = {NODE: [batch_rule(), process_rule(), disk_rule()], RABBITMQ: [queue_rule()], COMPUTE: [compute_rule()]}
    return [template_body(name, items[name], rules.get(name)) for name in TEMPLATES]


def template():
    return {"zabbix_export": {"version": "6.0", "date": "2025-11-25T00:00:00Z",
                              "groups": [{"uuid": uid("group", GROUP), "name": GROUP}],
                              "templates": templates(),
                              "triggers": [nodata_trigger(NODE, "autoremedy.batch", "batch")]}}


HEADER = """\
# autoremedy templates for Zabbix 6.0, one per role: generated by packaging/zabbix/template.py
# (edit the tables there, then: python3 packaging/zabbix/template.py > autoremedy_template.yaml).
# Import: Data collection > Templates > Import, or `autoremedy zabbix-setup`; link by role (docs/handlers.md).
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
