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

from autoremedy.result import CheckError, Metric, Result, Status

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

FATAL_MARKERS = ("** FATAL **", "BOOT FAILED", "Cannot read schema")
WARN_MARKERS = ("crasher:",)
BOOT_LINE = " Starting RabbitMQ "
FIRST_READ = 4 * 1024 * 1024          # bytes of an unknown log read on the first run
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


# --- the node's process ------------------------------------------------------------------

def find_beam(settings):
    """The beam.smp process of this node, or None.

    Candidates are the pid file's process and every beam.smp whose environment
    names the node exactly (3.10 does not put the node name on its command
    line); the youngest wins. Right after a restart the pid file still names
    the old beam, which may still be exiting: taking it would date the new boot
    from the old one's start and call a 0.04 s old boot "stuck" (measured once).
    A pid-file process whose environment names another node is not ours (a
    recycled pid). Never guesses among other nodes' processes."""
    import psutil
    wanted = "RABBITMQ_NODENAME=" + settings.node_name
    found = {}
    pid = _pid_from_file(settings.pid_path)
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] != "beam.smp":
            continue
        env = _environ(proc.pid)
        if (env is not None and wanted in env) or (env is None and proc.pid == pid):
            found[proc.pid] = proc
    live = []
    for proc in found.values():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                live.append((proc.create_time(), proc))
        except psutil.Error:
            continue
    return max(live, key=lambda pair: pair[0])[1] if live else None


def _environ(pid):
    """The process's environment as a list of KEY=VALUE, or None when it cannot
    be read (another user's process, unless root): then only the pid file names it."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return handle.read().decode("utf-8", "replace").split("\0")
    except OSError:
        return None


def _pid_from_file(path):
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            text = handle.read(32).strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


# --- the log -----------------------------------------------------------------------------

def scan_log(log_path, state_path):
    """Markers logged since the node's last boot: (fatal lines, warning lines, note).
    Reads only the bytes added since the previous run (offset and inode kept in
    ``state_path``); a rotated or truncated log is read from its start."""
    from autoremedy import statefile
    try:
        st = os.stat(log_path)
    except FileNotFoundError:
        return [], [], f"log {log_path} not found"
    except OSError as exc:
        return [], [], f"log {log_path}: {exc.strerror}"
    state = statefile.load(state_path, {}) or {}
    offset = state.get("offset", 0)
    if state.get("inode") != st.st_ino or st.st_size < offset:
        offset = 0 if state.get("inode") is not None else max(0, st.st_size - FIRST_READ)
        state = {"fatal": [], "warn": []}
    if st.st_size - offset > 4 * FIRST_READ:
        offset = st.st_size - FIRST_READ          # a log that grew that fast: read its end
    fatal, warn = list(state.get("fatal", [])), list(state.get("warn", []))
    try:
        with open(log_path, "rb") as handle:
            handle.seek(offset)
            chunk = handle.read(st.st_size - offset)
    except OSError as exc:
        return fatal, warn, f"log {log_path}: {exc.strerror}"
    end = chunk.rfind(b"\n") + 1                  # keep a half-written last line for next time
    crasher = False
    for raw in chunk[:end].splitlines():
        line = raw.decode("utf-8", "replace")
        if BOOT_LINE in line:
            fatal, warn, crasher = [], [], False  # a new boot: earlier markers are history
        elif any(m in line for m in FATAL_MARKERS):
            if len(fatal) < 5:                    # the first markers name the cause
                fatal.append(_clip(line))
        elif any(m in line for m in WARN_MARKERS):
            crasher = True                        # its reason comes a few lines later
        elif crasher and "exception " in line:
            warn = (warn + ["crasher: " + _clip(line)])[-3:]
            crasher = False
    try:
        statefile.save(state_path, {"inode": st.st_ino, "offset": offset + end,
                                    "fatal": fatal, "warn": warn})
    except OSError:
        pass                                      # advisory state: the next run rereads
    return fatal, warn, None


def _clip(line):
    # Drop the timestamp and pid prefix: "2026-... [error] <0.223.0> BOOT FAILED" -> "BOOT FAILED"
    text = line.split("> ", 1)[1] if "> " in line[:80] else line
    return " ".join(text.split())[:200]


# --- definitions ------------------------------------------------------------------------

def load_baseline(path):
    """The last good definitions export, or None when there is none yet."""
    try:
        with open(path, "rb") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CheckError(f"definitions baseline {path} unreadable: "
                         f"{getattr(exc, 'strerror', None) or exc}") from None
    if not isinstance(data, dict) or "vhosts" not in data:
        raise CheckError(f"definitions baseline {path} is not a definitions export")
    return data


def save_baseline(path, definitions):
    """Atomic write, 0600: an export carries password hashes."""
    from autoremedy import statefile
    statefile.write_atomic(path, json.dumps(definitions, sort_keys=True).encode(), mode=0o600)


def compare(baseline, vhosts, users, queues, lost_pct):
    """What vanished since the baseline: (critical reasons, notes)."""
    reasons, notes = [], []
    gone_vhosts = sorted({v["name"] for v in baseline.get("vhosts", [])} - set(vhosts))
    gone_users = [] if users is None else sorted({u["name"] for u in baseline.get("users", [])} - set(users))
    if gone_vhosts:
        reasons.append("vhosts " + ", ".join(gone_vhosts[:5]) + _more(gone_vhosts))
    if gone_users:
        reasons.append("users " + ", ".join(gone_users[:5]) + _more(gone_users))
    durable = sum(1 for q in baseline.get("queues", []) if q.get("durable", True))
    if queues is not None and durable:
        lost = durable - queues
        if lost > 0 and lost >= max(1.0, durable * lost_pct / 100.0):
            reasons.append(f"queues ({queues} left of {durable} durable in the baseline)")
        elif lost > 0:
            notes.append(f"{lost} fewer queues than the {durable} durable ones in the baseline")
    return reasons, notes


def _more(items):
    return f" (+{len(items) - 5} more)" if len(items) > 5 else ""


def definitions_via_cli(settings, runner=None):
    """(vhosts, users, queues) from one ``rabbitmqctl export_definitions -``: works
    when the API user vanished with the data, and costs one CLI start (~0.6 s)."""
    from autoremedy import execute
    try:
        done = run_cli(settings, "rabbitmqctl", "export_definitions", "-", runner=runner, timeout=60)
    except execute.CommandError as exc:
        raise CheckError(f"rabbitmqctl export_definitions: {exc}") from None
    if done.returncode != 0:
        raise CheckError(f"rabbitmqctl export_definitions: exit {done.returncode}: {done.brief()}")
    try:
        data = json.loads(done.stdout)
        return ([v["name"] for v in data.get("vhosts", [])], [u["name"] for u in data.get("users", [])],
                len(data.get("queues", [])))
    except (ValueError, TypeError, KeyError, AttributeError):
        raise CheckError("rabbitmqctl export_definitions: unexpected output "
                         f"{done.stdout[:60]!r}") from None


def run_cli(settings, tool, *args, runner=None, timeout=20.0):
    from autoremedy.rabbitmq import run_ctl
    return run_ctl(settings, tool, *args, runner=runner, timeout=timeout)


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
    from autoremedy import execute
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
    from autoremedy import execute
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


QUEUE_COLUMNS = ("vhost", "name", "type", "node", "members", "online", "messages", "durable", "state")
# The queue ledger is refreshed at most this often (one listing: 0.34 s for 5,000 queues in
# the reference measurement), and on every run while a member is down.
LEDGER_EVERY = 60.0


def probe_queues(api, settings, findings, args):
    """Every queue of the cluster in one listing — including those whose home
    node is down (``state: down``): ``/api/overview`` leaves them out of its
    totals (measured), and counting from it made a healthy peer of a dead node
    look as if its definitions had vanished. Returns the number of durable
    queues, and keeps the ledger of the queues this node holds (below)."""
    from autoremedy.rabbitmq import ApiError
    try:
        rows = api.queues(columns=QUEUE_COLUMNS, totals_only=True)
    except ApiError as exc:
        findings.details.append(f"queues not listed: {exc}")
        return None
    if not args.cluster:
        save_ledger(settings, findings.node, rows, findings)
    return sum(1 for row in rows if isinstance(row, dict) and row.get("durable", True))


def ledger_path(settings, node):
    return os.path.join(settings.state_dir, "rabbitmq", f"{_safe(node)}.queues.json")


def save_ledger(settings, node, rows, findings, clock=time.time):
    """The queues this node holds (classic queues homed here, quorum and stream
    queues with a replica here) and their message counts at this reading: what a
    reset of this node would put at risk. A node that cannot boot cannot be
    asked, so the remediation names these last readings in its refusal."""
    from autoremedy import statefile
    now = round(clock(), 3)
    earlier = {(q.get("vhost"), q.get("name")): q for q in load_ledger(settings, node).get("queues", [])}
    held = []
    for row in rows:
        if not isinstance(row, dict):
            continue
        members = row.get("members") or []
        if row.get("node") == node or node in members:
            entry = {"vhost": row.get("vhost"), "name": row.get("name"), "type": row.get("type"),
                     "home": row.get("node"), "members": members, "messages": row.get("messages"),
                     "at": now}
            seen = earlier.get((entry["vhost"], entry["name"]))
            if entry["messages"] is None and seen and seen.get("messages") is not None:
                entry = seen          # its home is down: the reading from before stays, with its time
            held.append(entry)
    try:
        statefile.save(ledger_path(settings, node), {"node": node, "at": now, "queues": held})
    except OSError as exc:
        findings.details.append(f"queue ledger not saved: {exc.strerror}")


def ledger_age(settings, node):
    try:
        return time.time() - os.stat(ledger_path(settings, node)).st_mtime
    except OSError:
        return float("inf")


def load_ledger(settings, node):
    """The last readings saved by ``save_ledger`` ({} when none)."""
    from autoremedy import statefile
    data = statefile.load(ledger_path(settings, node), {}) or {}
    return data if isinstance(data, dict) and data.get("node") == node else {}


def vanished(baseline, vhosts, users, queues):
    """What the definitions comparison found gone, for the remediation to tell
    a loss of the node's database (vhosts or users gone) from a count."""
    return {"vhosts": sorted({v["name"] for v in baseline.get("vhosts", [])} - set(vhosts)),
            "users": [] if users is None else sorted({u["name"] for u in baseline.get("users", [])}
                                                      - set(users)),
            "durable_queues": queues}


def probe_definitions(api, settings, findings, args, queues, auth_error=None, runner=None):
    """Compare with the baseline; refresh the baseline while all is well. ``api``
    is None when it cannot be used: the definitions come from rabbitmqctl."""
    path = settings.baseline_path
    baseline = load_baseline(path)
    if args.accept_definitions:
        if api is None:
            raise CheckError("--accept-definitions needs the management API")
        export(api, path, findings, f"live definitions saved as the baseline {path}")
        return
    if api is not None:
        vhosts = [v["name"] for v in api.get("vhosts", columns="name")]
        users = listed_users(api, findings)
    else:
        vhosts, users, queues = definitions_via_cli(settings, runner)
    if baseline is None:
        if api is not None and not findings.critical:
            export(api, path, findings, f"no definitions baseline yet: saved {path}")
        else:
            findings.details.append(f"no definitions baseline at {path} (saved once the node is healthy)")
    else:
        reasons, notes = compare(baseline, vhosts, users, queues, args.queues_lost)
        findings.details.extend(notes)
        if reasons:
            findings.data["vanished"] = vanished(baseline, vhosts, users, queues)
            findings.crit("definitions_lost", f"{findings.node} running but definitions vanished: "
                          + "; ".join(reasons))
            return
        age = time.time() - os.stat(path).st_mtime
        if api is not None and not notes and not findings.critical and age > settings.baseline_refresh:
            export(api, path, findings, None)
    if auth_error is not None:
        # Nothing vanished that the baseline knows of: the credentials are just wrong.
        where = "exists" if settings.user in users else "does not exist on the node"
        findings.unknown(f"{auth_error} (user {settings.user!r} {where})")


# The same credentials just passed /api/overview and /api/nodes, so a 401 or 403 on
# /api/users or /api/definitions means "not an administrator" (3.10 answers 401
# {"error":"not_authorised","reason":"Not administrator user"} to a monitoring user).

def listed_users(api, findings):
    """User names, or None when this API user may not list them (only
    administrators list users; the monitoring tag lists vhosts and queues)."""
    from autoremedy.rabbitmq import ApiAuthError
    try:
        return [u["name"] for u in api.get("users", columns="name")]
    except ApiAuthError as exc:
        findings.details.append(f"users not compared: user {api.user!r} may not list them "
                                f"(HTTP {exc.status}: not an administrator)")
        return None


def export(api, path, findings, note):
    """Save /api/definitions as the baseline; without the right to export, say
    so: without a baseline, lost definitions go unseen."""
    from autoremedy.rabbitmq import ApiAuthError
    try:
        save_baseline(path, api.definitions())
    except ApiAuthError as exc:
        findings.warn(f"cannot export the definitions baseline: user {api.user!r} is not an "
                      f"administrator (HTTP {exc.status}); tag it, or use --no-baseline")
        return
    if note:
        findings.details.append(note)


# --- the check ------------------------------------------------------------------------------

def check(args, settings=None, runner=None):
    """The check outside the seam (tests): settings given, else $AUTOREMEDY_CONFIG's."""
    from autoremedy.lazyconfig import Deferred
    return probe(Deferred(getattr(args, "config", None)), args, settings=settings, runner=runner)


def probe(config, args, settings=None, runner=None):
    """The seam (autoremedy/checkrun.py). ``settings``: the rabbitmq section
    validated already (the remediation's), else read from ``config``."""
    from autoremedy import rabbitmq
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


def _safe(name):
    return "".join(c if c.isalnum() or c in "-_.@" else "_" for c in name)
