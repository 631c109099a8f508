"""Fix what is safe to fix between Nova and reality on this node; escalate the rest with evidence.

Dry-run by default: set ``dry_run: false`` to let it act. Configuration::

    remediations:
      openstack-consistency:
        enabled: true
        dry_run: false                  # default true: plan only
        targets: {cmp1: {}}             # this node's Nova host name ...
        host_patterns: ["cmp*"]         # ... or a pattern
        actions: [stop, reset-active, restart-agent, restart-compute]
        verify_timeout: 30s             # how long the verification waits for Nova to catch up

The host is this node's (``openstack.consistency.host``, else its hostname): a
target naming another host is refused, whatever the allowlist says — libvirt
here shows this node only, and a repair planned from another node's view
harms (issue 25).

What it automates (docs/openstack.md states each repair's preconditions):

- ``stop``: an instance ACTIVE in Nova whose domain is shut off here, while the
  host's nova-compute is up and consuming its queue; ``os-stop`` only records
  reality (what Nova's own power-state sync does), the VM is already off;
- ``reset-active``: an ACTIVE instance with a running domain whose task state is
  proven stuck (checks/_openstack_inflight.py): ``os-resetState`` to active;
- ``restart-agent``: a Neutron agent of this host that is not alive, by its
  unit in ``openstack.consistency.agent_units`` (``systemctl restart``);
- ``restart-compute``: an instance proven stuck ``deleting``: restarting
  nova-compute makes ``_init_instance`` resume the delete — refused while any
  other operation is in flight on the host (a task state, a migration), each
  listed. The instances whose delete it resumes are its reach, each planned
  gone: verified only once they are no longer listed, and no other instance may
  go (the instance count excepts exactly them).

Never: a reset to ERROR (it hides the fault and ends the user's operation: a
stuck task whose only reset is ERROR escalates), any repair while the host's
nova-compute is down (the run is skipped: the compute-node class owns that
incident, and a cast to a dead compute is never received), anything while an
operation may still be in progress ("waiting on <host>'s compute").

Everything else (a VM running here while Nova places it elsewhere, domains Nova
does not know, missing domains, SHUTOFF-but-running, ERROR instances, DOWN
ports, volumes stuck detaching) is never touched: the evidence goes to
``<state_dir>/evidence/<host>-<time>.json`` and the verification, which re-runs
the check, fails, so the outcome escalates with it. "Verified" needs the check
to pass and every repaired instance in its planned state.
"""
import fnmatch
import json
import os
import re
import time

from autoremedy import config as configmod
from autoremedy import statefile
from autoremedy.contract.guard import Refused, Skip
from autoremedy.contract.noharm import Invariant, Reach
from autoremedy.contract.remediation import Remediation, RemediationError, Step
from autoremedy.contract.result import Status

ACTIONS = ("stop", "reset-active", "restart-agent", "restart-compute")
RETIRED = {"reset-error": "a reset to ERROR is never a repair (it hides the fault): remove it"}
HOSTNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
# The state each repair must leave its instance in, with no task state; None: gone (the
# delete that a nova-compute restart resumes has completed, the instance is no longer listed).
LANDS = {"stop": "stopped", "reset-active": "active", "restart-compute": None}


class Reconcile(Remediation):
    name = "openstack-consistency"
    scope = "node"
    schema = {
        "targets": configmod.Map(configmod.Any),
        "host_patterns": configmod.List(str),
        "actions": configmod.List(str),
    }

    def __init__(self, config, runner=None, audit=None, conn=None):
        from autoremedy.contract import execute
        super().__init__(config, runner or execute.run, audit)
        self._conn = conn
        self._planned = {}        # server id -> the repair the plan makes to it
        self._units = []          # what the plan restarts (not listable through an API)
        self._world = None        # the last instance listing (the invariants reuse it)
        self.conf()       # validate openstack.consistency now (`autoremedy config check`)
        for action in self.settings.get("actions") or []:
            if action in RETIRED:
                raise configmod.ConfigError(f"remediations.{self.name}.actions: {action!r}: "
                                            f"{RETIRED[action]}")
            if action not in ACTIONS:
                raise configmod.ConfigError(f"remediations.{self.name}.actions: {action!r} is not "
                                            f"one of {', '.join(ACTIONS)}")

    @property
    def dry_run(self):
        # Dry-run first: acting needs an explicit dry_run: false.
        return self.config.dry_run or bool(self.settings.get("dry_run", True))

    def conn(self):
        if self._conn is None:
            from autoremedy.clients.cloud import connect
            self._conn = connect(self.config)
        return self._conn

    def conf(self):
        """openstack.consistency, whose ``host`` is this node's: never the target's."""
        from autoremedy.checks.openstack_consistency import settings
        return settings(self.config)

    def listed(self, name):
        return bool(name and HOSTNAME.match(name)) and name == self.conf()["host"] \
            and self._in_allowlist(name)

    def _in_allowlist(self, name):
        return name in (self.settings.get("targets") or {}) or any(
            fnmatch.fnmatchcase(name, p) for p in self.settings.get("host_patterns") or [])

    def resolve(self, name):
        if not name or not HOSTNAME.match(name):
            raise Refused("allowlist", f"{name!r} is not a host name")
        own = self.conf()["host"]
        if name != own:
            raise Refused("host", f"{name!r} is not this node's Nova host {own!r} "
                                  "(openstack.consistency.host, else the hostname): libvirt here "
                                  "shows this node only; run it on that node")
        if not self._in_allowlist(name):
            raise Refused("allowlist", f"{name!r} is not in remediations.{self.name}.targets or host_patterns")
        return name

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("target", help="this node's Nova host name (allowlisted)")

    # -- plan ------------------------------------------------------------------------------
    def findings(self, host):
        from autoremedy.checks.openstack_consistency import survey
        conf = self.conf()
        assert conf["host"] == host, (conf["host"], host)   # resolve() refused any other
        return survey(self.conn(), conf, self.runner)

    def plan(self, host):
        from autoremedy.checks.openstack_consistency import AUTO, ESCALATE, WAIT
        seen = self.findings(host)
        found = seen.found
        if seen.compute.down:
            raise Skip("deferred", f"{seen.compute.why}: nothing is repaired while it is down "
                                   "(a cast to it is never received); the compute-node class owns "
                                   "this incident")
        allowed = set(self.settings.get("actions") or ACTIONS)
        conf = self.conf()
        steps, restarts, unfixable = [], set(), []
        self._planned, self._units = {}, []
        for f in found:
            if f.severity != AUTO:
                continue
            if f.action not in allowed:
                unfixable.append(f"{f.subject}: {f.kind}, whose repair {f.action!r} is not in "
                                 f"remediations.{self.name}.actions")
                continue
            if f.action == "stop":
                self._planned[f.subject] = f.action
                steps.append(Step(f"record the real power state of {f.subject}: os-stop (domain already off)",
                                  action=self._server_call("stop_server", f.subject),
                                  details=[f.detail, seen.compute.why]))
            elif f.action == "reset-active":
                self._planned[f.subject] = f.action
                steps.append(Step(f"reset stuck task state of {f.subject} to active",
                                  action=self._server_call("reset_server_state", f.subject, "active"),
                                  details=[f.detail]))
            elif f.action == "restart-agent":
                binary = f.evidence.get("binary")
                unit = conf["agent_units"].get(binary)
                if not unit:
                    unfixable.append(f"dead agent {binary}: no unit for it in "
                                     "openstack.consistency.agent_units")
                    continue
                if unit not in restarts:
                    restarts.add(unit)
                    self._units.append(unit)
                    steps.append(Step(f"restart dead agent {binary}", ["systemctl", "restart", unit],
                                      timeout=120))
            elif f.action == "restart-compute":
                # nova-compute's _init_instance resumes the delete of every instance of the
                # host in task_state 'deleting': these (the in-flight guard refuses any
                # other task state), each one planned to be gone afterwards.
                self._planned[f.subject] = f.action
                argv = conf.get("restart_compute") or ["systemctl", "restart", conf["compute_unit"]]
                if tuple(argv) not in restarts:
                    restarts.add(tuple(argv))
                    self._units.append(" ".join(argv))
                    stuck = [g.subject for g in found
                             if g.severity == AUTO and g.action == "restart-compute"]
                    steps.append(Step(f"restart nova-compute to resume the stuck delete of "
                                      f"{', '.join(stuck)}", argv, timeout=180,
                                      details=self._nothing_in_flight(host, seen, stuck)))
        dangerous = [f for f in found if f.severity == ESCALATE]
        if dangerous:
            steps.append(Step(f"keep evidence of {len(dangerous)} finding(s) a human must resolve",
                              action=lambda: self._evidence(host, dangerous),
                              details=[f"{f.kind}: {f.detail}" for f in dangerous]))
        if not steps and any(f.severity == WAIT for f in found):
            raise Skip("waiting", "; ".join(f.detail for f in found if f.severity == WAIT))
        if not steps and unfixable:
            # An empty plan would read "already healthy": it is not, and no repair is allowed.
            # (With other steps planned, the verify that follows escalates these.)
            raise Refused("not-allowed", "found but not allowed to repair: " + "; ".join(unfixable))
        return steps

    def _nothing_in_flight(self, host, seen, stuck):
        """What a nova-compute restart would interrupt on ``host``, read now: every other
        instance with a task state and every migration from or to it. Refuse while any
        is pending; else say what was looked at."""
        from autoremedy.checks import _openstack_inflight as inflight
        busy = [f"{s.name} ({s.id}): {s.vm_state}/{s.task_state}" for s in seen.servers
                if s.task_state and s.id not in stuck]
        moving = inflight.migrations(self.conn(), host)
        busy += [f"{sid}: {what}" for sid, what in sorted(moving.items()) if sid not in stuck]
        if busy:
            raise Refused("in-flight", f"restarting nova-compute on {host} would interrupt "
                                       f"{len(busy)} operation(s) in flight: " + "; ".join(busy))
        return [f"in flight on {host}: nothing else ({len(seen.servers)} instance(s) read, "
                f"no migration in progress)"]

    def _server_call(self, method, server_id, *args):
        def call():
            from autoremedy.clients.cloud import CloudError, guarded
            try:
                with guarded(f"{method} {server_id}"):
                    getattr(self.conn().compute, method)(server_id, *args)
            except CloudError as exc:
                raise RemediationError(str(exc)) from None
            return "done"
        return call

    def _evidence(self, host, findings):
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = os.path.join(self.config.state_dir, "evidence", f"{host}-{stamp}.json")
        record = {"host": host, "time": stamp, "findings": [f.to_dict() for f in findings]}
        statefile.write_atomic(path, json.dumps(record, indent=2, sort_keys=True).encode())
        return f"evidence in {path}"

    # -- no harm ---------------------------------------------------------------------------
    def reach(self, host, plan):
        """Instances: the ones the plan repairs, each held to the state its repair
        plans (stopped / active, no task state; gone for an instance whose stuck delete
        the nova-compute restart resumes); every other instance of the cloud must keep
        its host, status, task and power state, and stay. Units: the agents and the
        nova-compute the plan restarts (a restart is not listable: the invariants
        and the instance reach guard what it could harm)."""
        expect = {sid: _lands(action) for sid, action in self._planned.items()}
        return [Reach("instance", list(self._planned), read=self._instances, expect=expect,
                      how="GET /servers/detail?all_tenants=True (one listing): host, status, "
                          "vm_state, task_state, power_state"),
                Reach("unit", list(self._units), read=None, how="systemctl restart")]

    def invariants(self, host, plan):
        going = sorted(sid for sid, action in self._planned.items() if LANDS[action] is None)
        count = Invariant.not_fewer("instances in the cloud", "the same server listing",
                                    lambda: len([i for i in self._listing() if i not in going]))
        if going:
            # Only the instances whose delete the restart resumes may go: they are left
            # out of the count (the reach holds each of them to "gone" and every other
            # instance to "unchanged, still there").
            count.rule = (f"not fewer, not counting the {len(going)} instance(s) whose stuck "
                          f"delete the restart resumes: {', '.join(going)}")
        return [count,
                Invariant("instances in ERROR", "the same server listing",
                          lambda: sorted(i for i, s in self._listing().items()
                                         if s["vm_state"] == "error"),
                          holds=lambda before, after: set(after or ()) <= set(before or ()),
                          rule="none added (ERROR is never a repair)")]

    def _instances(self):
        from autoremedy.clients.cloud import guarded
        with guarded("listing every instance"):
            rows = list(self.conn().compute.servers(details=True, all_projects=True))
        self._world = {s.id: {"host": s.compute_host, "status": s.status, "vm_state": s.vm_state,
                              "task_state": s.task_state, "power_state": s.power_state}
                       for s in rows}
        return self._world

    def _listing(self):
        # perform() reads every reach, then every invariant: reuse that one listing.
        return self._world if self._world is not None else self._instances()

    def verify(self, host):
        """The check again, until it passes and every repaired instance is in its planned
        state, or ``verify_timeout`` (Nova's record of a stop lands asynchronously).
        Every repair landed but other findings remain: partial."""
        from autoremedy.contract import checkrun
        from autoremedy.checks.openstack_consistency import judge
        # The check's own options (autoremedy/contract/checkrun.py), every finding counted:
        # verified means nothing left at all, not "under the operator's thresholds".
        args = checkrun.thresholds(checkrun.options("openstack-consistency", ["-w", "0", "-c", "0"]))
        deadline = time.monotonic() + float(self.settings.get("verify_timeout") or 30.0)
        while True:
            seen = self.findings(host)
            result = judge(seen, host, args)
            missed = self._missed(seen)
            if (result.status is Status.OK and not missed) or time.monotonic() >= deadline:
                break
            time.sleep(1.0)
        if missed:
            result.status = Status.CRITICAL
            result.summary = "not in the planned state: " + "; ".join(missed) + "; " + result.summary
        elif result.status is not Status.OK and self._planned:
            result.partial = True
        return result

    def _missed(self, seen):
        """Repaired instances not (yet) in the state their repair plans."""
        by_id = {s.id: s for s in seen.servers}
        out = []
        for sid, action in self._planned.items():
            s = by_id.get(sid)
            if LANDS[action] is None:
                if s is not None:
                    out.append(f"{sid} is still {s.vm_state}/{s.task_state or '-'}, planned "
                               "deleted (its stuck delete resumed by the nova-compute restart)")
                continue
            if s is None:
                out.append(f"{sid} is no longer on this host")
            elif s.vm_state != LANDS[action] or s.task_state is not None:
                out.append(f"{sid} is {s.vm_state}/{s.task_state or '-'}, planned "
                           f"{LANDS[action]}/-")
        return out


def _lands(action):
    """The state a repaired instance must end in: the repair's own, no task left."""
    want = LANDS[action]
    if want is None:
        return lambda before, after: after is None
    return lambda before, after: (after is not None and after["vm_state"] == want
                                  and after["task_state"] is None)


REMEDIATION = Reconcile
