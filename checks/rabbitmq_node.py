"""Unhealthy RabbitMQ node / corrupted mnesia: running, booting, log markers, cluster, alarms, definitions.

    $ autoremedy check rabbitmq-node
    RABBITMQ-NODE CRITICAL: rabbit@ctl1 running but definitions vanished: vhosts nova, neutron;
    users openstack | 'fd'=3.6%;80;90;0;100 'sockets'=0%;80;90;0;100 ...

Much mnesia damage does not stop the node (measured on RabbitMQ 3.10: tests/rabbitmq/test_node_throwaway.py): a truncated LATEST.LOG
boots a node that silently lost its vhosts, users and queues; a deleted
schema.DAT boots an empty one. So the verdict combines three signals:

1. the node and its cluster: ``GET /api/nodes`` (one request: every member the
   cluster lists — ``cluster_nodes`` is only a cross-check —, its running flag,
   partitions, memory/disk alarms, file descriptors, sockets and Erlang
   processes). A partition is reported with its map before anything is called
   "not running". When the API does not answer, the node's youngest beam
   process and one ``rabbitmq-diagnostics check_running`` tell booting from
   dead from running without the management plugin, and a boot older than
   ``boot_timeout`` is "stuck booting" when the node says it is booting;
2. the fatal markers in the node's log since its last boot (``** FATAL **``,
   ``BOOT FAILED``, ``Cannot read schema``; ``crasher`` reports warn), read
   incrementally from a small state file;
3. the definitions baseline (``rabbitmq.definitions_baseline``, an export of
   ``/api/definitions`` this check keeps fresh while the node is healthy):
   CRITICAL when baseline vhosts or users vanished or most durable queues did.
   When the API answers 401 the credentials may have vanished with the data, so
   the definitions are read with ``rabbitmqctl export_definitions`` instead.

``--cluster`` judges only what the API shows (for a central, API-scoped check).
``--accept-definitions`` takes the live definitions as the new baseline (after an
intentional deletion). ``data.state`` is one of running, booting, stuck_booting,
boot_failed, not_running, app_stopped, definitions_lost, partitioned, alarm,
exhausted, cluster_degraded, not_member, membership_mismatch; the remediation
(remediations/rabbitmq_node.py) decides what each allows.

The queues this node holds and their counts are kept as the last reading a
reset refusal quotes (``save_ledger``).
"""
import json
import os
import time

from autoremedy.contract.result import CheckError, Metric, Result, Status

# The node's own process, tools and log; the definitions baseline and the queue
# ledger. Re-exported: the remediation and the tests name them from this module.
from autoremedy.checks._rabbitmq_local import (BOOT_LINE, FATAL_MARKERS, FIRST_READ, WARN_MARKERS,  # noqa: F401
                                               find_beam, run_cli, safe_name as _safe, scan_log)
from autoremedy.checks._rabbitmq_definitions import (LEDGER_EVERY, QUEUE_COLUMNS, compare,  # noqa: F401
                                                     definitions_via_cli, export, ledger_age, ledger_path,
                                                     listed_users, load_baseline, load_ledger,
                                                     probe_definitions, probe_queues, save_baseline,
                                                     save_ledger, vanished)

MANIFEST = {
    "name": "rabbitmq-node",
    "summary": "an unhealthy RabbitMQ node or corrupted mnesia: repair on that node",
    "check": "autoremedy.checks.rabbitmq_node:probe",
    "remediation": "autoremedy.remediations.rabbitmq_node",
    "scope": "node",
    "thresholds": ("80", "90"),            # percent of file descriptors, sockets, Erlang processes
    "timeout": 20.0,
    "order": 30,
    "sensu": [
        {"name": "autoremedy-rabbitmq-node", "args": "", "subscriptions": ["rabbitmq"], "hooks": ["critical"]},
    ],
    "zabbix": {
        "items": [
            {"template": "autoremedy RabbitMQ", "key": "autoremedy.rabbitmq.node", "severity": "DISASTER",
             "kind": "ZABBIX_PASSIVE",
             "description": "RabbitMQ node on this host: running, partitions, alarms, membership, definitions"},
        ],
        "no_target": "the target is the node's own rabbitmq.node, from the node's configuration: a Zabbix "
                     "host name is not that name, and the template does not guess it",
        "agent_comment": "Node-side views of the API-scoped services, and the spool of undelivered events.",
        "userparameters": [
            ("autoremedy.rabbitmq.node",
             "/usr/bin/autoremedy check rabbitmq-node --format zabbix --timeout 2.5"),
        ],
    },
    "stackstorm": {
        "order": 30,
        "description": "An unhealthy RabbitMQ node: mnesia repair on that node, verify, notify or escalate.",
        "status": [2],
        "check_args": "",
    },
}
NAME = MANIFEST["name"]

NODE_COLUMNS = ("name", "running", "type", "partitions", "mem_alarm", "disk_free_alarm", "fd_used",
                "fd_total", "sockets_used", "sockets_total", "proc_used", "proc_total", "uptime")


def add_arguments(parser):
    parser.add_argument("--node", help="node name (default rabbitmq.node, else rabbit@<short hostname>)")
    parser.add_argument("--api-url", metavar="URL", help="management API of this node")
    parser.add_argument("--cluster", action="store_true",
                        help="API-scoped: judge the cluster view only (no local process, log or CLI)")
    parser.add_argument("--boot-timeout", type=float, metavar="SECONDS",
                        help="a node booting longer than this is stuck (default rabbitmq.boot_timeout, 20)")
    parser.add_argument("--queues-lost", type=float, default=50.0, metavar="PCT",
                        help="CRITICAL when this percentage of the baseline's durable queues is gone")
    parser.add_argument("--no-baseline", action="store_true", help="skip the definitions comparison")
    parser.add_argument("--accept-definitions", action="store_true",
                        help="save the live definitions as the new baseline")


# --- probe --------------------------------------------------------------------------------

class Findings:
    """Everything the probes learnt; judged in one place (``verdict``)."""

    def __init__(self, node):
        self.node = node
        self.state = "running"
        self.critical, self.warning, self.details, self.metrics = [], [], [], []
        self.unknowns = []
        self.data = {"node": node}

    def crit(self, state, text):
        if self.state == "running" or not self.critical:
            self.state = state
        self.critical.append(text)

    def warn(self, text, state=None):
        if state and self.state == "running":
            self.state = state
        self.warning.append(text)

    def unknown(self, text):
        self.unknowns.append(text)


def probe_api(api, findings, settings, args):
    """The cluster view from one /api/nodes request: the members are the ones the
    cluster lists (``cluster_nodes`` is only a cross-check), who runs, and the
    partition map."""
    nodes = api.get("nodes", columns=",".join(NODE_COLUMNS))
    if not isinstance(nodes, list):
        raise CheckError("management API: /api/nodes did not return a list")
    by_name = {n.get("name"): n for n in nodes if isinstance(n, dict) and n.get("name")}
    findings.data["nodes"] = {name: bool(n.get("running")) for name, n in by_name.items()}
    judge_cluster(findings, by_name, settings, args)
    for name, node in sorted(by_name.items()):
        if not node.get("running"):
            continue
        alarms = [a for a, key in (("memory", "mem_alarm"), ("disk", "disk_free_alarm")) if node.get(key)]
        if alarms:
            findings.crit("alarm", f"{name} {' and '.join(alarms)} alarm (publishers blocked)")
        usage(findings, name, node, args, own=(name == findings.node or len(by_name) == 1))


def judge_cluster(findings, by_name, settings, args):
    """Partitions first: with ``ignore`` handling each side sees the other as
    not running, and calling that "not running" would invite a restart or a
    reset of a live node (measured: ``partitions`` fills 8-10 s after the cut,
    and names both sides)."""
    partitions = {name: sorted(n["partitions"]) for name, n in sorted(by_name.items())
                  if n.get("partitions")}
    cut_off = set()
    if partitions:
        findings.data["partitions"] = partitions
        cut_off = set(partitions).union(*partitions.values())
        findings.crit("partitioned", "partition: " + "; ".join(
            f"{name} cut off from {', '.join(peers)}" for name, peers in partitions.items()))
    if by_name and findings.node not in by_name:
        findings.crit("not_member", f"{findings.node} is not a member of the cluster this API "
                      f"reports ({', '.join(sorted(by_name))})")
    for name in sorted(by_name, key=lambda n: n != findings.node):   # this node first
        if by_name[name].get("running") or name in cut_off:
            continue
        if partitions and name != findings.node:
            # The map fills in over seconds and from either side (seen: b cuts d, and the
            # first map names only c and b): a peer this side cannot see while a partition
            # is on may be alive beyond it, so it is not called "not running".
            findings.crit("partitioned", f"{name} unreachable from this side of the partition "
                          "(down or cut off)")
            continue
        state = "not_running" if name == findings.node else "cluster_degraded"
        findings.crit(state, f"{name} not running")
    configured = set(settings.cluster_nodes)
    if configured and configured != set(by_name):
        missing, extra = sorted(configured - set(by_name)), sorted(set(by_name) - configured)
        text = "cluster membership differs from rabbitmq.cluster_nodes:" + (
            f" not members: {', '.join(missing)}" if missing else "") + (
            f" unexpected members: {', '.join(extra)}" if extra else "")
        findings.warn(text, state="membership_mismatch")


def usage(findings, name, node, args, own):
    """File descriptors, sockets and Erlang processes as percent of their limit."""
    for label, used, total in (("fd", "fd_used", "fd_total"), ("sockets", "sockets_used", "sockets_total"),
                               ("procs", "proc_used", "proc_total")):
        if not node.get(total):
            continue
        pct = round(100.0 * float(node.get(used) or 0) / float(node[total]), 2)
        metric = Metric(label if own else f"{name} {label}", pct, "%", args.warning, args.critical, 0, 100)
        findings.metrics.append(metric)
        if metric.status is Status.CRITICAL:
            findings.crit("exhausted", f"{name} {label} {pct:g}% used ({node.get(used)}/{node[total]})")
        elif metric.status is Status.WARNING:
            findings.warn(f"{name} {label} {pct:g}% used ({node.get(used)}/{node[total]})")


def probe_down(settings, findings, args, fatal, runner=None, clock=None):
    """The API does not answer: tell dead, booting, stuck and running-without-API apart."""
    from autoremedy.contract import execute
    clock = clock or time.time
    proc = find_beam(settings)
    if proc is None:
        if fatal:
            findings.crit("boot_failed", f"{findings.node} boot failed: {fatal[0]}")
        else:
            findings.crit("not_running", f"{findings.node} not running (no beam process)")
        return None
    findings.data["pid"] = proc.pid
    try:
        running = run_cli(settings, "rabbitmq-diagnostics", "check_running", runner=runner).returncode == 0
    except execute.CommandError as exc:
        findings.details.append(f"rabbitmq-diagnostics unavailable: {exc}")
        running = False
    if running:
        return proc
    try:
        age = clock() - proc.create_time()
    except Exception:
        age = 0.0
    timeout = args.boot_timeout if args.boot_timeout is not None else settings.boot_timeout
    if fatal:
        findings.crit("boot_failed", f"{findings.node} boot failed: {fatal[0]}")
    elif age > timeout:
        says = booting(settings, runner)
        if says is True:
            findings.crit("stuck_booting", f"{findings.node} stuck booting for {age:.0f}s "
                          f"(limit {timeout:g}s)")
        elif says is False:                       # stop_app by someone, or a start that never began
            findings.crit("app_stopped", f"{findings.node}: the rabbit app is not running on a live "
                          f"VM (pid {proc.pid}, up {age:.0f}s; stop_app?)")
        else:
            # A VM that does not answer is_booting may be one that is stopping: a
            # guess here would reset a healthy node, so the check cannot tell.
            findings.unknown(f"{findings.node}: beam pid {proc.pid} up {age:.0f}s without the rabbit "
                             f"app, and the node does not say whether it is booting ({says})")
    else:
        findings.warn(f"{findings.node} booting for {age:.0f}s", state="booting")
    return None


def booting(settings, runner=None):
    """True when the node says it is still booting, False when it says it is not
    (stopped with stop_app); otherwise the reason it could not say (a string)."""
    from autoremedy.contract import execute
    try:
        done = run_cli(settings, "rabbitmq-diagnostics", "is_booting", "--formatter", "json",
                       runner=runner)
    except execute.CommandError as exc:
        return f"rabbitmq-diagnostics is_booting: {exc}"
    try:
        answer = json.loads(done.stdout).get("result")
    except (ValueError, AttributeError):
        answer = None
    if isinstance(answer, bool):
        return answer
    return f"rabbitmq-diagnostics is_booting: exit {done.returncode}: {done.brief() or 'no answer'}"


def probe_cli_cluster(settings, findings, runner=None):
    """Running node without a usable API: the cluster view from one CLI call."""
    done = run_cli(settings, "rabbitmqctl", "cluster_status", "--formatter", "json", runner=runner)
    try:
        status = json.loads(done.stdout) if done.returncode == 0 else None
    except ValueError:
        status = None
    if not isinstance(status, dict):
        findings.warn(f"rabbitmqctl cluster_status failed: {done.brief() or done.returncode}")
        return
    running = set(status.get("running_nodes") or [])
    members = set(status.get("disk_nodes") or []) | set(status.get("ram_nodes") or []) | running
    partitions = status.get("partitions") or {}
    by_name = {name: {"running": name in running, "partitions": partitions.get(name) or []}
               for name in members}
    findings.data["nodes"] = {name: row["running"] for name, row in by_name.items()}
    judge_cluster(findings, by_name, settings, None)
    for alarm in status.get("alarms") or []:
        findings.crit("alarm", f"alarm: {json.dumps(alarm, sort_keys=True)}")


# --- the check ------------------------------------------------------------------------------

def check(args, settings=None, runner=None):
    """The check outside the seam (tests): settings given, else $AUTOREMEDY_CONFIG's."""
    from autoremedy.lazyconfig import Deferred
    return probe(Deferred(getattr(args, "config", None)), args, settings=settings, runner=runner)


def probe(config, args, settings=None, runner=None):
    """The seam (autoremedy/contract/checkrun.py). ``settings``: the rabbitmq section
    validated already (the remediation's), else read from ``config``."""
    from autoremedy.clients import rabbitmq
    from autoremedy.lazyconfig import loaded
    settings = settings or rabbitmq.settings(loaded(config))
    if args.node:
        settings.data["node"] = args.node
    api = settings.api(args.api_url)
    api_error, overview = None, None
    try:
        overview = api.get("overview", columns="node,object_totals")
        if not isinstance(overview, dict):
            raise CheckError("management API: /api/overview did not return an object")
        if not settings.explicit_node and overview.get("node"):
            # The node this API runs on, before rabbitmq-env.conf or the hostname:
            # those name the machine's own broker, not necessarily api_url's.
            settings.data["node"] = overview["node"]
    except (rabbitmq.ApiUnavailable, rabbitmq.ApiAuthError) as exc:
        if args.cluster:
            raise
        api_error = exc
    node = settings.node_name
    findings = Findings(node)
    fatal, warn = [], []
    if not args.cluster:
        state_path = os.path.join(settings.state_dir, "checks", f"rabbitmq-node-{_safe(node)}.log.json")
        fatal, warn, note = scan_log(settings.log_path, state_path)
        if note:
            findings.details.append(note)
    if api_error is None:
        probe_api(api, findings, settings, args)
    else:
        findings.details.append(str(api_error))
        if probe_down(settings, findings, args, fatal, runner) is None:
            return verdict(findings, fatal, warn)    # dead, booting or stuck: nothing more to ask
        if isinstance(api_error, rabbitmq.ApiUnavailable):
            findings.warn("management API unavailable, node checked with the CLI")
        probe_cli_cluster(settings, findings, runner)
    queues = None
    if api_error is None:
        # /api/overview's total leaves out the queues of a member that is down:
        # then (and every LEDGER_EVERY for the ledger) the queues are listed.
        members_down = not all((findings.data.get("nodes") or {}).values())
        ledger_due = not args.cluster and ledger_age(settings, node) > LEDGER_EVERY
        if members_down or ledger_due:
            queues = probe_queues(api, settings, findings, args)
        else:
            queues = ((overview or {}).get("object_totals") or {}).get("queues")
    if not args.no_baseline:
        auth_error = api_error if isinstance(api_error, rabbitmq.ApiAuthError) else None
        probe_definitions(None if api_error else api, settings, findings, args,
                          queues, auth_error, runner)
    return verdict(findings, fatal, warn)


def verdict(findings, fatal, warn):
    if fatal and findings.state in ("running", "booting") and not findings.critical:
        findings.warn(f"fatal marker in the log since the last boot: {fatal[0]}")
    if warn and findings.critical:
        findings.details.append(f"{len(warn)} crasher report(s) since the last boot: {warn[-1]}")
    elif warn:
        findings.warn(f"{len(warn)} crasher report(s) since the last boot: {warn[-1][:120]}")
    status = (Status.CRITICAL if findings.critical else Status.UNKNOWN if findings.unknowns
              else Status.WARNING if findings.warning else Status.OK)
    if status is not Status.OK:
        summary = "; ".join(findings.critical + findings.unknowns + findings.warning)
    else:
        summary = f"{findings.node} running"
        nodes = findings.data.get("nodes") or {}
        if len(nodes) > 1:
            summary += f", {sum(nodes.values())}/{len(nodes)} cluster nodes running"
    findings.data.update(state=findings.state if status is not Status.OK else "running",
                         fatal=fatal, crashers=warn)
    return Result(NAME, summary, status=status, metrics=findings.metrics,
                  details=findings.details, data=findings.data)

