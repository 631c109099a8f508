"""The fleet tests' remediation class and the "hosts" that run it.

``FleetTest`` stands for an action on a shared object (a RabbitMQ policy, a
Nova service): the "world" is a directory with ``<target>.broken`` for each
broken object; ``run`` appends what it did to ``actions.log`` (O_APPEND: one
line per action, from whichever host) and repairs the object; ``plan`` is empty
when the object is healthy, so a second host that gets the lock after the first
finds nothing to do. Every remediation path through the real guard, lock and
ledger ends in ``perform()``; the test only swaps the action.

Like every class, it declares what its run could harm (autoremedy/contract/noharm.py,
docs/noharm.md): its reach is the target's own object and the shared action log,
and the log is append-only. The other targets' objects are not watched: other
hosts repair them at the same moment (that is the point of the tests), the way a
real API-scoped class watches its own object and not every object of the cloud.
"""
import json
import os
import subprocess
import sys
import time

import yaml

from autoremedy import config as configmod
from autoremedy.contract.noharm import Invariant, Reach
from autoremedy.contract.remediation import Remediation, Step
from autoremedy.contract.result import Result, Status

HERE = os.path.dirname(os.path.abspath(__file__))
HOST_SCRIPT = os.path.join(HERE, "fleet_host.py")


class FleetTest(Remediation):
    name = "fleettest"
    scope = "api"
    schema = {"targets": configmod.Map(configmod.Any), "world": str, "hold": configmod.Duration}

    def _broken(self, target):
        return os.path.join(self.settings["world"], f"{target}.broken")

    def plan(self, target):
        if not os.path.exists(self._broken(target)):
            return []
        return [Step(f"repair {target}", action=lambda: self._repair(target))]

    def _log(self):
        return os.path.join(self.settings["world"], "actions.log")

    def _own_files(self, target):
        """What a run on ``target`` may change: {file: state}, absent when absent."""
        seen = {}
        if os.path.exists(self._broken(target)):
            seen[f"{target}.broken"] = "broken"
        try:
            seen["actions.log"] = os.path.getsize(self._log())
        except FileNotFoundError:
            pass
        return seen

    def _logged(self):
        try:
            with open(self._log()) as handle:
                return sum(1 for line in handle if line.strip())
        except FileNotFoundError:
            return 0

    def reach(self, target, plan):
        return [Reach("file", [f"{target}.broken", "actions.log"],
                      lambda: self._own_files(target),
                      how=f"os.path.exists/getsize in {self.settings['world']}", appear=False)]

    def invariants(self, target, plan):
        return [Invariant.not_fewer("actions logged", "lines of actions.log", self._logged)]

    def _repair(self, target):
        line = json.dumps({"host": self.config.hostname, "pid": os.getpid(), "target": target,
                           "at": time.time()})
        fd = os.open(self._log(),
                     os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
        time.sleep(self.settings.get("hold", 0.0))
        if not (self.settings["targets"].get(target) or {}).get("stubborn"):
            try:
                os.unlink(self._broken(target))
            except FileNotFoundError:
                pass
        return "repaired"

    def verify(self, target):
        if os.path.exists(self._broken(target)):
            return Result("fleettest", f"{target} still broken", Status.CRITICAL)
        return Result("fleettest", f"{target} healthy", Status.OK)


REMEDIATION = FleetTest


def world(base, targets):
    path = os.path.join(base, "world")
    os.makedirs(path, exist_ok=True)
    for target in targets:
        open(os.path.join(path, f"{target}.broken"), "w").close()
    return path


def actions(world_dir):
    try:
        with open(os.path.join(world_dir, "actions.log")) as handle:
            return [json.loads(line) for line in handle if line.strip()]
    except FileNotFoundError:
        return []


def host_config(base, hostname, backend_url, world_dir, targets, namespace, scope="api",
                guards=None, coordination=None, st2_url=None, hold=0.0):
    """A host's own state directory and configuration file; returns the path."""
    home = os.path.join(base, hostname)
    os.makedirs(os.path.join(home, "state"), exist_ok=True)
    data = {"state_dir": os.path.join(home, "state"), "hostname": hostname,
            "maintenance_file": os.path.join(home, "maintenance"),
            "guards": {"lock_timeout": 30.0, "rate_limit": {"max": 3, "per": 3600.0},
                       "global_cap": {"max": 1000, "per": 3600.0}, **(guards or {})},
            "remediations": {"fleettest": {"enabled": True, "scope": scope, "world": world_dir,
                                           "hold": hold,
                                           "targets": {t: (targets[t] if isinstance(targets, dict)
                                                           else {}) for t in targets}}}}
    if backend_url:
        data["coordination"] = {"backend_url": backend_url, "namespace": namespace,
                                "timeout": 2.0, "lock_ttl": 3.0, **(coordination or {})}
    if st2_url:
        data["stackstorm"] = {"url": st2_url, "connect_timeout": 0.5, "read_timeout": 1.0}
    path = os.path.join(home, "autoremedy.yaml")
    with open(path, "w") as handle:
        yaml.safe_dump(data, handle)
    return path


def start_host(jobs, out, workers=4, mode="perform", barrier=None):
    """One "host": a process with a pool of ``workers`` worker processes (one
    handler each, like Sensu's) going through ``jobs`` [(config, event_id, target)].
    With ``barrier`` (a directory) it starts its jobs only at release(barrier)."""
    spec = os.path.join(os.path.dirname(out), os.path.basename(out) + ".jobs.json")
    with open(spec, "w") as handle:
        json.dump({"jobs": jobs, "workers": workers, "mode": mode, "barrier": barrier}, handle)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOREMEDY_")}
    return subprocess.Popen([sys.executable, HOST_SCRIPT, spec, out], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)   # a test may kill the whole host


def release(barrier, procs, timeout=180):
    """Wait until every host of ``procs`` is ready at ``barrier``, then let them go."""
    deadline = time.monotonic() + timeout
    while len([n for n in os.listdir(barrier) if n.endswith(".ready")]) < len(procs):
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(f"a host exited before starting: {proc.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"hosts not ready in {timeout}s: {os.listdir(barrier)}")
        time.sleep(0.02)
    open(os.path.join(barrier, "go"), "w").close()


def finish_host(proc, out, timeout=240):
    stdout, stderr = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"host exited {proc.returncode}: {stderr[-3000:]}"
    with open(out) as handle:
        return json.load(handle)
