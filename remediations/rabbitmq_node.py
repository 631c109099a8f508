"""Unhealthy RabbitMQ node: start it, restore what vanished, or — last resort — reset it.

Runs on the failing node, for one node named explicitly::

    rabbitmq:
      node: rabbit@ctl1                 # required (else: the node api_url runs on)
      cluster_nodes: [rabbit@ctl1, rabbit@ctl2, rabbit@ctl3]    # optional cross-check
      start_command: [rabbitmq-server, -detached]
    remediations:
      rabbitmq-node:
        enabled: true
        verify_timeout: 90s
        accept_queue_loss: [{vhost: /, name: scratch}]   # queues a reset may lose, by name

    $ autoremedy remediate rabbitmq-node rabbit@ctl1 --dry-run

What it does depends on the rabbitmq-node check's state:

- ``not_running`` (no beam, no fatal marker): start the node. Nothing else.
- ``definitions_lost`` on a running node whose vhosts or users vanished: export
  the live definitions, then import only the baseline's objects that are
  missing (nothing that still exists is overwritten). A running node is never
  reset, and a drop of the queue count alone is not corruption: refused.
- ``boot_failed`` / ``stuck_booting``: the reset, and only when it cannot lose
  what it cannot restore. The membership, who runs and the partition map come
  from the members themselves (``cluster_status``; ``cluster_nodes`` is only a
  cross-check). Every queue the node holds is listed first (classic queues
  homed there, quorum/stream queues with a replica there) with its message
  count (live, else the check's last reading); the run is refused, naming each
  one, unless every such queue is empty, has a majority of replicas online
  elsewhere, or is named in ``accept_queue_loss``. Then: export the cluster's
  definitions from a running member, end the node's beam, move its mnesia
  aside (never deleted), start it, ``forget_cluster_node`` on the peer and
  ``reset; join_cluster`` here, add the node back to the quorum/stream queues
  it replicated, and import the exported definitions again.
  Standalone: the definitions baseline is the export, imported after the reset.

Refused (escalated, nothing moved): a partition (with the partition map; the
documented manual procedure heals it), a membership that cannot be learnt or
disagrees with ``cluster_nodes``, a target that is not a member, most members
down, no other running disc node, data at risk, any state a reset does not fix.
"""
import json
import os
import time

from autoremedy import config as configmod
from autoremedy.clients import rabbitmq
from autoremedy.contract.guard import Refused
from autoremedy.contract.noharm import Invariant, Reach
from autoremedy.contract.remediation import Remediation, RemediationError, Step
from autoremedy.remediations import _rabbitmq_cluster as cluster
from autoremedy.contract.result import Status

NAME = "rabbitmq-node"
RESET_STATES = ("boot_failed", "stuck_booting")


class ResetNode(Remediation):
    name = NAME
    scope = "node"
    schema = {"accept_queue_loss": configmod.List({"vhost": str, "name": str})}

    def __init__(self, config, runner=None, audit=None, clock=time.time):
        kwargs = {"audit": audit} if runner is None else {"audit": audit, "runner": runner}
        super().__init__(config, **kwargs)
        self.rmq = rabbitmq.settings(config)
        self.clock = clock
        self.ctx = {}                 # what plan() learnt; reach/invariants/steps read it

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("target", help="the node's name: rabbitmq.node, else the node api_url runs on")

    # -- the target ---------------------------------------------------------------------
    def target_node(self):
        """rabbitmq.node (or --node's equivalents), else the node the configured
        API runs on; never rabbitmq-env.conf or the hostname (the machine's own
        broker is not a default target)."""
        node = self.rmq.explicit_node
        if node:
            return node
        try:
            node = (self.rmq.api().get("overview", columns="node") or {}).get("node")
        except rabbitmq.ApiError as exc:
            raise Refused("target", f"rabbitmq.node is not set and the API at {self.rmq.api_url} "
                          f"cannot say which node it runs on ({exc}): set rabbitmq.node") from None
        if not node:
            raise Refused("target", f"rabbitmq.node is not set and {self.rmq.api_url} names no node")
        return node

    def allowlist(self):
        return {self.target_node(): {}}

    def listed(self, name):
        # Without rabbitmq.node the target is the node the configured API runs on:
        # only a probe of that (configured) API can tell; resolve() does it.
        explicit = self.rmq.explicit_node
        return bool(name) and (name == explicit if explicit else True)

    def resolve(self, name):
        node = self.target_node()
        if name != node:
            raise Refused("allowlist", f"{name!r} is not this node ({node!r}): a node is only "
                          "remediated by itself, named in rabbitmq.node")
        named = self.rmq.node_env.get("RABBITMQ_NODENAME")
        if named and named != node:
            raise Refused("target", f"node_env.RABBITMQ_NODENAME is {named!r}, not {node!r}")
        self.rmq.data["node"] = node          # paths (mnesia, pid, log) follow the target
        return node

    # -- the check, in process, with this configuration --------------------------------
    def probe(self, extra=()):
        from autoremedy.contract import checkrun
        from autoremedy.checks import rabbitmq_node as check
        options = checkrun.options(NAME, ["--node", self.rmq.node_name, *extra], check)
        settings = rabbitmq.settings(self.config)
        return checkrun.call(check, self.config, options, NAME, settings=settings, runner=self.runner)

    def ctl(self, tool, *args, node=None, timeout=60.0, input=None):
        return rabbitmq.run_ctl(self.rmq, tool, *args, node=node, runner=self.runner,
                                timeout=timeout, input=input)

    def running(self, node):
        try:
            return self.ctl("rabbitmq-diagnostics", "check_running", node=node, timeout=20).returncode == 0
        except Exception:
            return False

    def make_api(self, url):
        return rabbitmq.Api(url, self.rmq.user, self.rmq.password, verify=self.rmq.verify,
                            timeout=self.rmq.timeout)

    # -- plan ----------------------------------------------------------------------------
    def plan(self, target):
        current = self.probe()
        state = current.data.get("state")
        self.ctx = {"state": state}
        if current.status is Status.OK:
            return []
        if current.status is Status.UNKNOWN:
            raise Refused("precondition", f"cannot tell the node's state: {current.summary}")
        if state == "partitioned":
            raise Refused("partition", f"{current.summary}; partition map "
                          f"{json.dumps(current.data.get('partitions'), sort_keys=True)}: a human picks "
                          "the partition to trust and restarts the others (docs/rabbitmq.md, Partitions)")
        if state == "not_running":
            membership = self.survey(target, require_peers=True)
            if membership is not None:
                api, where = cluster.api_of(membership, self.rmq, target, self.make_api)
                self.ctx.update(api=api, api_node=where)
            # A node that died without a trace of corruption is started, nothing more;
            # if its boot then fails, the next run sees boot_failed.
            return [Step(f"start {target}: {' '.join(self.rmq.start_command)}", action=self.start)]
        if state == "definitions_lost":
            return self.plan_restore(target, current)
        if state not in RESET_STATES:
            raise Refused("precondition", f"{state}: {current.summary}: not something this "
                          "remediation fixes; a human decides")
        return self.plan_reset(target)

    def survey(self, target, require_peers):
        """Learn the cluster from its members: who they are, who runs, partitions."""
        record = cluster.own_record(self.rmq.mnesia_path)
        recorded = record[0] if record else []
        candidates = [n for n in recorded + list(self.rmq.cluster_nodes) if n != target]
        membership, silent = cluster.learn(self.ctl, target, candidates)
        self.ctx.update(record=recorded, membership=membership)
        configured = set(self.rmq.cluster_nodes)
        if membership is None:
            if candidates and require_peers:
                raise Refused("quorum", f"no other member of {target}'s cluster answers ("
                              + "; ".join(f"{n}: {why}" for n, why in sorted(silent.items()))
                              + "): the cluster is down, not one node; the start order is a human's call")
            if configured and configured != {target}:
                raise Refused("membership", f"rabbitmq.cluster_nodes lists {', '.join(sorted(configured))} "
                              f"but {target} records no cluster and no member answers")
            return None
        if target not in membership.members:
            raise Refused("membership", f"{target} is not a member of the cluster: "
                          f"{membership.describe()}")
        if configured and configured != membership.members:
            raise Refused("membership", f"rabbitmq.cluster_nodes ({', '.join(sorted(configured))}) "
                          f"differs from the cluster's own view: {membership.describe()}")
        if membership.partitions:
            raise Refused("partition", "unresolved partition, map "
                          + json.dumps(membership.partitions, sort_keys=True)
                          + f" (as {membership.source} report): a human heals it first")
        return membership

    def plan_reset(self, target):
        from autoremedy.checks.rabbitmq_node import load_baseline, load_ledger
        membership = self.survey(target, require_peers=True)
        ledger = load_ledger(self.rmq, target)
        accepted = self.settings.get("accept_queue_loss") or []
        if membership is None:
            baseline = load_baseline(self.rmq.baseline_path)
            if baseline is None:
                raise Refused("baseline", f"no definitions baseline at {self.rmq.baseline_path}: "
                              "a reset would lose every vhost, user and queue")
            rows = cluster.standalone_rows(baseline, ledger, target)
            self.ctx.update(mode="standalone", rows=rows)
        else:
            if target in membership.running:
                raise Refused("running", f"the cluster says {target} is running ({membership.describe()}): "
                              "a running node is never reset")
            down = len(membership.members - membership.running)
            if down * 2 > len(membership.members):
                raise Refused("quorum", f"{down} of {len(membership.members)} cluster nodes are down "
                              f"({membership.describe()}): that is an outage, not one bad node")
            discs = sorted((membership.disc & membership.running) - {target})
            if not discs:
                raise Refused("disc_node", f"no other running disc node ({membership.describe()}): "
                              f"the cluster's data would rest on RAM nodes only")
            api, where = cluster.api_of(membership, self.rmq, target, self.make_api)
            if api is None:
                raise Refused("data_at_risk", f"cannot list the queues {target} holds: no running "
                              f"member's management API answers ({where})")
            try:
                rows = cluster.list_queues(api)
            except rabbitmq.ApiError as exc:
                raise Refused("data_at_risk", f"cannot list the queues {target} holds: {exc}") from None
            self.ctx.update(mode="rejoin", peer=discs[0], api=api, api_node=where, rows=rows)
        at_risk, allowed, regrow = cluster.assess(rows, target, ledger, accepted, clock=self.clock)
        self.ctx.update(at_risk=at_risk, allowed=allowed, regrow=regrow)
        self.refuse_data_at_risk(target, at_risk)
        return self.reset_steps(target)

    def refuse_data_at_risk(self, target, at_risk):
        """Nothing that lives only on this node is discarded unless named in
        accept_queue_loss: the refusal names every such queue with its count."""
        if at_risk:
            raise Refused("data_at_risk", f"a reset of {target} would lose what only it holds: "
                          + "; ".join(cluster.describe(e) for e in at_risk)
                          + ". Repair the node without a reset (docs/rabbitmq.md, 'What a reset can "
                          "lose'), or name these queues in remediations.rabbitmq-node.accept_queue_loss")

    def reset_steps(self, target):
        ctx = self.ctx
        named = [cluster.describe(e) + f": {e.get('why')}" for e in ctx["allowed"]]
        steps = []
        if ctx["mode"] == "rejoin":
            steps.append(Step(f"export the cluster's definitions from {ctx['api_node']} to a snapshot "
                              "(GET /api/definitions)", action=self.snapshot_cluster))
        else:
            steps.append(Step(f"keep the definitions baseline {self.rmq.baseline_path} as the snapshot",
                              action=self.snapshot_baseline))
        steps.append(Step(f"stop {target} (its boot is broken: end the beam process)", action=self.stop))
        steps.append(Step(f"move {self.rmq.mnesia_path} aside (kept, never deleted)",
                          action=self.move_aside, details=[self.rmq.mnesia_path] + named))
        steps.append(Step(f"start {target}: {' '.join(self.rmq.start_command)}", action=self.start))
        if ctx["mode"] == "rejoin":
            steps.append(Step(f"forget {target} on {ctx['peer']}, then reset and join_cluster {ctx['peer']}",
                              action=self.rejoin))
            if ctx["regrow"]:
                steps.append(Step(f"add {target} back to the replicas of {len(ctx['regrow'])} queue(s)",
                                  action=self.regrow, details=[cluster.describe(e) for e in ctx["regrow"]]))
        # Imported through the running disc peer (the node that forgot the target).
        where = ctx["peer"] if ctx["mode"] == "rejoin" else target
        steps.append(Step(f"import the snapshot on {where}", action=lambda: self.restore(where)))
        return steps

    def plan_restore(self, target, current):
        """A running node that lost vhosts or users: import only what is missing."""
        from autoremedy.checks.rabbitmq_node import load_baseline
        gone = current.data.get("vanished") or {}
        if not gone.get("vhosts") and not gone.get("users"):
            raise Refused("precondition", f"{current.summary}: only the queue count dropped, the vhosts "
                          "and users are all there; that is not a lost database (deleted by someone? "
                          "`autoremedy check rabbitmq-node --accept-definitions` after an intended "
                          "deletion); a running node is never reset")
        baseline = load_baseline(self.rmq.baseline_path)
        live = self.export(None)
        doc, names = cluster.missing_definitions(baseline, live)
        if not names:
            raise Refused("precondition", "the check saw definitions vanish, but every object of the "
                          "baseline is there now")
        membership = self.survey(target, require_peers=False) if len(current.data.get("nodes") or {}) > 1 \
            else None
        self.ctx.update(mode="restore", missing=doc, missing_names=names, membership=membership)
        kinds = {}
        for name in names:
            kinds[name.split(" ", 1)[0]] = kinds.get(name.split(" ", 1)[0], 0) + 1
        return [Step("export the live definitions to a snapshot", action=lambda: self.snapshot(None)),
                Step("import the baseline's missing definitions ("
                     + ", ".join(f"{n} {k}(s)" for k, n in sorted(kinds.items())) + ")",
                     action=self.import_missing, details=names[:50])]

    # -- no harm: what the run may change, what must survive ---------------------------
    def reach(self, target, plan):
        ctx = self.ctx
        reaches = [Reach("node", [target], read=self.read_nodes, how=self.nodes_how())]
        if ctx.get("mode") == "restore":
            reaches.append(Reach("definition", ctx["missing_names"], read=self.read_definitions,
                                 how=f"rabbitmqctl -n {target} export_definitions -"))
        elif ctx.get("api") is not None:
            names = [cluster.key(e["vhost"], e["name"]) for e in ctx.get("allowed", []) + ctx.get("regrow", [])]
            reaches.append(Reach("queue", names, read=self.read_queue_presence, how=self.queues_how()))
        elif ctx.get("mode") == "standalone":
            # Every queue of a standalone node is homed on it and named here (empty
            # or accepted); with the node down there is nothing else to list.
            reaches.append(Reach("queue", [cluster.key(e["vhost"], e["name"]) for e in ctx["allowed"]],
                                 how="standalone: every queue is on the target"))
        return reaches

    def invariants(self, target, plan):
        ctx = self.ctx
        out = []
        if ctx.get("membership") is not None:
            out.append(Invariant("membership of the other nodes", self.nodes_how(),
                                 lambda: self.read_members(target)))
            out.append(Invariant("running nodes other than the target", self.nodes_how(),
                                 lambda: self.read_running(target),
                                 holds=lambda b, a: b is not None and a is not None and set(b) <= set(a),
                                 rule="still running"))
        if ctx.get("api") is not None or ctx.get("mode") == "restore":
            held = ctx.get("allowed", []) + ctx.get("at_risk", [])
            names = {cluster.key(e["vhost"], e["name"]) for e in held}
            out.append(Invariant("messages in every queue outside the plan", self.queues_how(),
                                 lambda: self.read_messages(exclude=names), holds=not_fewer_each,
                                 rule="each present, not fewer"))
        for entry in ctx.get("at_risk", []):
            # Only a run that skipped the refusal gets here (the data_at_risk guard
            # refuses otherwise): each such queue is held to its last count.
            name = cluster.key(entry["vhost"], entry["name"])
            out.append(Invariant.not_fewer(
                f"messages in {cluster.describe(entry)}",
                self.queues_how() + ", else the check's last reading while its home is down",
                lambda name=name: self.queue_count(name)))
        return out

    def nodes_how(self):
        m = self.ctx.get("membership")
        if m is None:
            return f"rabbitmq-diagnostics -n {self.rmq.node_name} check_running"
        return f"rabbitmqctl -n {sorted(m.running - {self.rmq.node_name})[0]} cluster_status"

    def queues_how(self):
        api = self.ctx.get("api")
        url = api.url if api is not None else self.rmq.api_url
        return f"GET {url}/api/queues?disable_stats=true&enable_queue_totals=true (one listing)"

    def status_now(self):
        """cluster_status of a running member other than the target, at most 2 s old
        (the reach and both invariants read it: one CLI call, not three)."""
        cached = self.ctx.get("status_cache")
        if cached and time.monotonic() - cached[0] < 2.0:
            return cached[1]
        m = self.ctx["membership"]
        target = self.rmq.node_name
        for node in sorted(m.running - {target}) + sorted(m.members - m.running - {target}):
            status, _ = cluster.ask(self.ctl, node)
            if status is not None:
                self.ctx["status_cache"] = (time.monotonic(), status)
                return status
        raise RuntimeError("no member other than the target answers cluster_status")

    def read_nodes(self):
        if self.ctx.get("membership") is None:
            return {self.rmq.node_name: "running" if self.running(None) else "stopped"}
        status = self.status_now()
        running = set(status.get("running_nodes") or [])
        members = set(status.get("disk_nodes") or []) | set(status.get("ram_nodes") or [])
        return {n: "running" if n in running else "stopped" for n in members | running}

    def read_members(self, target):
        status = self.status_now()
        return {"disc": sorted(set(status.get("disk_nodes") or []) - {target}),
                "ram": sorted(set(status.get("ram_nodes") or []) - {target})}

    def read_running(self, target):
        return sorted(set(self.status_now().get("running_nodes") or []) - {target})

    def listing(self):
        """{queue key: row} from one listing, at most 2 s old (the queue reach and
        the invariants read it together). Restore mode reads with the CLI: the
        API user may have vanished with the definitions (401)."""
        cached = self.ctx.get("listing_cache")
        if cached and time.monotonic() - cached[0] < 2.0:
            return cached[1]
        if self.ctx.get("mode") == "restore":
            rows = self.list_queues_cli()
        else:
            rows = cluster.list_queues(self.ctx.get("api") or self.rmq.api())
        listing = {cluster.key(r.get("vhost"), r.get("name")): r for r in rows}
        self.ctx["listing_cache"] = (time.monotonic(), listing)
        return listing

    def list_queues_cli(self):
        done = self.ctl("rabbitmqctl", "list_vhosts", "name", "--formatter", "json", timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"list_vhosts: {done.brief() or done.returncode}")
        rows = []
        for vhost in [v["name"] for v in json.loads(done.stdout)]:
            done = self.ctl("rabbitmqctl", "list_queues", "-p", vhost, "name", "messages", "state",
                            "--formatter", "json", timeout=60)
            if done.returncode != 0:
                raise RuntimeError(f"list_queues -p {vhost}: {done.brief() or done.returncode}")
            for row in json.loads(done.stdout):
                count = row.get("messages")
                rows.append({"vhost": vhost, "name": row.get("name"), "state": row.get("state"),
                             "messages": count if isinstance(count, int) else None})
        return rows

    def read_queue_presence(self):
        return {k: {"type": r.get("type"), "durable": r.get("durable"),
                    "home": r.get("node") if r.get("type") not in cluster.REPLICATED else None}
                for k, r in self.listing().items()}

    def read_messages(self, exclude=(), settle=15.0):
        """{queue: messages}. The first call is the reading before the run. After
        it, a replicated queue that reads fewer messages than before is read again
        for up to ``settle`` seconds: a quorum queue whose leader just moved reads
        0 for a moment (measured: after a member's restart, with a leader listed).
        A real loss stays a loss and is reported once the time is up."""
        before = self.ctx.get("messages_before")
        deadline = time.monotonic() + settle
        while True:
            listing = self.listing()
            now = {k: r.get("messages") for k, r in listing.items() if k not in exclude}
            if before is None:
                self.ctx["messages_before"] = now
                return now
            dropped = [k for k, count in before.items() if count is not None
                       and listing.get(k, {}).get("type") in cluster.REPLICATED
                       and (now.get(k) is None or now[k] < count)]
            if not dropped or time.monotonic() >= deadline:
                return now
            self.ctx.pop("listing_cache", None)
            time.sleep(1.0)

    def queue_count(self, name):
        """One queue's count now; while its home is down, the check's last reading."""
        from autoremedy.checks.rabbitmq_node import load_ledger
        row = self.listing().get(name)
        if row is None:
            return None
        if row.get("state") == "down" or row.get("messages") is None:
            for seen in load_ledger(self.rmq, self.rmq.node_name).get("queues", []):
                if cluster.key(seen.get("vhost"), seen.get("name")) == name:
                    return seen.get("messages")
        return row.get("messages")

    def read_definitions(self):
        return {k: v for k, v in cluster.definition_keys(self.export(None)).items()}

    # -- steps ---------------------------------------------------------------------------
    def export(self, node):
        done = self.ctl("rabbitmqctl", "export_definitions", "-", node=node, timeout=60)
        if done.returncode != 0 or not done.stdout.strip().startswith("{"):
            raise RemediationError(f"export_definitions on {node or self.rmq.node_name}: "
                                   f"{done.brief() or done.returncode}")
        return json.loads(done.stdout)

    def _snapshot_path(self):
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self.clock()))
        return os.path.join(self.rmq.state_dir, "rabbitmq", "snapshots", f"{self.rmq.node_name}-{stamp}.json")

    def snapshot(self, node):
        """Export the definitions (of the cluster, from ``node``) before anything
        moves; the import after the run reads this file."""
        from autoremedy import statefile
        definitions = self.export(node)
        path = self._snapshot_path()
        statefile.write_atomic(path, json.dumps(definitions).encode(), mode=0o600)
        self.ctx["snapshot"] = path
        return f"snapshot {path}"

    def snapshot_cluster(self):
        """The cluster's definitions through the management API: measured on
        3.10.8, ``GET /api/definitions`` lists the queues whose home node is down
        and ``rabbitmqctl export_definitions`` leaves them out — a snapshot
        without them could never put back a queue the run removed."""
        from autoremedy import statefile
        definitions = self.ctx["api"].definitions()
        if not isinstance(definitions, dict) or "queues" not in definitions:
            raise RemediationError("GET /api/definitions: not a definitions export")
        path = self._snapshot_path()
        statefile.write_atomic(path, json.dumps(definitions).encode(), mode=0o600)
        self.ctx["snapshot"] = path
        return f"snapshot {path} ({len(definitions['queues'])} queues)"

    def snapshot_baseline(self):
        from autoremedy import statefile
        with open(self.rmq.baseline_path, "rb") as handle:
            data = handle.read()
        path = self._snapshot_path()
        statefile.write_atomic(path, data, mode=0o600)
        self.ctx["snapshot"] = path
        return f"snapshot {path}"

    def stop(self):
        from autoremedy.checks.rabbitmq_node import find_beam
        proc = find_beam(self.rmq)
        if proc is None:
            return "no beam process left"
        import psutil
        try:
            proc.kill()                                # SIGKILL: a hung boot ignores anything softer
            proc.wait(timeout=15)
        except psutil.NoSuchProcess:
            return f"beam pid {proc.pid} already gone"
        except psutil.TimeoutExpired:
            raise RemediationError(f"beam pid {proc.pid} survived SIGKILL for 15s") from None
        return f"beam pid {proc.pid} killed"

    def move_aside(self):
        src = self.rmq.mnesia_path
        if not os.path.isdir(src):
            return f"{src} does not exist: nothing to move"
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self.clock()))
        dest = f"{src}.corrupt-{stamp}"
        n = 1
        while os.path.exists(dest):
            n += 1
            dest = f"{src}.corrupt-{stamp}-{n}"
        os.rename(src, dest)
        return f"moved to {dest}"

    def start(self):
        from autoremedy.contract import execute
        argv = list(self.rmq.start_command)
        # The node's own name in the environment: without it rabbitmq-server
        # would start the machine's default node, not the target.
        env = {**self.rmq.node_env, "RABBITMQ_NODENAME": self.rmq.node_name}
        try:
            done = self.runner(argv, timeout=60, env=env)
        except execute.CommandError as exc:
            raise RemediationError(f"start: {exc}") from None
        if done.returncode not in (0, None):
            raise RemediationError(f"start: exit {done.returncode}: {done.brief()}")
        limit = 3 * self.rmq.boot_timeout
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.running(None):
                return f"running after {limit - (deadline - time.monotonic()):.1f}s"
            time.sleep(0.5)
        raise RemediationError(f"{self.rmq.node_name} did not start within {limit:g}s")

    def rejoin(self):
        me, peer = self.rmq.node_name, self.ctx["peer"]
        forget = self.ctl("rabbitmqctl", "forget_cluster_node", me, node=peer, timeout=60)
        if forget.returncode != 0:
            raise RemediationError(f"forget_cluster_node {me} on {peer}: exit {forget.returncode}: "
                                   f"{forget.brief()}")
        for args in (("stop_app",), ("reset",), ("join_cluster", peer), ("start_app",)):
            done = self.ctl("rabbitmqctl", *args, timeout=120)
            if done.returncode != 0:
                raise RemediationError(f"rabbitmqctl {' '.join(args)}: exit {done.returncode}: "
                                       f"{done.brief()}")
        return f"forgotten on {peer}; joined {peer}"

    def regrow(self):
        """Add the node back to exactly the replicated queues it held (never
        ``grow ... all``: that would reach queues the plan does not name)."""
        me, done_names = self.rmq.node_name, []
        for entry in self.ctx["regrow"]:
            tool, verb = (("rabbitmq-streams", "add_replica") if entry["type"] == "stream"
                          else ("rabbitmq-queues", "add_member"))
            done = self.ctl(tool, verb, "--vhost", entry["vhost"], entry["name"], me, timeout=60)
            if done.returncode != 0:
                raise RemediationError(f"{tool} {verb} {entry['name']}: exit {done.returncode}: "
                                       f"{done.brief()}")
            done_names.append(entry["name"])
        return "replica back on " + ", ".join(done_names)

    def restore(self, node=None):
        path = self.ctx.get("snapshot") or self.rmq.baseline_path
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise RemediationError(f"snapshot {path}: {exc.strerror}") from None
        done = self.ctl("rabbitmqctl", "import_definitions", node=node, timeout=120, input=text)
        if done.returncode != 0:
            raise RemediationError(f"import_definitions: exit {done.returncode}: {done.brief()}")
        return f"imported {path}"

    def import_missing(self):
        done = self.ctl("rabbitmqctl", "import_definitions", timeout=120,
                        input=json.dumps(self.ctx["missing"]))
        if done.returncode != 0:
            raise RemediationError(f"import_definitions: exit {done.returncode}: {done.brief()}")
        return f"imported {len(self.ctx['missing_names'])} missing object(s)"

    # -- verify ----------------------------------------------------------------------------
    def verify(self, target):
        return self.poll(self.probe, self.settings.get("verify_timeout", 60.0), interval=1.0)


def not_fewer_each(before, after):
    """Every queue read before is still there, with at least as many messages
    (a count unknown before — a queue whose home was down — only has to exist)."""
    if before is None or after is None:
        return False
    for name, count in before.items():
        if name not in after:
            return False
        if count is not None and (after[name] is None or after[name] < count):
            return False
    return True


REMEDIATION = ResetNode
