"""Galera node: Primary component, local state, readiness, cluster size, flow control.

    $ autoremedy check galera --server g1 --expected-size 3
    GALERA OK: Primary, Synced, ready, cluster size 3 | 'cluster_size'=3;3:;2:;0 'flow_control_paused'=0;0.1;0.5;0;1 ...

    $ autoremedy check galera --server g1 --expected-size 2
    GALERA CRITICAL: non-Primary component (quorum lost), size 1: queries fail with error 1047; local state Initialized ...

One ``SHOW GLOBAL STATUS LIKE 'wsrep%'``: it answers even on a non-Primary node,
where every query on a table fails with 1047. ``-w/-c`` are Nagios ranges on
``wsrep_cluster_size``; ``--expected-size N`` sets them to ``N:`` and
``<quorum>:``. Flow control is the fraction of time replication was paused since
the previous run (from ``wsrep_flow_control_paused_ns``, remembered in
``<state_dir>/checks/``), not Galera's own figure, which covers everything since
the last FLUSH STATUS. ``wsrep_connected`` stays ON in a non-Primary component:
it is reported, but the verdict rests on the cluster status, ``wsrep_ready`` and
the local state.

On the node itself, ``--node-cnf FILE`` (the server's option file) turns "cannot
connect" (UNKNOWN: the server may be fine and the network not) into facts:

    $ autoremedy check galera -S /run/mysqld/mysqld.sock --node-cnf /etc/mysql/my.cnf
    GALERA CRITICAL: server down: no mariadbd holds /var/lib/mysql (grastate.dat seqno -1: it crashed) ...

and ``--format json`` carries them (``data.node``: down, holders, grastate.dat,
gvwstate.dat's last Primary view): what the galera remediation's per-node
``probe`` reads on hosts it cannot see.
"""
import os
import time

from autoremedy.checks._mysql_server import server_from
from autoremedy.contract.result import Metric, Result, Status

MANIFEST = {
    "name": "galera",
    "summary": "a Galera node out of the Primary component: the guarded cluster-wide bootstrap",
    "check": "autoremedy.checks.galera:probe",
    "remediation": "autoremedy.remediations.galera",
    "scope": "api",
    "thresholds": (None, None),
    "timeout": 10.0,
    "order": 50,
    "sensu": [
        # Galera from one of its nodes (local socket); the target is the cluster's key
        # in remediations.galera.targets.
        {"name": "autoremedy-galera", "args": "--expected-size 3", "subscriptions": ["galera"],
         "hooks": ["critical"], "target": "openstack-db"},
    ],
    "zabbix": {
        "items": [
            {"template": "autoremedy Galera",
             "key": "autoremedy_check[galera,--server,{$AR.GALERA.SERVER},--expected-size,{$AR.GALERA.SIZE}]",
             "severity": "DISASTER", "kind": "EXTERNAL",
             "description": "Galera cluster status, local state and size, seen from {$AR.GALERA.SERVER}",
             "target": "{$AR.GALERA.CLUSTER}"},
        ],
    },
    "stackstorm": {
        "order": 70,
        "description": "A Galera node out of the Primary component, or one that cannot be checked (a crashed "
                       "node's own check is UNKNOWN): the guarded cluster-wide bootstrap or escalation, verify "
                       "the whole cluster, notify or escalate.",
        "status": [2, 3],
        # UNKNOWN is this rule's too: no autoremedy_status criterion (cannot_check.yaml leaves galera out).
        "takes_unknown": True,
        "status_comment": "UNKNOWN (3) too: when a node crashes its own check cannot connect, and when the\n"
                          "whole cluster crashes every check is UNKNOWN. The remediation reads every node\n"
                          "itself and acts only on a proven crash; otherwise it escalates with the evidence\n"
                          "and the recovery procedure (docs/mysql.md).",
        "check_args": "--cluster {{ trigger.body.event.labels.autoremedy_target }}",
    },
}
NAME = MANIFEST["name"]

# wsrep_local_state: 1 Joining, 2 Donor/Desynced, 3 Joined, 4 Synced (0 = Initialized).
SYNCED, DONOR, JOINING, JOINED, INITIALIZED = 4, 2, 1, 3, 0
# Client errors that mean no server answered: socket, connect, gone, lost (or no code).
NOT_ANSWERING = (None, 2002, 2003, 2006, 2013)
_STATE = {"ok": Status.OK, "warning": Status.WARNING, "critical": Status.CRITICAL, "unknown": Status.UNKNOWN}


def add_arguments(parser):
    from autoremedy.clients import mysql
    mysql.add_arguments(parser)
    parser.add_argument("--expected-size", type=int, metavar="N",
                        help="nodes the cluster should have: WARNING below N, CRITICAL below a majority "
                             "(unless -w/-c are given)")
    parser.add_argument("--donor", choices=tuple(_STATE), default="warning",
                        help="state of a Donor/Desynced node (backup or state transfer; default warning)")
    parser.add_argument("--fc-warning", type=float, default=0.1, metavar="FRACTION",
                        help="WARNING when flow control paused replication this fraction of the time (0.1)")
    parser.add_argument("--fc-critical", type=float, default=0.5, metavar="FRACTION",
                        help="CRITICAL above this fraction (0.5)")
    parser.add_argument("--recv-queue-warning", type=int, metavar="N",
                        help="WARNING when wsrep_local_recv_queue exceeds N write-sets")
    parser.add_argument("--recv-queue-critical", type=int, metavar="N",
                        help="CRITICAL when wsrep_local_recv_queue exceeds N write-sets")
    parser.add_argument("--not-galera", choices=tuple(_STATE), default="critical",
                        help="state when the server has no wsrep provider loaded (default critical)")
    parser.add_argument("--cluster", metavar="NAME",
                        help="judge the whole cluster remediations.galera.targets.NAME of the configuration: "
                             "every node Primary, Synced, ready, one component of the configured size")
    parser.add_argument("--node-cnf", metavar="FILE",
                        help="the server's own option file (on its host): when it does not answer, tell "
                             "down from running from its process and datadir instead of UNKNOWN")
    parser.add_argument("--node-recover", action="store_true",
                        help="with --node-cnf: when the server is proven down, read its position with "
                             "mariadbd --wsrep-recover (InnoDB crash recovery; the remediation's probe)")


# --- acquire ---------------------------------------------------------------------

def read_wsrep(session):
    """{variable: value} of SHOW GLOBAL STATUS LIKE 'wsrep%'."""
    rows = session.rows("SHOW GLOBAL STATUS LIKE 'wsrep%'")
    return {r["Variable_name"].lower(): r["Value"] for r in rows}


def _int(status, key, default=0):
    try:
        return int(float(status.get(key, default)))
    except (TypeError, ValueError):
        return default


def _float(status, key, default=0.0):
    try:
        return float(status.get(key, default))
    except (TypeError, ValueError):
        return default


def flow_control_fraction(status, key, state_dir=None, now=None):
    """(fraction of time paused since the previous reading, note or None)."""
    paused_ns = status.get("wsrep_flow_control_paused_ns")
    cumulative = _float(status, "wsrep_flow_control_paused")
    if paused_ns is None:
        return cumulative, "since the last FLUSH STATUS"
    paused_ns = int(paused_ns)
    now = time.time() if now is None else now
    from autoremedy import statefile
    if state_dir is None:
        from autoremedy.config import state_dir as configured
        state_dir = configured()
    path = os.path.join(state_dir, "checks", f"galera-{key}.json")
    node = status.get("wsrep_gcomm_uuid", "")
    try:
        with statefile.updating(path, lock_timeout=2) as saved:
            previous = dict(saved)
            saved.clear()
            saved.update({"ts": now, "paused_ns": paused_ns, "node": node})
    except (OSError, TimeoutError):
        return cumulative, "since the last FLUSH STATUS (state directory not writable)"
    elapsed = now - previous.get("ts", now)
    if previous.get("node") != node or paused_ns < previous.get("paused_ns", 0) or elapsed < 1:
        return cumulative, "since the last FLUSH STATUS (first reading)"
    return min(1.0, (paused_ns - previous["paused_ns"]) / (elapsed * 1e9)), None


# --- evaluate --------------------------------------------------------------------------

def size_thresholds(args):
    """-w/-c as given, else derived from --expected-size (N: and majority:)."""
    from autoremedy.contract.ranges import Range
    warn, crit = args.warning, args.critical
    if args.expected_size and warn is None and crit is None:
        quorum = args.expected_size // 2 + 1
        warn, crit = Range.parse(f"{args.expected_size}:"), Range.parse(f"{quorum}:")
    return warn, crit


def judge(status, args, fc, fc_note=None):
    findings = []          # (Status, text)
    cluster = status.get("wsrep_cluster_status", "")
    ready = status.get("wsrep_ready", "OFF")
    connected = status.get("wsrep_connected", "OFF")
    local = _int(status, "wsrep_local_state", -1)
    comment = status.get("wsrep_local_state_comment", "") or f"state {local}"
    size = _int(status, "wsrep_cluster_size")
    desync = _int(status, "wsrep_desync_count")

    if cluster != "Primary":
        what = "non-Primary component (quorum lost)" if cluster == "non-Primary" else f"cluster status {cluster or '-'}"
        findings.append((Status.CRITICAL, f"{what}, size {size}"))
    if ready != "ON":
        findings.append((Status.CRITICAL, "wsrep_ready=OFF: queries fail with error 1047"))
    if connected != "ON":
        findings.append((Status.CRITICAL, "not connected to the group (wsrep_connected=OFF)"))
    if local == DONOR:
        findings.append((_STATE[args.donor], f"local state {comment} (desync count {desync}: "
                         "state transfer donor or backup)"))
    elif local in (JOINING, JOINED):
        findings.append((Status.WARNING, f"local state {comment} (catching up with the cluster)"))
    elif local != SYNCED:
        findings.append((Status.CRITICAL, f"local state {comment}"))

    warn, crit = size_thresholds(args)
    metrics = [Metric("cluster_size", size, "", warn, crit, min=0)]
    bad = metrics[0].violated()
    if bad is not None:
        expected = f" of {args.expected_size} expected" if args.expected_size else ""
        word = "crit" if bad is crit else "warn"
        findings.append((metrics[0].status, f"cluster size {size}{expected} ({word} {bad.describe()})"))
    fc_metric = Metric("flow_control_paused", round(fc, 4), "", args.fc_warning, args.fc_critical, 0, 1)
    metrics.append(fc_metric)
    if fc_metric.violated() is not None:
        findings.append((fc_metric.status, f"flow control paused replication {fc:.0%} of the time"
                         + (f" ({fc_note})" if fc_note else "")))
    queue = Metric("local_recv_queue", _int(status, "wsrep_local_recv_queue"), "",
                   args.recv_queue_warning, args.recv_queue_critical, min=0)
    metrics.append(queue)
    if queue.violated() is not None:
        findings.append((queue.status, f"receive queue holds {queue.value} write-sets"))
    metrics += [
        Metric("local_send_queue", _int(status, "wsrep_local_send_queue"), "", min=0),
        Metric("local_state", local, "", min=0, max=4),
        Metric("ready", 1 if ready == "ON" else 0, "", min=0, max=1),
        Metric("primary", 1 if cluster == "Primary" else 0, "", min=0, max=1),
        Metric("cert_failures", _int(status, "wsrep_local_cert_failures"), "c", min=0),
        Metric("last_committed", _int(status, "wsrep_last_committed"), "c"),
    ]
    return findings, metrics


def probe(config, args):
    """The seam (autoremedy/contract/checkrun.py)."""
    if getattr(args, "cluster", None):
        return cluster_check(config, args)
    from autoremedy.clients import mysql
    server = server_from(config, args)
    node_cnf = getattr(args, "node_cnf", None)
    try:
        session = mysql.connect(server, timeout=args.timeout)
    except mysql.SQLError as exc:
        # Only "nobody answers" is the node's business; a refused login is ours.
        if not node_cnf or exc.code not in NOT_ANSWERING:
            raise
        return node_result(server, exc, node_cnf, getattr(args, "node_recover", False))
    with session:
        result = evaluate(args, session, config=config)
    if node_cnf:
        from autoremedy.clients import galera
        result.data["node"] = galera.probe(node_cnf, answering=True)
    return result


def cluster_check(config, args):
    """The verdict the galera remediation verifies against, for StackStorm's verify
    step and for an operator: every configured node, one SQL connection each."""
    from autoremedy.config import ConfigError
    from autoremedy.lazyconfig import loaded
    from autoremedy.contract.guard import Refused
    from autoremedy.contract.result import CheckError
    from autoremedy.remediations import galera as remediation
    try:
        cluster = remediation.REMEDIATION(loaded(config))
        target = cluster.resolve(args.cluster)
    except (ConfigError, Refused) as exc:
        raise CheckError(f"--cluster {args.cluster}: {getattr(exc, 'reason', exc)}") from None
    return remediation.cluster_verdict(cluster.survey(target, facts="none"))


def node_result(server, error, node_cnf, recover=False):
    """The verdict for a server that does not answer, from its host's own facts."""
    from autoremedy.clients import galera
    from autoremedy.contract.result import CheckError
    try:
        facts = galera.probe(node_cnf, recover=recover)
    except CheckError as exc:
        raise CheckError(f"{error}; and {exc}") from None
    data = {"server": server.describe(), "node": facts, "error": str(error)}
    grastate = facts["grastate"]
    if facts["down"]:
        seqno = grastate.get("seqno")
        how = ("it crashed" if seqno == -1 else f"clean shutdown at seqno {seqno}" if seqno is not None
               else "no grastate.dat")
        summary = f"server down: no mariadbd holds {facts['datadir']} (grastate.dat seqno {seqno}: {how})"
        if facts.get("recovered"):
            summary += f"; recovered position {facts['recovered']}"
        elif facts.get("recover_error"):
            summary += f"; {facts['recover_error']}"
    else:
        summary = (f"server running but not answering ({'; '.join(facts['holders'])}): starting, joining "
                   f"a Primary component, or hung; {error}")
    return Result(NAME, summary, status=Status.CRITICAL, data=data,
                  details=[f"last Primary view: {_view_line(facts.get('gvwstate'))}"])


def _view_line(view):
    if not view:
        return "none saved (gvwstate.dat absent: never Primary, or shut down cleanly)"
    from autoremedy.clients.galera import short_uuid
    return f"{view['view']} members {', '.join(short_uuid(m) for m in view['members'])}"


def evaluate(args, session, remember=True, config=None):
    """The Result for an open session. ``remember=False`` (the remediation's
    verification) leaves the flow-control reading of the monitoring runs alone."""
    return from_status(args, read_wsrep(session), session.server.describe(),
                       session.server.address if remember else None, config)


def from_status(args, status, where, remember_key=None, config=None):
    """The Result for one node's ``SHOW GLOBAL STATUS LIKE 'wsrep%'``.
    ``remember_key``: measure flow control since the previous run under this key
    (None: Galera's own figure since the last FLUSH STATUS), in the state
    directory of ``config`` (None: the environment's)."""
    data = {"server": where,
            "wsrep": {k: status.get(k) for k in (
                "wsrep_cluster_status", "wsrep_cluster_size", "wsrep_local_state", "wsrep_local_state_comment",
                "wsrep_ready", "wsrep_connected", "wsrep_desync_count", "wsrep_last_committed",
                "wsrep_cluster_state_uuid", "wsrep_local_state_uuid", "wsrep_flow_control_paused",
                "wsrep_local_recv_queue", "wsrep_local_recv_queue_avg", "wsrep_evs_state",
                "wsrep_incoming_addresses", "wsrep_provider_version", "wsrep_gcomm_uuid")}}
    if not status.get("wsrep_provider_name"):
        return Result(NAME, f"not a Galera node: no wsrep provider loaded on {where} "
                      f"(wsrep_cluster_status={status.get('wsrep_cluster_status', '-')})",
                      status=_STATE[args.not_galera], data=data)
    if remember_key is not None:
        key = remember_key.replace("/", "_").replace(":", "_")
        fc, note = flow_control_fraction(status, key, None if config is None else config.state_dir)
    else:
        fc, note = _float(status, "wsrep_flow_control_paused"), "since the last FLUSH STATUS"
    findings, metrics = judge(status, args, fc, note)
    verdict = Status.OK
    for state, _ in findings:
        verdict = verdict.worse(state)
    for metric in metrics:
        verdict = verdict.worse(metric.status)
    if findings:
        ordered = sorted(findings, key=lambda f: _RANK[f[0]], reverse=True)
        summary = "; ".join(text for _, text in ordered)
    else:
        summary = (f"{status.get('wsrep_cluster_status')}, {status.get('wsrep_local_state_comment')}, "
                   f"ready, cluster size {status.get('wsrep_cluster_size')}")
    details = [f"cluster {status.get('wsrep_cluster_state_uuid', '-')} seqno "
               f"{status.get('wsrep_last_committed', '-')}, members {status.get('wsrep_incoming_addresses', '-')}, "
               f"evs {status.get('wsrep_evs_state', '-')}"]
    data["findings"] = [{"status": s.name, "text": t} for s, t in findings]
    return Result(NAME, summary, status=verdict, metrics=metrics, details=details, data=data)


_RANK = {Status.OK: 0, Status.WARNING: 1, Status.UNKNOWN: 2, Status.CRITICAL: 3}
