"""Galera quorum lost: bootstrap a new Primary component after a crash — never in a partition.

Configuration (the cluster and every one of its members)::

    remediations:
      galera:
        enabled: true
        targets:
          openstack-db:                  # the cluster: the name on the command line
            nodes:                       # every member; the cluster's own membership must equal it
              g1: {server: g1, defaults_file: /etc/mysql/my.cnf}        # on this host
              g2: {server: g2, probe: [ssh, db-2, autoremedy, check, galera,
                                       --node-cnf, /etc/mysql/my.cnf, --format, json]}
              g3: {server: g3}           # remote, no probe: never provably down from here
            bootstrap: true              # allow pc.bootstrap=YES (default false: escalate)
            settle: 30s                  # the whole cluster must be Primary and Synced by then
            window: 10s                  # no member may be seen Primary for this long first
            witness: [nova.instances]    # tables whose rows must not drop (optional)

What a run does (docs/mysql.md, "Remediation: galera"):

1. **Read every node**: by SQL where it answers (``SHOW GLOBAL STATUS LIKE
   'wsrep%'`` answers without quorum; ``@@wsrep_cluster_address``, the node's
   gcomm address); otherwise through what can prove it down: its server option
   file on this host (``defaults_file``: the process table and the datadir's
   locks, ``grastate.dat``, ``gvwstate.dat``) or its ``probe``, a command run on
   its own host that prints ``autoremedy check galera --node-cnf ... --format
   json``.
2. **Membership from the cluster**: the nodes named by every readable
   ``wsrep_cluster_address``, the members of every component
   (``wsrep_incoming_addresses``) and of every saved last Primary view
   (``gvwstate.dat``) must be exactly the configured nodes, or it refuses
   naming the difference.
3. **Nothing to do** (``noop``) only when the whole cluster passes the check:
   every node Primary, Synced, ready, one component of the configured size. A
   Primary component that is not whole (a node down, joining, desynced) is
   refused: there is nothing to bootstrap, a human or the process class restarts
   the rest.
4. **A crash, not a partition**: refuse when a node cannot be accounted for
   (not answering and not proven down: it could be Primary on the other side),
   when the surviving nodes sit in separate components, when a down node's last
   Primary view does not hold every survivor (it was Primary without them), when
   the nodes disagree on the history UUID, when a down node is provably ahead,
   when any member is seen Primary or the components move during ``window``,
   or when no node answers (then: start every node through its service and let
   ``pc.recovery`` restore the Primary component; the evidence names the most
   advanced node for a manual bootstrap if that fails).
5. **Run**: read the position of every down node whose crash left ``seqno: -1``
   (``mariadbd --wsrep-recover``: on this host only while no process holds the
   datadir, re-checked right before; elsewhere through its probe with
   ``--node-recover``) — a planned step, shown by the dry-run, never run by it;
   then, if no recovered position is ahead and the survivor has not moved,
   ``SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'`` on the most advanced
   survivor. Found Primary already (another host did it): ``noop``, no
   rate-limit slot.
6. **Verify the whole cluster** within ``settle``: the configured size, every
   node Synced; the bootstrapped node Primary but the rest not back is
   ``partial`` (an escalation).

Reach: the one node bootstrapped. Invariants: at most one Primary component;
every node's history UUID unchanged and committed seqno not lower; the
witness tables' rows not fewer.
"""
import json
import time

from autoremedy import config as configmod
from autoremedy.contract import execute
from autoremedy.clients import galera, mysql
from autoremedy.contract.guard import Refused
from autoremedy.contract.noharm import Invariant, Reach
from autoremedy.contract.remediation import Noop, Remediation, RemediationError, Step
from autoremedy.contract.result import CheckError, Metric, Result, Status

from autoremedy.checks import galera as check

DEFAULT_SETTLE = 30.0
DEFAULT_WINDOW = 10.0
OBSERVE_INTERVAL = 1.0
VERIFY_INTERVAL = 1.0
PROBE_TIMEOUT = 120.0


class GaleraBootstrap(Remediation):
    name = "galera"
    scope = "api"
    schema = {
        "targets": configmod.Map({
            "nodes": configmod.Map({"server": str, "defaults_file": str, "gcomm": str,
                                    "probe": configmod.List(str)}),
            "bootstrap": bool,
            "settle": configmod.Duration,
            "window": configmod.Duration,
            "witness": configmod.List(str),
        }),
    }

    def __init__(self, config, runner=execute.run, audit=None, sleep=time.sleep):
        super().__init__(config, runner, audit)
        self.sleep = sleep
        self._planned = {}      # target -> {"leader", "seqno", "recover": [names]}
        self._recovered = {}    # node -> (uuid, seqno) read by this run
        self._cache = {}        # target -> (monotonic, {name: NodeState}) for the evidence

    # -- configuration ----------------------------------------------------------------
    def resolve(self, name):
        target = super().resolve(name)
        entry = self.allowlist()[target]
        where = f"remediations.galera.targets.{target}"
        nodes = entry.get("nodes") or {}
        if len(nodes) < 2:
            raise configmod.ConfigError(f"{where}.nodes: list every member of the cluster (at least 2)")
        servers = mysql.settings(self.config).get("servers") or {}
        seen = {}
        for node, spec in nodes.items():
            if not spec.get("server"):
                raise configmod.ConfigError(f"{where}.nodes.{node}.server: required (a mysql.servers entry)")
            if spec["server"] not in servers:
                raise configmod.ConfigError(f"{where}.nodes.{node}.server: {spec['server']!r} is not in mysql.servers")
            if spec["server"] in seen:
                raise configmod.ConfigError(f"{where}.nodes.{node}.server: {spec['server']!r} is also "
                                            f"{seen[spec['server']]}'s: one server per node")
            seen[spec["server"]] = node
            if spec.get("probe") is not None and not spec["probe"]:
                raise configmod.ConfigError(f"{where}.nodes.{node}.probe: an argument list (the command "
                                            "that prints `autoremedy check galera --node-cnf FILE --format json` "
                                            "on that node's host)")
        for key in ("settle", "window"):
            if entry.get(key) is not None and entry[key] < 0:
                raise configmod.ConfigError(f"{where}.{key}: must not be negative")
        for table in entry.get("witness") or []:
            if len(table.split(".")) != 2 or not all(table.split(".")):
                raise configmod.ConfigError(f"{where}.witness: {table!r} is not 'database.table'")
        incomplete = static_membership(nodes)
        if incomplete:
            raise configmod.ConfigError(f"{where}.nodes: the node list cannot be complete: {incomplete}")
        return target

    def config_notes(self, target):
        """For ``autoremedy config check``: which nodes this host can prove down."""
        lines = []
        for name, spec in self.nodes(target).items():
            if spec.get("defaults_file"):
                lines.append(f"{name}: provable down here (process table and datadir of "
                             f"{spec['defaults_file']})")
            elif spec.get("probe"):
                lines.append(f"{name}: provable down through its probe ({' '.join(spec['probe'][:3])} ...)")
            else:
                lines.append(f"{name}: remote without a probe: never provable down from here, so losing "
                             "it and the quorum is always escalated")
        if not self.allowlist()[target].get("bootstrap"):
            lines.append("bootstrap is not true: quorum loss is always escalated (with the procedure)")
        return lines

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("target", help="a key of remediations.galera.targets (a cluster)")

    def nodes(self, target):
        return self.allowlist()[target]["nodes"]

    def settings_of(self, target):
        entry = self.allowlist()[target]
        return (entry.get("settle", DEFAULT_SETTLE), entry.get("window", DEFAULT_WINDOW),
                list(entry.get("witness") or []))

    # -- reading the nodes ------------------------------------------------------------------
    def survey(self, target, facts="all", witness=()):
        """{node: NodeState} for every configured node. ``facts``: "all" (local
        files and remote probes for nodes that do not answer), "local" (no probe
        commands), "none" (SQL only)."""
        return {name: self.inspect(name, spec, facts, witness) for name, spec in self.nodes(target).items()}

    def inspect(self, name, spec, facts="all", witness=()):
        state = NodeState(name)
        server = mysql.resolve(self.config, spec["server"])
        state.address = server.describe()
        state.sql_address = None if server.socket else f"{server.host}:{server.port}"
        state.gcomm = galera.gcomm(spec["gcomm"]) if spec.get("gcomm") else None
        try:
            with mysql.connect(server, timeout=5) as session:
                state.read_sql(session, witness)
        except mysql.SQLError as exc:
            state.reachable = False
            state.error = str(exc)
            if exc.code not in check.NOT_ANSWERING:
                state.refused = True        # it answers, but not to us: alive
        if spec.get("defaults_file"):
            state.where = "local"
            if facts != "none":
                try:
                    state.apply(galera.probe(spec["defaults_file"], answering=state.reachable))
                except CheckError as exc:
                    state.error = f"{state.error}; {exc}".strip("; ")
        elif spec.get("probe"):
            state.where = "probe"
            if facts == "all" and not state.reachable:
                try:
                    state.apply(self.run_probe(spec["probe"]))
                except ProbeError as exc:
                    state.error = f"{state.error}; {exc}".strip("; ")
        return state

    def run_probe(self, argv, recover=False):
        """The node facts (``data.node``) its probe command prints."""
        argv = list(argv) + (["--node-recover"] if recover else [])
        try:
            done = self.runner(argv, timeout=PROBE_TIMEOUT)
        except execute.CommandError as exc:
            raise ProbeError(f"probe {' '.join(argv[:3])}: {exc}") from None
        try:
            node = (json.loads(done.stdout or "").get("data") or {}).get("node")
        except (ValueError, AttributeError):
            node = None
        if not isinstance(node, dict) or "down" not in node:
            raise ProbeError(f"probe {' '.join(argv[:3])}: exit {done.returncode}, no node facts in its output "
                             f"({done.brief()})")
        return node

    # -- plan -------------------------------------------------------------------------------
    def plan(self, target):
        entry = self.allowlist()[target]
        settle, window, _ = self.settings_of(target)
        nodes = self.survey(target)
        whole = cluster_verdict(nodes)
        if whole.status is Status.OK:
            return []
        problems, leader, recover = self.decide(nodes, entry, target)
        if not problems and window > 0:
            problems = self.observe(target, nodes, window)
        if problems:
            self.escalate(target, nodes, problems, leader)
        others = ", ".join(f"{n.name} {n.position_text()}" for n in nodes.values() if n is not leader)
        self._planned[target] = {"leader": leader.name, "seqno": leader.seqno, "uuid": leader.uuid,
                                 "recover": [n.name for n in recover]}
        steps = [self._recover_step(target, n) for n in recover]
        steps.append(Step(
            f"bootstrap a new Primary component on {leader.address}, the most advanced "
            f"survivor at seqno {leader.seqno}; the others: {others}"
            + ("; only if no recovered position is ahead of it" if recover else "")
            + f"; then wait up to {settle:g}s for the whole cluster ({len(nodes)} nodes Synced)",
            action=self._bootstrapper(target), details=["SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'"]))
        return steps

    def decide(self, nodes, entry, target):
        return decide(nodes, entry, target)

    def observe(self, target, first, seconds):
        """Watch the cluster for ``seconds`` before acting: a member seen Primary,
        a component that moves, a down node that comes back — each means this is
        not a settled crash (a partition healing, another host acting, a node
        starting), and the run refuses."""
        started = time.monotonic()
        before = {n.name: n.signature() for n in first.values()}
        while True:
            elapsed = time.monotonic() - started
            last = elapsed >= seconds
            now = self.survey(target, facts="all" if last else "local")
            names = address_names(now)
            for node in now.values():
                if node.primary:
                    return [f"{node.name} was seen Primary {elapsed:.1f}s into the {seconds:g}s window "
                            f"(component {', '.join(names.get(a, a) for a in node.incoming) or '-'}): a Primary "
                            "component exists; not bootstrapping"]
                if not last and node.where == "probe" and not node.reachable and not first[node.name].reachable:
                    continue        # its probe runs once more at the end, not every second
                sig = node.signature()
                if sig != before[node.name]:
                    return [f"{node.name} changed within the {seconds:g}s window ({_sig_text(before[node.name])} "
                            f"-> {_sig_text(sig)}): the cluster is still moving (a node starting or joining, a "
                            "partition healing); not bootstrapping"]
            if last:
                return []
            self.sleep(min(OBSERVE_INTERVAL, max(0.05, seconds - elapsed)))

    def _recover_step(self, target, node):
        spec = self.nodes(target)[node.name]
        if node.where == "local":
            argv = ["mariadbd", f"--defaults-file={spec['defaults_file']}", "--wsrep-recover",
                    "--log-error=<temporary file>"]
            text = (f"recover {node.name}'s last committed position: mariadbd --wsrep-recover runs InnoDB crash "
                    f"recovery on {node.datadir} (what its next start does anyway), only while no process "
                    "holds that datadir (checked again right before)")
        else:
            argv = list(spec["probe"]) + ["--node-recover"]
            text = (f"recover {node.name}'s last committed position through its probe (on its host, only "
                    "while its server is proven down there)")

        def recover():
            if node.where == "local":
                try:
                    uuid, seqno = galera.wsrep_recover(spec["defaults_file"], runner=self.runner)
                except galera.RecoverError as exc:
                    raise RemediationError(f"{node.name}: {exc}") from None
            else:
                try:
                    facts = self.run_probe(spec["probe"], recover=True)
                except ProbeError as exc:
                    raise RemediationError(f"{node.name}: {exc}") from None
                if not facts.get("recovered"):
                    raise RemediationError(f"{node.name}: its probe recovered no position: "
                                           f"{facts.get('recover_error') or '; '.join(facts.get('holders') or [])}")
                uuid, _, seqno = facts["recovered"].rpartition(":")
                seqno = int(seqno)
            self._recovered[node.name] = (uuid, seqno)
            return f"{uuid}:{seqno}"
        return Step(text, action=recover, details=["argv: " + " ".join(argv)])

    def _bootstrapper(self, target):
        def bootstrap():
            planned = self._planned[target]
            name, seqno = planned["leader"], planned["seqno"]
            ahead = [(n, s) for n, (u, s) in self._recovered.items() if s > seqno]
            if ahead:
                raise RemediationError(
                    "not bootstrapping " + name + ": " + ", ".join(f"{n} recovered seqno {s}" for n, s in ahead)
                    + f" > {name}'s {seqno}: it holds transactions {name} lacks; bootstrap it by hand "
                    "(docs/mysql.md, crash recovery)")
            other = {u for u, _ in self._recovered.values() if u and u != galera.NO_UUID}
            if planned["uuid"] and other - {planned["uuid"]}:
                raise RemediationError(f"not bootstrapping {name}: recovered history UUIDs "
                                       f"{', '.join(sorted(other))} differ from {name}'s {planned['uuid']}")
            spec = self.nodes(target)[name]
            server = mysql.resolve(self.config, spec["server"])
            with mysql.connect(server, timeout=10) as session:
                status = check.read_wsrep(session)
                if status.get("wsrep_cluster_status") == "Primary":
                    raise Noop(f"{name} is already Primary (size {status.get('wsrep_cluster_size')}): bootstrapped "
                               "from elsewhere since the plan; nothing done"
                               + (" but reading positions" if self._recovered else ""))
                now = int(status.get("wsrep_last_committed") or -1)
                if now != seqno:
                    raise RemediationError(f"{name} moved from seqno {seqno} to {now} since planning: not acting")
                self.last_look(target, name)
                session.execute("SET GLOBAL wsrep_provider_options = 'pc.bootstrap=YES'")
            if self.audit is not None:
                self.audit.record("galera", "ok", action="pc.bootstrap", cls=self.name, target=target,
                                  node=name, seqno=seqno, recovered={k: list(v) for k, v in self._recovered.items()})
            return f"pc.bootstrap=YES on {name} (seqno {seqno})"
        return bootstrap

    def last_look(self, target, name):
        """Right before pc.bootstrap: no other node may have become Primary since the
        plan (a partition healing, another host acting)."""
        for other_name, other_spec in self.nodes(target).items():
            if other_name == name:
                continue
            fresh = self.inspect(other_name, other_spec, facts="none")
            if fresh.primary:
                raise RemediationError(f"{other_name} became Primary since planning: bootstrapping {name} would "
                                       "make a second Primary component; not acting")

    def run(self, target, plan):
        planned = self._planned.get(target)
        if planned:
            spec = self.nodes(target)[planned["leader"]]
            leader = self.inspect(planned["leader"], spec, facts="none")
            if leader.primary:
                raise Noop(f"{leader.name} is already Primary (size {leader.size}): bootstrapped from "
                           "elsewhere since the plan; nothing done")
        self._recovered = {}
        self._cache.clear()         # the evidence read after the run must be read afresh
        return super().run(target, plan)

    def escalate(self, target, nodes, problems, leader):
        payload = {"class": self.name, "target": target, "problems": problems,
                   "nodes": {n.name: n.to_dict() for n in nodes.values()},
                   "most_advanced": None if leader is None else leader.name,
                   "procedure": recovery_procedure(nodes)}
        path = mysql.save_evidence(self.config.state_dir, self.name, target, payload)
        if self.audit is not None:
            self.audit.record("evidence", "escalated", cls=self.name, target=target, path=path, problems=problems)
        raise Refused("precondition", f"{'; '.join(problems)} (evidence: {path})")

    # -- verify -------------------------------------------------------------------------------
    def verify(self, target):
        settle, _, _ = self.settings_of(target)
        leader = (self._planned.get(target) or {}).get("leader")
        result = self.poll(lambda: cluster_verdict(self.survey(target, facts="none")), settle,
                           interval=VERIFY_INTERVAL, sleep=self.sleep)
        if result.status is not Status.OK and leader in result.data.get("primary", []):
            result.partial = True
            result.summary = (f"{leader} is Primary, but the cluster is not whole after {settle:g}s: "
                              f"{result.summary}")
        self._cache.clear()
        return result

    # -- no harm ------------------------------------------------------------------------------
    def readings(self, target):
        """One read of every node (SQL, local files; no probe commands) shared by the
        reach and the invariants of one evidence reading."""
        cached = self._cache.get(target)
        if cached and time.monotonic() - cached[0] < 1.0:
            return cached[1]
        _, _, witness = self.settings_of(target)
        nodes = self.survey(target, facts="local", witness=witness)
        self._cache[target] = (time.monotonic(), nodes)
        return nodes

    def reach(self, target, plan):
        leader = (self._planned.get(target) or {}).get("leader")
        if leader is None:
            return []
        recover = self._planned[target]["recover"]

        def world():
            nodes = self.readings(target)
            names = address_names(nodes)
            lead = nodes[leader]
            out = {}
            for name, node in nodes.items():
                if name == leader:
                    out[name] = {"role": node.role, "history": node.history}
                elif node.primary and not (lead.primary and node.component == lead.component):
                    out[name] = f"Primary without {leader} ({', '.join(names.get(a, a) for a in node.incoming)})"
                else:
                    out[name] = "no Primary of its own"
            return out
        reaches = [Reach("node", [leader], world,
                         how="SHOW GLOBAL STATUS LIKE 'wsrep%' on every node: its Primary component and "
                             f"whether {leader} is in it (a node joining {leader} is no change)",
                         expect={leader: lambda before, after: bool(after) and after.get("role") == "Primary"})]
        if recover:
            reaches.append(Reach("datadir", recover, None,
                                 how="InnoDB crash recovery by mariadbd --wsrep-recover (the node's data is "
                                     "held by the invariant below)"))
        return reaches

    def invariants(self, target, plan):
        if not (self._planned.get(target) or {}).get("leader"):
            return []
        _, _, witness = self.settings_of(target)

        def components():
            return primary_components(self.readings(target))

        def data():
            out = {}
            for name, node in self.readings(target).items():
                if node.history or node.seqno is not None:
                    out[name] = [node.history, node.seqno]
            return out
        out = [
            Invariant("Primary components (a second one is a split brain)",
                      "SHOW GLOBAL STATUS LIKE 'wsrep%' on every node: wsrep_cluster_status and the members "
                      "of its component (wsrep_incoming_addresses)", components,
                      holds=lambda before, after: after is not None and len(after) <= 1, rule="at most one"),
            Invariant("every node's data (history UUID, committed seqno)",
                      "wsrep_local_state_uuid and wsrep_last_committed where the node answers, grastate.dat "
                      "where it is down on this host", data, holds=same_history, rule="same history, not lower"),
        ]
        for table in witness:
            out.append(Invariant.not_fewer(
                f"rows of {table}",
                f"SELECT COUNT(*) FROM {table} with wsrep_dirty_reads=1 on every node that answers (highest)",
                lambda table=table: witness_rows(self.readings(target), table)))
        return out


REMEDIATION = GaleraBootstrap


class ProbeError(Exception):
    """A node's probe command failed or printed no node facts."""


# --- one node --------------------------------------------------------------------------------

class NodeState:
    """What one configured node looks like now."""

    def __init__(self, name):
        self.name, self.address, self.sql_address = name, "", None
        self.reachable, self.refused = False, False
        self.where = None                 # "local" (defaults_file), "probe", None (SQL only)
        self.down = None                  # True: proven down; False: a process holds its datadir
        self.holders, self.datadir = [], None
        self.cluster_status = self.local_state = self.ready = None
        self.size = None
        self.uuid = self.seqno = self.source = None
        self.gcomm_uuid = None
        self.incoming = []
        self.cluster_address = self.gcomm = self.incoming_address = None
        self.grastate, self.gvwstate = {}, None
        self.status = {}
        self.rows = {}
        self.error = ""

    # readers
    def read_sql(self, session, witness=()):
        status = check.read_wsrep(session)
        self.status = status
        self.reachable = True
        self.cluster_status = status.get("wsrep_cluster_status")
        self.local_state = status.get("wsrep_local_state_comment")
        self.ready = status.get("wsrep_ready")
        self.size = _int(status.get("wsrep_cluster_size"))
        self.uuid = _uuid(status.get("wsrep_local_state_uuid"))
        self.seqno = _int(status.get("wsrep_last_committed"))
        self.source = "wsrep_last_committed"
        self.gcomm_uuid = status.get("wsrep_gcomm_uuid") or None
        self.incoming = [a.strip() for a in (status.get("wsrep_incoming_addresses") or "").split(",") if a.strip()]
        row = session.row("SELECT @@wsrep_cluster_address AS cluster_address, @@wsrep_node_address AS node_address, "
                          "@@wsrep_node_incoming_address AS incoming, @@wsrep_provider_options AS provider_options")
        if row:
            self.cluster_address = row.get("cluster_address")
            self.incoming_address = row.get("incoming") if row.get("incoming") not in (None, "", "AUTO") else None
            self.gcomm = self.gcomm or galera.gcomm_address(row.get("node_address"), row.get("provider_options"))
        if witness:
            session.execute("SET SESSION wsrep_dirty_reads = 1")
            for table in witness:
                self.rows[table] = _int(session.value(f"SELECT COUNT(*) FROM {mysql.quote_ident(*table.split('.'))}"))

    def apply(self, facts):
        """A probe's (or this host's) facts about the node."""
        self.datadir = facts.get("datadir")
        self.grastate = facts.get("grastate") or {}
        self.gvwstate = facts.get("gvwstate")
        self.cluster_address = self.cluster_address or facts.get("cluster_address")
        self.gcomm = self.gcomm or facts.get("gcomm")
        if self.reachable:
            return
        self.holders = list(facts.get("holders") or [])
        self.down = bool(facts.get("down")) and not facts.get("answering") and not self.refused
        self.uuid = _uuid(self.grastate.get("uuid"))
        seqno = self.grastate.get("seqno")
        if isinstance(seqno, int) and seqno >= 0:
            self.seqno, self.source = seqno, "grastate.dat"
        if facts.get("recovered"):
            uuid, _, seqno = facts["recovered"].rpartition(":")
            self.uuid, self.seqno, self.source = uuid, int(seqno), "mariadbd --wsrep-recover"
        if self.gvwstate and not self.gcomm_uuid:
            self.gcomm_uuid = self.gvwstate.get("my_uuid")

    # views
    @property
    def primary(self):
        return self.reachable and self.cluster_status == "Primary"

    @property
    def history(self):
        return self.uuid

    @property
    def component(self):
        return tuple(sorted(self.incoming)) if self.reachable else None

    @property
    def role(self):
        if self.reachable:
            return self.cluster_status or "unknown"
        if self.refused:
            return "running (refuses our login)"
        if self.down:
            return "down"
        if self.down is False:
            return "running, not answering"
        return "not answering"

    def signature(self):
        return (self.role, self.component, self.size)

    def position_text(self):
        if self.seqno is None:
            return "position unknown"
        return f"seqno {self.seqno} ({self.source})"

    def to_dict(self):
        out = {k: v for k, v in vars(self).items() if k != "status"}
        out["role"] = self.role
        return out


def _int(value):
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _uuid(value):
    return value if value and value != galera.NO_UUID else None


def _sig_text(sig):
    role, component, size = sig
    return role + (f" size {size}" if size is not None else "")


# --- the cluster ------------------------------------------------------------------------------

def cluster_verdict(nodes):
    """The whole cluster as the check would judge it: every node answers, is
    Primary, Synced and ready, and they form one component of the configured
    size. ``data["primary"]`` lists the nodes that are Primary."""
    from autoremedy.contract import checkrun
    expected = len(nodes)
    # The check's own options table and defaults (autoremedy/contract/checkrun.py), for the size wanted.
    args = checkrun.thresholds(checkrun.options(check.NAME, [f"--expected-size={expected}"], check))
    # Flow control since the last FLUSH STATUS says nothing of a repair: not judged here.
    args.fc_warning = args.fc_critical = None
    worst, findings = Status.OK, []
    for node in nodes.values():
        if not node.reachable:
            worst = worst.worse(Status.CRITICAL)
            findings.append(f"{node.name} {node.role}")
            continue
        result = check.from_status(args, node.status, node.address)
        worst = worst.worse(result.status)
        if result.status is not Status.OK:
            findings.append(f"{node.name}: {result.summary}")
    components = {n.component for n in nodes.values() if n.reachable}
    if len(components) > 1:
        worst = worst.worse(Status.CRITICAL)
        findings.append(f"{len(components)} separate components")
    summary = "; ".join(findings) if findings else f"all {expected} nodes Primary, Synced, ready, one component"
    synced = sum(1 for n in nodes.values() if n.primary and n.status.get("wsrep_local_state") == "4")
    metrics = [Metric("nodes_synced", synced, "", min=0, max=expected),
               Metric("primary_components", len(primary_components(nodes)), "", min=0)]
    return Result(check.NAME, summary, status=worst, metrics=metrics,
                  data={"primary": [n.name for n in nodes.values() if n.primary],
                        "roles": {n.name: n.role for n in nodes.values()}})


def primary_components(nodes):
    """Sorted member lists of the distinct Primary components the nodes report."""
    names = address_names(nodes)
    out = set()
    for node in nodes.values():
        if node.primary:
            out.add(tuple(sorted(names.get(a, a) for a in node.incoming)))
    return sorted(list(c) for c in out)


def address_names(nodes):
    """{SQL address as a component lists it: node name} for the configured nodes."""
    out = {}
    for node in nodes.values():
        for address in (node.sql_address, node.incoming_address):
            if address:
                out[address] = node.name
    for node in nodes.values():
        for address in node.incoming:
            if address not in out:
                for other in nodes.values():
                    if other.sql_address and galera.same_address(address, other.sql_address):
                        out[address] = other.name
    return out


def same_history(before, after):
    """Every node that was read both times keeps its history UUID and does not go back."""
    if before is None or after is None:
        return False
    for name, (uuid, seqno) in before.items():
        if name not in after:
            continue
        now_uuid, now_seqno = after[name]
        if uuid and now_uuid and uuid != now_uuid:
            return False
        if seqno is not None and now_seqno is not None and seqno >= 0 and now_seqno >= 0 and now_seqno < seqno:
            return False
    return True


def witness_rows(nodes, table):
    counts = [n.rows.get(table) for n in nodes.values() if n.reachable and n.rows.get(table) is not None]
    if not counts:
        raise CheckError(f"no node answered SELECT COUNT(*) FROM {table}")
    return max(counts)


# --- membership --------------------------------------------------------------------------------

def static_membership(nodes):
    """What the server option files on this host say that the node list cannot
    hold ('' when nothing): more gcomm addresses named than nodes configured, or
    a named address that is none of the configured nodes'."""
    known, named = {}, {}
    for name, spec in nodes.items():
        address = galera.gcomm(spec["gcomm"]) if spec.get("gcomm") else None
        if spec.get("defaults_file"):
            try:
                options = galera.server_options(spec["defaults_file"])
            except CheckError:
                continue
            address = address or galera.gcomm_address(options.get("wsrep-node-address"),
                                                      options.get("wsrep-provider-options"))
            for member in galera.cluster_members(options.get("wsrep-cluster-address")):
                named.setdefault(member, []).append(name)
        if address:
            known[name] = address
    unmatched = [a for a in named if not any(galera.same_address(a, k) for k in known.values())]
    unknown = len(nodes) - len(known)
    if len(named) > len(nodes) or len(unmatched) > unknown:
        return "; ".join(f"{a} is named by {', '.join(named[a])}'s wsrep_cluster_address but is no configured "
                         f"node's gcomm address" for a in unmatched) or \
            f"{len(named)} addresses in wsrep_cluster_address, {len(nodes)} nodes configured"
    return ""


def membership(nodes):
    """Differences between the configured nodes and the members the cluster itself
    names; one line each (empty: they agree)."""
    problems = []
    gcomm = {n.name: n.gcomm for n in nodes.values() if n.gcomm}
    named = {}
    for node in nodes.values():
        for member in galera.cluster_members(node.cluster_address):
            named.setdefault(member, []).append(node.name)
    if not named:
        problems.append("membership unknown: no node's wsrep_cluster_address could be read (or they name no "
                        "address)")
    unknown = [n.name for n in nodes.values() if not n.gcomm]
    for address, by in named.items():
        if not any(galera.same_address(address, a) for a in gcomm.values()):
            if unknown:
                problems.append(f"{address} is named by the wsrep_cluster_address of {', '.join(by)} and matches "
                                f"no configured node whose gcomm address is known ({', '.join(unknown)}: not "
                                "known, set nodes.<name>.gcomm)")
            else:
                problems.append(f"{address} is named by the wsrep_cluster_address of {', '.join(by)} but is no "
                                "configured node: the node list is incomplete")
    for name, address in gcomm.items():
        if named and not any(galera.same_address(address, a) for a in named):
            problems.append(f"{name} ({address}) is configured, but no node's wsrep_cluster_address names it")
    names = address_names(nodes)
    for node in nodes.values():
        if not node.reachable:
            continue
        for address in node.incoming:
            if address == "unspecified":
                problems.append(f"a member of {node.name}'s component has no address yet (wsrep_incoming_addresses "
                                "'unspecified': a node starting or joining)")
            elif address not in names:
                problems.append(f"{address}, a member of {node.name}'s component (wsrep_incoming_addresses), is no "
                                "configured node")
        if node.size is not None and node.size > len(nodes):
            problems.append(f"{node.name}'s component has {node.size} members, more than the {len(nodes)} "
                            "configured")
    known = {galera.node_key(n.gcomm_uuid): n.name for n in nodes.values() if n.gcomm_uuid}
    for node in nodes.values():
        view = node.gvwstate
        if not view:
            continue
        for member in view["members"]:
            if galera.node_key(member) not in known:
                problems.append(f"member {galera.short_uuid(member)} of the last Primary view in {node.name}'s "
                                "gvwstate.dat is no configured node that could be identified")
    return problems


# --- the decision -------------------------------------------------------------------------------

def decide(nodes, entry, target):
    """(problems, leader, nodes to recover): a bootstrap is planned only when
    ``problems`` is empty."""
    problems = membership(nodes)
    reachable = [n for n in nodes.values() if n.reachable]
    primary = [n for n in reachable if n.primary]
    if primary:
        sizes = {n.size for n in primary}
        others = [n for n in nodes.values() if not n.primary]
        problems.insert(0, f"a Primary component exists on {', '.join(n.name for n in primary)} (size "
                           f"{'/'.join(str(s) for s in sorted(sizes, key=str))} of {len(nodes)}): nothing to "
                           "bootstrap" + ("; " + ", ".join(f"{n.name} is {n.role}" for n in others)
                                          + ": restart or rejoin them (the process class, or by hand)"
                                          if others else "; the check fails for another reason: "
                                          + cluster_verdict(nodes).summary))
        return problems, None, []
    if not reachable:
        problems.insert(0, "no node answers: the whole cluster is down; start every node through its service "
                           "(galera_recovery, then mariadbd with --wsrep-start-position): Galera restores the last "
                           "Primary component by itself (pc.recovery) when all its members are back; only if that "
                           "fails, bootstrap the most advanced node by hand (procedure in the evidence)")
    for node in nodes.values():
        if node.reachable or node.down:
            continue
        if node.refused:
            why = f"it answers but refuses our login ({node.error})"
        elif node.down is False:
            why = f"its server is running but does not answer ({'; '.join(node.holders)}): starting, joining or hung"
        elif node.where is None:
            why = "it is on another host with no probe configured: it cannot be proven down from here"
        else:
            why = f"it cannot be proven down ({node.error or 'no facts'})"
        problems.append(f"{node.name} ({node.address}) is unaccounted for: {why}; it could be Primary on the other "
                        "side of a partition")
    survivors = [n for n in reachable]
    components = {}
    for node in survivors:
        components.setdefault(node.component, []).append(node.name)
    if len(components) > 1:
        problems.append("the surviving nodes sit in separate components ("
                        + "; ".join(", ".join(v) for v in components.values())
                        + "): a partition, not a crash")
    survivor_keys = {galera.node_key(n.gcomm_uuid): n.name for n in survivors if n.gcomm_uuid}
    for node in nodes.values():
        if node.reachable or not node.gvwstate:
            continue
        members = {galera.node_key(m) for m in node.gvwstate["members"]}
        missing = [name for key, name in survivor_keys.items() if key not in members]
        if missing:
            problems.append(f"{node.name}'s last Primary view (gvwstate.dat, view {node.gvwstate['view']}) does "
                            f"not include {', '.join(missing)}: it was Primary without the survivors — a "
                            "partition, not a crash")
    names = address_names(nodes)
    for node in survivors:
        listed = [names.get(a) for a in node.incoming]
        for other in nodes.values():
            if other is not node and not other.reachable and other.name in listed:
                problems.append(f"{other.name} does not answer, yet {node.name}'s component lists it as a member")
    uuids = {n.uuid for n in nodes.values() if n.uuid}
    if len(uuids) > 1:
        problems.append(f"the nodes disagree on the history UUID ({', '.join(sorted(uuids))})")
    leader = max(survivors, key=lambda n: (n.seqno if n.seqno is not None else -1)) if survivors else None
    if leader is not None:
        for node in nodes.values():
            if not node.reachable and node.seqno is not None and leader.seqno is not None \
                    and node.seqno > leader.seqno:
                problems.append(f"{node.name} (down) is ahead of {leader.name}: seqno {node.seqno} > {leader.seqno} "
                                f"({node.source}); bootstrapping {leader.name} would discard its transactions: "
                                f"bootstrap {node.name} by hand")
    if not problems and not entry.get("bootstrap"):
        problems.append(f"quorum lost after a crash; {leader.name} (seqno {leader.seqno}) is the most advanced "
                        f"survivor, but remediations.galera.targets.{target}.bootstrap is not true")
    recover = [n for n in nodes.values() if not n.reachable and n.down and n.seqno is None]
    return problems, leader, recover


def recovery_procedure(nodes):
    """What a human does, crash recovery first."""
    survivors = [n for n in nodes.values() if n.reachable]
    known = [n for n in nodes.values() if n.seqno is not None]
    steps = []
    if not survivors:
        steps.append("start every node through its service (systemctl start mariadb: galera_recovery reads "
                     "the position, mariadbd gets --wsrep-start-position); when all members of the last Primary "
                     "view are back, pc.recovery restores the Primary component by itself")
    if not known:
        steps.append("if that fails: stop every node; read each one's position (mariadbd --wsrep-recover, what "
                     "galera_recovery runs); on the most advanced set 'safe_to_bootstrap: 1' in grastate.dat and "
                     "start it with --wsrep-new-cluster (galera_new_cluster); start the others normally")
    else:
        # A clean shutdown of the last member marks it safe_to_bootstrap: 1; otherwise
        # the highest committed seqno decides.
        leader = max(known, key=lambda n: ((n.grastate or {}).get("safe_to_bootstrap") == 1, n.seqno))
        others = ", ".join(n.name for n in nodes.values() if n is not leader)
        if leader.reachable:
            steps += [f"only if this is a crash, not a partition: on {leader.name}: SET GLOBAL "
                      "wsrep_provider_options='pc.bootstrap=YES';",
                      f"then start or restart {others}: they rejoin by IST/SST"]
        else:
            steps += [f"if that fails: stop every node; read each one's position (mariadbd --wsrep-recover); on the "
                      f"most advanced ({leader.name}, seqno {leader.seqno} by {leader.source}) set "
                      "'safe_to_bootstrap: 1' in grastate.dat",
                      f"start {leader.name} with --wsrep-new-cluster (galera_new_cluster)",
                      f"start {others} normally: they join by IST/SST"]
    return steps
