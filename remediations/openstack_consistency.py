"""Fix what is safe to fix between Nova and reality on this node; escalate the rest with evidence.

Dry-run by default: set ``dry_run: false`` to let it act. Configuration::

    remediations:
      openstack-consistency:
        enabled: true
        dry_run: false                  # default true: plan only
        targets: {cmp1: {}}             # this node's Nova host name ...
        host_patterns: ["cmp*"]         # ... or a pattern
        actions: [stop, reset-active, reset-error, restart-agent, restart-compute]

What it automates (reference/openstack.md §4, "Automate? yes"):

- ``stop``: an instance ACTIVE in Nova whose domain is shut off here; ``os-stop``
  only records reality (what Nova's own power-state sync does), the VM is already off;
- ``reset-active`` / ``reset-error``: a task state stuck past the threshold
  (``os-resetState``: active when the domain runs, error otherwise or when building);
- ``restart-agent``: a Neutron agent of this host that is not alive, by its
  unit in ``openstack.consistency.agent_units`` (``systemctl restart``);
- ``restart-compute``: an instance stuck ``deleting``: restarting nova-compute
  makes ``_init_instance`` resume the delete.

Everything else (a VM running here while Nova places it elsewhere, domains Nova
does not know, missing domains, SHUTOFF-but-running, DOWN ports, volumes stuck
detaching) is never touched: the evidence goes to
``<state_dir>/evidence/<host>-<time>.json`` and the verification, which re-runs
the check, fails, so the outcome escalates with it.
"""
import fnmatch
import json
import os
import re
import time

from autoremedy import config as configmod
from autoremedy import statefile
from autoremedy.guard import Refused
from autoremedy.remediation import Remediation, RemediationError, Step
from autoremedy.result import Status

ACTIONS = ("stop", "reset-active", "reset-error", "restart-agent", "restart-compute")
HOSTNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")


class Reconcile(Remediation):
    name = "openstack-consistency"
    scope = "node"
    schema = {
        "targets": configmod.Map(configmod.Any),
        "host_patterns": configmod.List(str),
        "actions": configmod.List(str),
    }

    def __init__(self, config, runner=None, audit=None, conn=None):
        from autoremedy import execute
        super().__init__(config, runner or execute.run, audit)
        self._conn = conn
        self.conf(None)   # validate openstack.consistency now (`autoremedy config check`)
        for action in self.settings.get("actions") or []:
            if action not in ACTIONS:
                raise configmod.ConfigError(f"remediations.{self.name}.actions: {action!r} is not "
                                            f"one of {', '.join(ACTIONS)}")

    @property
    def dry_run(self):
        # Dry-run first: acting needs an explicit dry_run: false.
        return self.config.dry_run or bool(self.settings.get("dry_run", True))

    def conn(self):
        if self._conn is None:
            from autoremedy.cloud import connect
            self._conn = connect(self.config)
        return self._conn

    def conf(self, host):
        from autoremedy.checks.openstack_consistency import settings
        conf = settings(self.config)
        conf["host"] = host
        return conf

    def resolve(self, name):
        if not name or not HOSTNAME.match(name):
            raise Refused("allowlist", f"{name!r} is not a host name")
        listed = name in (self.settings.get("targets") or {}) or any(
            fnmatch.fnmatchcase(name, p) for p in self.settings.get("host_patterns") or [])
        if not listed:
            raise Refused("allowlist", f"{name!r} is not in remediations.{self.name}.targets or host_patterns")
        return name

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("target", help="this node's Nova host name (allowlisted)")

    # -- plan ------------------------------------------------------------------------------
    def findings(self, host):
        from autoremedy.checks.openstack_consistency import survey
        return survey(self.conn(), self.conf(host), self.runner)

    def plan(self, host):
        found, _, _ = self.findings(host)
        allowed = set(self.settings.get("actions") or ACTIONS)
        conf = self.conf(host)
        steps, restarts = [], set()
        for f in found:
            if f.severity != "auto" or f.action not in allowed:
                continue
            if f.action == "stop":
                steps.append(Step(f"record the real power state of {f.subject}: os-stop (domain already off)",
                                  action=self._server_call("stop_server", f.subject)))
            elif f.action in ("reset-active", "reset-error"):
                state = f.action.split("-")[1]
                steps.append(Step(f"reset stuck task state of {f.subject} to {state}",
                                  action=self._server_call("reset_server_state", f.subject, state),
                                  details=[f.detail]))
            elif f.action == "restart-agent":
                binary = f.evidence.get("binary")
                unit = conf["agent_units"].get(binary)
                if not unit:
                    continue   # not allowlisted: reported by the check, escalated by verify
                if unit not in restarts:
                    restarts.add(unit)
                    steps.append(Step(f"restart dead agent {binary}", ["systemctl", "restart", unit],
                                      timeout=120))
            elif f.action == "restart-compute":
                argv = conf.get("restart_compute") or ["systemctl", "restart", conf["compute_unit"]]
                if tuple(argv) not in restarts:
                    restarts.add(tuple(argv))
                    steps.append(Step("restart nova-compute to resume stuck deletes", argv, timeout=180))
        dangerous = [f for f in found if f.severity == "escalate"]
        if dangerous:
            steps.append(Step(f"keep evidence of {len(dangerous)} finding(s) a human must resolve",
                              action=lambda: self._evidence(host, dangerous),
                              details=[f"{f.kind}: {f.detail}" for f in dangerous]))
        return steps

    def _server_call(self, method, server_id, *args):
        def call():
            from autoremedy.cloud import CloudError, guarded
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

    def verify(self, host):
        from autoremedy.checks.openstack_consistency import judge
        from autoremedy.ranges import Range
        found, servers, notes = self.findings(host)

        class Args:
            warning = critical = Range.parse("0")
        result = judge(found, servers, host, Args, notes)
        # Nova's own bookkeeping lags: a stop lands asynchronously. Ask again briefly.
        deadline = time.monotonic() + float(self.settings.get("verify_timeout") or 30.0)
        while result.status is Status.WARNING and time.monotonic() < deadline:
            time.sleep(1.0)
            found, servers, notes = self.findings(host)
            result = judge(found, servers, host, Args, notes)
        return result


REMEDIATION = Reconcile
