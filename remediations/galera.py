"""Galera quorum lost: bootstrap a new Primary component from the most advanced node, or escalate.

Configuration (the cluster and every one of its members must be listed)::

    remediations:
      galera:
        enabled: true
        targets:
          openstack-db:                          # the cluster: the name on the command line
            nodes:                               # every member, each a mysql.servers entry
              g1: {server: g1, defaults_file: /etc/mysql/my.cnf}   # local: grastate.dat, --wsrep-recover
              g2: {server: g2, defaults_file: /etc/mysql/my.cnf}
            bootstrap: true                      # allow pc.bootstrap=YES (default false: escalate)
            settle: 30s                          # time allowed to become Primary and Synced

The plan, when the reachable nodes are all in a non-Primary component:

1. Read every node: reachable ones by SQL (``SHOW GLOBAL STATUS LIKE 'wsrep%'``
   answers even without quorum); unreachable ones only through their local
   ``defaults_file``: the server must be proven down (no process behind its pid
   file, its port closed), then its position comes from ``grastate.dat``, or from
   ``mariadbd --wsrep-recover`` when the crash left ``seqno: -1``.
2. Refuse when another Primary component exists (a reachable node reports
   Primary: this node is partitioned, restart it to rejoin), when a node cannot
   be accounted for (unreachable and not provably down: it could be Primary on the
   other side of a partition), when the nodes disagree on the cluster UUID, or
   when a down node is more advanced than every reachable one (bootstrapping
   would throw its transactions away).
3. Otherwise, if ``bootstrap`` allows it, ``SET GLOBAL wsrep_provider_options =
   'pc.bootstrap=YES'`` on the most advanced reachable node (re-read just before
   acting), then verify it is Primary, Synced and ready. The other nodes rejoin by
   IST when they are started (the dead node's restart is the process class's job).

A fully stopped cluster (no node answers) is always escalated, with every node's
recovered position and the node to bootstrap named in the evidence.
"""
import os
import re
import time

from autoremedy import config as configmod
from autoremedy import execute, mysql
from autoremedy.guard import Refused
from autoremedy.remediation import Remediation, RemediationError, Step
from autoremedy.result import CheckError, Result, Status

from autoremedy.checks import galera as check

SERVER_GROUPS = ("mysqld", "server", "mariadbd", "galera", "mariadb")


class GaleraBootstrap(Remediation):
    name = "galera"
    scope = "api"
    schema = {
        "targets": configmod.Map({
            "nodes": configmod.Map({"server": str, "defaults_file": str}),
            "bootstrap": bool,
            "settle": configmod.Duration,
        }),
    }

    def __init__(self, config, runner=execute.run, audit=None, sleep=time.sleep):
        super().__init__(config, runner, audit)
        self.sleep = sleep

    def resolve(self, name):
        target = super().resolve(name)
        entry = self.allowlist()[target]
        where = f"remediations.galera.targets.{target}"
        nodes = entry.get("nodes") or {}
        if len(nodes) < 2:
            raise configmod.ConfigError(f"{where}.nodes: list every member of the cluster (at least 2)")
        servers = mysql.settings(self.config).get("servers") or {}
        for node, spec in nodes.items():
            if not spec.get("server"):
                raise configmod.ConfigError(f"{where}.nodes.{node}.server: required (a mysql.servers entry)")
            if spec["server"] not in servers:
                raise configmod.ConfigError(f"{where}.nodes.{node}.server: {spec['server']!r} is not in mysql.servers")
        return target

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("target", help="a key of remediations.galera.targets (a cluster)")

    def nodes(self, target):
        return self.allowlist()[target]["nodes"]

    # -- reading the nodes --------------------------------------------------------------
    def survey(self, target):
        """{node: NodeState} for every configured node."""
        return {name: self.inspect(name, spec) for name, spec in self.nodes(target).items()}

    def inspect(self, name, spec):
        state = NodeState(name)
        server = mysql.resolve(self.config, spec["server"])
        state.address = server.describe()
        try:
            with mysql.connect(server, timeout=5) as session:
                status = check.read_wsrep(session)
            state.reachable = True
            state.cluster_status = status.get("wsrep_cluster_status")
            state.ready = status.get("wsrep_ready")
            state.local_state = status.get("wsrep_local_state_comment")
            state.size = status.get("wsrep_cluster_size")
            state.uuid = status.get("wsrep_local_state_uuid")
            state.seqno = int(status.get("wsrep_last_committed") or -1)
            state.source = "wsrep_last_committed"
            return state
        except mysql.SQLError as exc:
            state.error = str(exc)
        if spec.get("defaults_file"):
            self.offline_position(state, spec["defaults_file"])
        return state

    def offline_position(self, state, defaults_file):
        """Position of a node that does not answer, from its local files: only when the
        server is provably down (recovering a live datadir would be wrong)."""
        try:
            options = mysql.read_option_file(defaults_file, list(SERVER_GROUPS))
        except CheckError as exc:
            state.error += f"; {exc}"
            return
        datadir = options.get("datadir") or "/var/lib/mysql"
        running = server_running(options)
        if running:
            state.alive = True
            state.error += f"; but its server is running ({running})"
            return
        state.down = True
        grastate = read_grastate(os.path.join(datadir, "grastate.dat"))
        state.grastate = grastate
        state.uuid = grastate.get("uuid")
        seqno = grastate.get("seqno")
        if seqno is not None and seqno >= 0:
            state.seqno, state.source = seqno, "grastate.dat"
            return
        recovered = self.wsrep_recover(defaults_file, options)
        if recovered is not None:
            state.uuid, state.seqno = recovered
            state.source = "mariadbd --wsrep-recover"

    def wsrep_recover(self, defaults_file, options):
        """(uuid, seqno) that ``mariadbd --wsrep-recover`` finds in InnoDB (~0.2 s)."""
        import tempfile
        fd, log = tempfile.mkstemp(prefix="wsrep-recover-", suffix=".log")
        os.close(fd)
        try:
            _chown_to(log, options.get("user") or "mysql")
            try:
                self.runner(["mariadbd", f"--defaults-file={defaults_file}", "--wsrep-recover",
                             f"--log-error={log}"], timeout=300)
            except execute.CommandError:
                return None
            with open(log, errors="replace") as handle:
                found = re.findall(r"Recovered position: ([0-9a-f-]{36}):(-?\d+)", handle.read())
        finally:
            os.unlink(log)
        if not found:
            return None
        uuid, seqno = found[-1]
        return uuid, int(seqno)

    # -- plan -----------------------------------------------------------------------------
    def plan(self, target):
        entry = self.allowlist()[target]
        nodes = self.survey(target)
        reachable = [n for n in nodes.values() if n.reachable]
        primary = [n for n in reachable if n.cluster_status == "Primary"]
        stuck = [n for n in reachable if n.cluster_status != "Primary"]
        if not stuck and reachable:
            return []        # every node that answers is in the Primary component
        problems = []
        if not reachable:
            problems.append("no node answers: the whole cluster is down; a human restarts it "
                            "(the most advanced node is named in the evidence)")
        if primary:
            problems.append(f"a Primary component exists on {', '.join(n.name for n in primary)}: "
                            f"{', '.join(n.name for n in stuck)} is partitioned from it; restart it to rejoin "
                            "(bootstrapping would split the cluster)")
        unknown = [n for n in nodes.values() if not n.reachable and (not n.down or n.seqno is None)]
        for node in unknown:
            why = "its server is running but does not answer" if node.alive else (
                "no defaults_file to prove it is down" if not node.down else "its position could not be recovered")
            problems.append(f"{node.name} ({node.address}) cannot be accounted for: {why}; it could be "
                            "Primary on the other side of a partition")
        uuids = {n.uuid for n in nodes.values() if n.uuid and n.uuid != "00000000-0000-0000-0000-000000000000"}
        if len(uuids) > 1:
            problems.append(f"the nodes disagree on the cluster state UUID ({', '.join(sorted(uuids))})")
        best = max(stuck, key=lambda n: n.seqno) if stuck else None
        ahead = [n for n in nodes.values() if not n.reachable and n.seqno is not None and best is not None
                 and n.seqno > best.seqno]
        for node in ahead:
            problems.append(f"{node.name} (down) is more advanced than {best.name}: seqno {node.seqno} > "
                            f"{best.seqno} ({node.source}); bootstrap {node.name} instead, by hand")
        if not problems and not entry.get("bootstrap"):
            problems.append(f"quorum lost; {best.name} (seqno {best.seqno}) is the most advanced node, but "
                            f"remediations.galera.targets.{target}.bootstrap is not true")
        if problems:
            self.escalate(target, nodes, problems, best)
        return [Step(f"bootstrap a new Primary component on {best.name} ({best.address}), the most advanced "
                     f"node: seqno {best.seqno} vs " + ", ".join(
                         f"{n.name} {n.seqno} ({n.source})" for n in nodes.values() if n is not best),
                     action=self._bootstrapper(target, best.name, best.seqno),
                     details=["SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'"])]

    def _bootstrapper(self, target, name, seqno):
        spec = self.nodes(target)[name]

        def bootstrap():
            server = mysql.resolve(self.config, spec["server"])
            with mysql.connect(server, timeout=10) as session:
                status = check.read_wsrep(session)
                if status.get("wsrep_cluster_status") == "Primary":
                    return f"{name} is already Primary"
                now = int(status.get("wsrep_last_committed") or -1)
                if now != seqno:
                    raise RemediationError(f"{name} moved from seqno {seqno} to {now} since planning: not acting")
                session.execute("SET GLOBAL wsrep_provider_options = 'pc.bootstrap=YES'")
            if self.audit is not None:
                self.audit.record("galera", "ok", action="pc.bootstrap", cls=self.name, target=target,
                                  node=name, seqno=seqno)
            return f"pc.bootstrap=YES on {name} (seqno {seqno})"
        return bootstrap

    def escalate(self, target, nodes, problems, best):
        payload = {"class": self.name, "target": target, "problems": problems,
                   "nodes": {n.name: n.to_dict() for n in nodes.values()},
                   "most_advanced": None if best is None else best.name}
        known = [n for n in nodes.values() if n.seqno is not None]
        if known:
            # A clean shutdown of the last member marks it safe_to_bootstrap: 1; otherwise
            # the highest committed seqno decides.
            leader = max(known, key=lambda n: ((n.grastate or {}).get("safe_to_bootstrap") == 1, n.seqno))
            payload["procedure"] = bootstrap_procedure(leader, nodes)
        path = mysql.save_evidence(self.config.state_dir, self.name, target, payload)
        if self.audit is not None:
            self.audit.record("evidence", "escalated", cls=self.name, target=target, path=path, problems=problems)
        raise Refused("precondition", f"{'; '.join(problems)} (evidence: {path})")

    # -- verify ---------------------------------------------------------------------------
    def verify(self, target):
        settle = self.allowlist()[target].get("settle", 30.0)
        return self.poll(lambda: self.check(target), settle, sleep=self.sleep)

    def check(self, target):
        """Every reachable node Primary, Synced and ready (the size is the check's
        business: the dead node is not back yet)."""
        import argparse
        args = argparse.Namespace(warning=None, critical=None, expected_size=None, donor="warning",
                                  fc_warning=None, fc_critical=None, recv_queue_warning=None,
                                  recv_queue_critical=None, not_galera="critical")
        results = []
        for name, spec in self.nodes(target).items():
            try:
                with mysql.connect(mysql.resolve(self.config, spec["server"]), timeout=5) as session:
                    results.append((name, check.evaluate(args, session, remember=False)))
            except mysql.SQLError:
                continue          # a node that is down is not part of this verdict
        if not results:
            return Result(check.NAME, "no node answers", status=Status.CRITICAL)
        worst = Status.OK
        for _, result in results:
            worst = worst.worse(result.status)
        return Result(check.NAME, "; ".join(f"{n}: {r.summary}" for n, r in results), status=worst)


REMEDIATION = GaleraBootstrap


class NodeState:
    def __init__(self, name):
        self.name, self.address = name, ""
        self.reachable, self.down, self.alive = False, False, False
        self.cluster_status = self.ready = self.local_state = self.size = self.uuid = None
        self.seqno, self.source, self.error, self.grastate = None, None, "", None

    def to_dict(self):
        return {k: v for k, v in vars(self).items()}


def read_grastate(path):
    """{uuid, seqno, safe_to_bootstrap} from grastate.dat ({} when absent)."""
    out = {}
    try:
        with open(path, errors="replace") as handle:
            text = handle.read()
    except OSError:
        return out
    for key in ("uuid", "seqno", "safe_to_bootstrap"):
        match = re.search(rf"^{key}:\s*(\S+)", text, re.M)
        if match:
            value = match.group(1)
            out[key] = int(value) if key != "uuid" and re.fullmatch(r"-?\d+", value) else value
    return out


def server_running(options):
    """Why we think the server of these options runs ('' when it provably does not):
    a live process behind its pid file, or its port accepting connections."""
    pid_file = options.get("pid-file")
    if pid_file:
        if not os.path.isabs(pid_file):
            pid_file = os.path.join(options.get("datadir") or "/var/lib/mysql", pid_file)
        try:
            with open(pid_file) as handle:
                pid = int(handle.read().strip() or 0)
            if pid:
                os.kill(pid, 0)
                if _is_zombie(pid):
                    raise ProcessLookupError
                return f"pid {pid} from {pid_file}"
        except (OSError, ValueError):
            pass
    port = int(options.get("port") or 3306)
    host = options.get("bind-address") or "127.0.0.1"
    if host in ("0.0.0.0", "::", "*"):
        host = "127.0.0.1"
    import socket
    try:
        with socket.create_connection((host, port), timeout=1):
            return f"port {host}:{port} accepts connections"
    except OSError:
        return ""


def _is_zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _chown_to(path, user):
    if os.geteuid() != 0:
        return
    import pwd
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return
    os.chown(path, entry.pw_uid, entry.pw_gid)


def bootstrap_procedure(leader, nodes):
    """What a human does to restart the cluster from ``leader``."""
    others = [n.name for n in nodes.values() if n is not leader]
    if leader.reachable:
        return [f"on {leader.name}: SET GLOBAL wsrep_provider_options='pc.bootstrap=YES';",
                f"then start or restart {', '.join(others)}: they rejoin by IST/SST"]
    return [f"stop every node; on {leader.name} (seqno {leader.seqno}, {leader.source}) set "
            "'safe_to_bootstrap: 1' in grastate.dat",
            f"start {leader.name} with --wsrep-new-cluster (galera_new_cluster)",
            f"start {', '.join(others)} normally: they join by IST/SST"]
