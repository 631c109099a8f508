"""Restart a dead process: a systemd unit, or a configured start command.

Configuration (every target must be listed; nothing else is ever restarted)::

    remediations:
      process:
        enabled: true
        targets:
          nova-compute:
            unit: nova-compute                 # systemctl restart nova-compute
          metadata-agent:
            start: [/usr/bin/neutron-metadata-agent, --config-file, /etc/neutron/metadata_agent.ini]
            stop: [/usr/bin/pkill, -x, neutron-metadata]   # optional, before start
            check: {cmdline: neutron-metadata-agent}       # how to find it (default: unit or name)
            settle: 10s                                    # time allowed to come up

The plan is empty when the check already passes (idempotent); the verification
re-runs the same process check until it passes or ``settle`` expires.
"""

from autoremedy import config as configmod
from autoremedy.remediation import Remediation, Step

SELECTORS = ("unit", "name", "cmdline", "pidfile")


class RestartProcess(Remediation):
    name = "process"
    scope = "node"
    schema = {
        "targets": configmod.Map({
            "unit": str,
            "start": configmod.List(str),
            "stop": configmod.List(str),
            "check": {"unit": str, "name": str, "cmdline": str, "pidfile": str},
            "settle": configmod.Duration,
            "timeout": configmod.Duration,
        }),
    }

    def resolve(self, name):
        target = super().resolve(name)
        entry = self.allowlist()[target]
        if not entry.get("unit") and not entry.get("start"):
            raise configmod.ConfigError(
                f"remediations.process.targets.{target}: needs 'unit' or 'start'")
        return target

    def selector(self, target):
        """Check options that find this target's processes."""
        entry = self.allowlist()[target]
        chosen = entry.get("check") or ({"unit": entry["unit"]} if entry.get("unit") else {"name": target})
        kind = next((k for k in SELECTORS if chosen.get(k)), None)
        if kind is None:
            raise configmod.ConfigError(f"remediations.process.targets.{target}.check: no selector")
        return [f"--{kind}", str(chosen[kind])]

    def probe(self, target):
        from autoremedy.cli import run_check
        result, _ = run_check("process", self.selector(target) + ["--timeout", "10"])
        return result

    def plan(self, target):
        if not self.needs_action(self.probe(target), "the process state"):
            return []
        entry = self.allowlist()[target]
        timeout = entry.get("timeout", 60.0)
        if entry.get("unit"):
            return [Step(f"restart unit {entry['unit']}",
                         ["systemctl", "restart", entry["unit"]], timeout=timeout)]
        steps = []
        if entry.get("stop"):
            steps.append(Step(f"stop {target}", entry["stop"], timeout=timeout, allow_failure=True))
        steps.append(Step(f"start {target}", entry["start"], timeout=timeout, detach=True))
        return steps

    def verify(self, target):
        settle = self.allowlist()[target].get("settle", 10.0)
        return self.poll(lambda: self.probe(target), settle)

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("target", help="a key of remediations.process.targets")


REMEDIATION = RestartProcess
