"""Corrupted mnesia: move the node's database aside, start it fresh, rejoin or restore definitions.

Runs on the failing node, for the node named in ``rabbitmq.node`` only::

    rabbitmq:
      node: rabbit@ctl1
      cluster_nodes: [rabbit@ctl1, rabbit@ctl2, rabbit@ctl3]    # empty: standalone
      start_command: [rabbitmq-server, -detached]               # or [systemctl, start, rabbitmq-server]
      definitions_baseline: /var/lib/autoremedy/rabbitmq/rabbit@ctl1.definitions.json
    remediations:
      rabbitmq-node: {enabled: true, verify_timeout: 90s}

    $ autoremedy remediate rabbitmq-node rabbit@ctl1 --dry-run

It acts only when the rabbitmq-node check says the node is broken in a way a
reset fixes (boot failed, stuck booting, definitions lost, not running). The plan:

1. export the live definitions to a snapshot when the node still answers;
2. stop the app (``rabbitmqctl stop_app``) when it runs, then end the node's own
   beam process (found by pid file or its exact ``RABBITMQ_NODENAME``; a boot
   that hangs ignores ``rabbitmqctl stop``, and its data is being discarded);
3. move the mnesia directory aside to ``<dir>.corrupt-<time>`` (never deleted);
4. start the node with ``start_command`` and wait until it runs;
5. cluster member: ``forget_cluster_node`` on a healthy peer, then ``stop_app;
   reset; join_cluster <peer>; start_app`` here (the definitions come from the
   peer); standalone: ``rabbitmqctl import_definitions`` of the baseline (read on
   stdin, so the CLI needs no access to the baseline file, and no API user);
6. verify: the rabbitmq-node check passes (running, members present, nothing
   vanished from the baseline). Messages in the old store are not restored.

Refused (escalated) when the state is not one a reset fixes (partition, alarms,
exhausted descriptors: a human decides), when most of the cluster is down,
when no other disc node runs, or, standalone, when there is no baseline.
"""
import os
import time

from autoremedy import rabbitmq
from autoremedy.guard import Refused
from autoremedy.remediation import Remediation, RemediationError, Step
from autoremedy.result import Status

NAME = "rabbitmq-node"


class ResetNode(Remediation):
    name = NAME
    scope = "node"
    schema = {}                        # the node's settings live in rabbitmq:

    def __init__(self, config, runner=None, audit=None, clock=time.time):
        kwargs = {"audit": audit} if runner is None else {"audit": audit, "runner": runner}
        super().__init__(config, **kwargs)
        self.rmq = rabbitmq.settings(config)
        self.clock = clock
        self.mode = None
        self.peer = None

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("target", help="this node's name, as in rabbitmq.node")

    def allowlist(self):
        return {self.rmq.node_name: {}}

    def resolve(self, name):
        if name != self.rmq.node_name:
            raise Refused("allowlist", f"{name!r} is not this node (rabbitmq.node is "
                          f"{self.rmq.node_name!r}): a node is only reset by itself")
        return name

    # -- the check, in process, with this configuration --------------------------------
    def probe(self, extra=()):
        from autoremedy.checks import rabbitmq_node as check
        from autoremedy.cli import check_parser
        from autoremedy.ranges import Range
        from autoremedy.runtime import guarded_result
        args = check_parser(check, NAME).parse_args(["--node", self.rmq.node_name, *extra])
        args.warning, args.critical = Range.parse(args.warning), Range.parse(args.critical)
        settings = rabbitmq.settings(self.config)
        return guarded_result(NAME, lambda: check.check(args, settings=settings, runner=self.runner),
                              args.timeout)

    def ctl(self, tool, *args, node=None, timeout=60.0, input=None):
        return rabbitmq.run_ctl(self.rmq, tool, *args, node=node, runner=self.runner,
                                timeout=timeout, input=input)

    def running(self, node):
        try:
            return self.ctl("rabbitmq-diagnostics", "check_running", node=node, timeout=20).returncode == 0
        except Exception:
            return False

    # -- plan ----------------------------------------------------------------------------
    def plan(self, target):
        from autoremedy.checks.rabbitmq_node import BROKEN
        current = self.probe()
        state = current.data.get("state")
        if current.status is Status.OK:
            return []
        if current.status is Status.UNKNOWN:
            raise Refused("precondition", f"cannot tell the node's state: {current.summary}")
        if state not in BROKEN:
            raise Refused("precondition", f"{state}: {current.summary}: not something a reset "
                          "fixes; a human decides")
        if state == "not_running":
            # A node that died without a trace of corruption is started, nothing more;
            # if its boot then fails, the next run sees boot_failed and resets it.
            return [Step(f"start {target}: {' '.join(self.rmq.start_command)}", action=self.start)]
        self.preconditions(state)
        steps = []
        if state == "definitions_lost":
            steps.append(Step("export the live definitions to a snapshot", action=self.snapshot))
        steps.append(Step(f"stop {target}" + (" (stop_app first)" if state == "definitions_lost" else
                                               " (its boot is broken: end the beam process)"),
                          action=lambda: self.stop(graceful=state == "definitions_lost")))
        steps.append(Step(f"move {self.rmq.mnesia_path} aside (kept, never deleted)",
                          action=self.move_aside, details=[self.rmq.mnesia_path]))
        steps.append(Step(f"start {target}: {' '.join(self.rmq.start_command)}", action=self.start))
        if self.mode == "rejoin":
            steps.append(Step(f"forget {target} on {self.peer}, then reset and join_cluster {self.peer}",
                              action=self.rejoin))
        else:
            steps.append(Step(f"import the definitions baseline {self.rmq.baseline_path}",
                              action=self.restore, details=[self.rmq.baseline_path]))
        return steps

    def preconditions(self, state):
        """Refuse when a reset could lose the cluster's data or fight a wider outage."""
        me = self.rmq.node_name
        peers = [n for n in self.rmq.cluster_nodes if n != me]
        if not peers:
            if not os.path.exists(self.rmq.baseline_path):
                raise Refused("baseline", f"no definitions baseline at {self.rmq.baseline_path}: "
                              "a reset would lose every vhost, user and queue")
            self.mode = "standalone"
            return
        up = [p for p in peers if self.running(p)]
        down = len(self.rmq.cluster_nodes) - len(up)          # this node counts as down
        if down * 2 > len(self.rmq.cluster_nodes):
            raise Refused("quorum", f"{down} of {len(self.rmq.cluster_nodes)} cluster nodes are down: "
                          "most of the cluster is down, that is an outage, not one bad node")
        disc = self.disc_peers(up)
        if not disc:
            raise Refused("disc_node", f"no other running disc node ({', '.join(up)} are RAM nodes): "
                          f"{me} is the only running disc node")
        self.mode, self.peer = "rejoin", disc[0]

    def disc_peers(self, up):
        import json
        for peer in up:
            done = self.ctl("rabbitmqctl", "cluster_status", "--formatter", "json", node=peer, timeout=30)
            if done.returncode != 0:
                continue
            try:
                status = json.loads(done.stdout)
            except ValueError:
                continue
            discs = set(status.get("disk_nodes") or [])
            running = set(status.get("running_nodes") or [])
            return [p for p in up if p in discs and p in running]
        return []

    # -- steps ---------------------------------------------------------------------------
    def snapshot(self):
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self.clock()))
        path = os.path.join(self.rmq.state_dir, "rabbitmq", "snapshots",
                            f"{self.rmq.node_name}-{stamp}.json")
        done = self.ctl("rabbitmqctl", "export_definitions", "-", timeout=60)
        if done.returncode != 0 or not done.stdout.strip().startswith("{"):
            return f"node did not export its definitions ({done.brief() or done.returncode}): no snapshot"
        from autoremedy import statefile
        statefile.write_atomic(path, done.stdout.encode(), mode=0o600)
        return f"snapshot {path}"

    def stop(self, graceful):
        from autoremedy.checks.rabbitmq_node import find_beam
        notes = []
        if graceful:
            try:
                done = self.ctl("rabbitmqctl", "stop_app", timeout=60)
                notes.append(f"stop_app: {'ok' if done.returncode == 0 else 'exit ' + str(done.returncode)}")
            except Exception as exc:                  # a hung node: the kill below ends it
                notes.append(f"stop_app failed: {exc}")
        proc = find_beam(self.rmq)
        if proc is None:
            notes.append("no beam process left")
            return "; ".join(notes)
        import psutil
        try:
            proc.kill()                                # SIGKILL: a hung boot ignores anything softer
            proc.wait(timeout=15)
            notes.append(f"beam pid {proc.pid} killed")
        except psutil.NoSuchProcess:
            notes.append(f"beam pid {proc.pid} already gone")
        except psutil.TimeoutExpired:
            raise RemediationError(f"beam pid {proc.pid} survived SIGKILL for 15s") from None
        return "; ".join(notes)

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
        from autoremedy import execute
        argv = list(self.rmq.start_command)
        try:
            done = self.runner(argv, timeout=60, env=dict(self.rmq.node_env))
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
        me, peer = self.rmq.node_name, self.peer
        forget = self.ctl("rabbitmqctl", "forget_cluster_node", me, node=peer, timeout=60)
        notes = [f"forget_cluster_node on {peer}: "
                 + ("ok" if forget.returncode == 0 else f"exit {forget.returncode} ({forget.brief(120)})")]
        for args in (("stop_app",), ("reset",), ("join_cluster", peer), ("start_app",)):
            done = self.ctl("rabbitmqctl", *args, timeout=120)
            if done.returncode != 0:
                raise RemediationError(f"rabbitmqctl {' '.join(args)}: exit {done.returncode}: "
                                       f"{done.brief()}")
        notes.append(f"joined {peer}")
        return "; ".join(notes)

    def restore(self):
        path = self.rmq.baseline_path
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise RemediationError(f"baseline {path}: {exc.strerror}") from None
        done = self.ctl("rabbitmqctl", "import_definitions", timeout=120, input=text)
        if done.returncode != 0:
            raise RemediationError(f"import_definitions: exit {done.returncode}: {done.brief()}")
        return f"imported {path}"

    # -- verify ----------------------------------------------------------------------------
    def verify(self, target):
        return self.poll(self.probe, self.settings.get("verify_timeout", 60.0), interval=1.0)


REMEDIATION = ResetNode
