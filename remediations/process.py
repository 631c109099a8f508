"""Restart a dead process: a systemd unit, or a configured start command.

Configuration (every target must be listed; nothing else is ever restarted;
docs/process.md has every option)::

    remediations:
      process:
        enabled: true
        targets:
          nova-compute:
            unit: nova-compute                 # systemctl restart nova-compute
          metadata-agent:
            start: [/usr/bin/neutron-metadata-agent, --config-file, /etc/neutron/metadata_agent.ini]
            stop: [/usr/bin/pkill, --full, --exact, "(\\\\S*python3 )?/usr/bin/neutron-metadata-agent --config-file /etc/neutron/metadata_agent.ini"]
            check: {cmdline: "neutron-metadata-agent --config-file"}   # anchored at the program
            user: neutron                      # who it runs as (and group, environment,
            group: neutron                     #   working_directory)
            settle: 10s                        # time allowed to come up
            min_uptime: 3s                     # how long it must then stay up

The plan is empty when the check already passes (idempotent). The start
command runs as the target's user/group with a fixed environment plus the
target's ``environment``, in ``working_directory`` (default /), in its own
session; its exit status and output (``<state_dir>/process/<target>.out``) are
part of the outcome when it exits within a second. The verification re-runs the
same check until it passes or ``settle`` expires, then requires the same
processes to stay up for ``min_uptime``: a daemon that dies 1.5 s after starting
is not "verified".
"""
import hashlib
import os
import time

from autoremedy import config as configmod
from autoremedy.contract import execute
from autoremedy.contract.guard import Refused
from autoremedy.contract.noharm import Invariant, Reach
from autoremedy.contract.remediation import Remediation, RemediationError, Step
from autoremedy.remediations import _procs
from autoremedy.contract.result import Result, Status
from autoremedy.checks.process import is_interpreter

SELECTORS = ("unit", "process", "cmdline", "pidfile")
# A selector key -> the option of `autoremedy check process` it becomes.
CHECK_OPTION = {"unit": "unit", "process": "name", "cmdline": "cmdline", "pidfile": "pidfile"}
# `check.name` was this class's spelling of what a watch (checks.process.watch)
# calls `process`; one name now, the old one still read (config check says so).
DEPRECATED = {"name": "process"}
MIN_UPTIME = 3.0        # seconds a restarted daemon must stay up to count as verified
START_WAIT = 1.0        # seconds the start command is watched for an early exit
PROC_NAME_MAX = 15      # Linux keeps 15 characters of a process name (TASK_COMM_LEN - 1)


class RestartProcess(Remediation):
    name = "process"
    scope = "node"
    schema = {
        "targets": configmod.Map({
            "unit": str,
            "start": configmod.List(str),
            "stop": configmod.List(str),
            "check": {"unit": str, "process": str, "cmdline": str, "pidfile": str,
                      "user": str, "exe": str,
                      "name": str},           # deprecated spelling of "process"
            "settle": configmod.Duration,
            "min_uptime": configmod.Duration,
            "timeout": configmod.Duration,
            "user": str,
            "group": str,
            "environment": configmod.Map(str),
            "working_directory": str,
        }),
    }

    def resolve(self, name):
        target = super().resolve(name)
        entry = self.allowlist()[target]
        where = f"remediations.process.targets.{target}"
        if not entry.get("unit") and not entry.get("start"):
            raise configmod.ConfigError(f"{where}: needs 'unit' or 'start'")
        if entry.get("unit"):
            extra = [k for k in ("user", "group", "environment", "working_directory")
                     if k in entry]
            if extra:
                raise configmod.ConfigError(
                    f"{where}: {', '.join(extra)} apply to a start command; a unit sets them "
                    "itself (User=, Group=, Environment=, WorkingDirectory=)")
        wd = entry.get("working_directory")
        if wd is not None and not os.path.isabs(wd):
            raise configmod.ConfigError(f"{where}.working_directory: an absolute path is required")
        _check_stop(entry.get("stop"), f"{where}.stop")
        check = entry.get("check") or {}
        for old, new in DEPRECATED.items():
            if old in check and new in check:
                raise configmod.ConfigError(f"{where}.check: {old!r} and {new!r} are the same "
                                            f"selector (the process name): keep {new!r} only")
        return target

    def config_notes(self, target):
        """For ``autoremedy config check``: deprecated spellings, one line each."""
        check = self.allowlist()[target].get("check") or {}
        return [f"deprecated: check.{old} is read as check.{new} (the key a process watch "
                f"uses): rename it to '{new}'" for old, new in DEPRECATED.items() if old in check]

    def selector(self, target):
        """Check options that find this target's processes — and, for a pid
        file, the identity its process must have (program, user)."""
        entry = self.allowlist()[target]
        chosen = dict(entry.get("check") or ({"unit": entry["unit"]} if entry.get("unit")
                                             else {"process": target}))
        for old, new in DEPRECATED.items():
            if old in chosen:
                chosen.setdefault(new, chosen.pop(old))
        kind = next((k for k in SELECTORS if chosen.get(k)), None)
        if kind is None:
            raise configmod.ConfigError(f"remediations.process.targets.{target}.check: no selector")
        argv = [f"--{CHECK_OPTION[kind]}", str(chosen[kind])]
        if kind == "pidfile":
            exe = chosen.get("exe") or (entry["start"][0] if entry.get("start") else None)
            if exe:
                argv += ["--exe", exe]
        user = chosen.get("user") or entry.get("user")
        if user and kind != "unit":
            argv += ["--user", user]
        return argv

    def probe(self, target):
        """The process check on this target's selector, under this configuration."""
        from autoremedy.contract import checkrun
        result, _ = checkrun.run("process", self.selector(target) + ["--timeout", "10"], self.config)
        return result

    def plan(self, target):
        found = self.probe(target)
        self._found = found
        if not self.needs_action(found, "the process state"):
            return []
        entry = self.allowlist()[target]
        timeout = entry.get("timeout", 60.0)
        if entry.get("unit"):
            return [Step(f"restart unit {entry['unit']}",
                         ["systemctl", "restart", entry["unit"]], timeout=timeout)]
        stuck = {pid: letter for pid, letter in ((found.data or {}).get("states") or {}).items()
                 if letter in ("T", "t", "D")}
        if stuck and not entry.get("stop"):
            raise Refused("precondition", f"{target}: " + ", ".join(
                f"pid {pid} is {'stuck in D' if letter == 'D' else 'stopped (' + letter + ')'}"
                for pid, letter in sorted(stuck.items())) + "; without a stop command a start "
                "would run a second instance: a human decides")
        steps = []
        if entry.get("stop"):
            steps.append(Step(f"stop {target}", entry["stop"], timeout=timeout, allow_failure=True))
        identity = self.identity(target)
        steps.append(Step(f"start {target} {identity.describe()}", entry["start"],
                          action=lambda: self.start(target, identity)))
        return steps

    def identity(self, target):
        entry = self.allowlist()[target]
        try:
            return execute.Identity(entry.get("user"), entry.get("group"), entry.get("environment"),
                                    entry.get("working_directory") or "/")
        except execute.CommandError as exc:
            # Looked up when planning, not when the configuration loads: the
            # sample's users need not exist where it is checked.
            raise Refused("config", f"remediations.process.targets.{target}: {exc}") from None

    def output_path(self, target):
        digest = hashlib.sha256(target.encode()).hexdigest()[:8]
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in target)[:40]
        folder = os.path.join(self.config.state_dir, "process")
        os.makedirs(folder, mode=0o750, exist_ok=True)
        return os.path.join(folder, f"{safe}-{digest}.out")

    def start(self, target, identity):
        """Start the daemon; its exit status and output are the step's result."""
        entry = self.allowlist()[target]
        output = self.output_path(target)
        self._started = time.monotonic()        # min_uptime counts from here
        try:
            done = execute.spawn(entry["start"], identity, output=output, wait=START_WAIT)
        except execute.CommandError as exc:
            raise RemediationError(f"start {target}: {exc}") from None
        if done.returncode is None:
            return f"running as pid {done.stdout} (output: {output})"
        if done.returncode != 0:
            last = done.stderr.strip().replace("\n", " / ")[-300:] or "no output"
            raise RemediationError(f"start {target}: exit {done.returncode}: {last} "
                                   f"(output: {output})")
        return f"the command exited 0 within {START_WAIT:g}s (a daemon that forks; output: {output})"

    def verify(self, target):
        entry = self.allowlist()[target]
        settle = entry.get("settle", 10.0)
        result = self.poll(lambda: self.probe(target), settle)
        if result.status is not Status.OK:
            return result
        return self.stays_up(target, result, entry.get("min_uptime", MIN_UPTIME))

    def stays_up(self, target, result, minimum):
        """The same processes must still run ``minimum`` seconds after the start."""
        pids = sorted((result.data or {}).get("pids") or [])
        started = getattr(self, "_started", time.monotonic())
        while True:
            left = minimum - (time.monotonic() - started)
            again = self.probe(target)
            now = sorted((again.data or {}).get("pids") or [])
            if again.status is not Status.OK or (pids and now != pids):
                up = time.monotonic() - started
                return Result("process", f"{target} started, then was not running after "
                              f"{up:.1f}s (less than min_uptime {minimum:g}s): {again.summary}",
                              status=Status.CRITICAL, data=again.data)
            if left <= 0:
                again.summary += f"; up {time.monotonic() - started:.1f}s (min_uptime {minimum:g}s)"
                return again
            time.sleep(min(left, 0.5))

    # -- the no-harm declarations ----------------------------------------------
    def reach(self, target, plan):
        """The run may end (stop step) the processes the check found for this
        target, and start new ones; every other process that mentions the
        daemon — its bystanders — must survive it."""
        found = getattr(self, "_found", None)
        pids = ((found.data or {}).get("pids") or []) if found is not None else []
        names = [k for k in (_procs.key(p) for p in pids) if k]
        tokens = self.mentions(target)
        skip = set(_procs.ancestors())
        return [Reach("process", names, read=lambda: _procs.mentioning(tokens, skip),
                      how="/proc/*/cmdline containing " + " or ".join(map(repr, tokens)),
                      appear=True)]

    def invariants(self, target, plan):
        entry = self.allowlist()[target]
        out = [Invariant("the processes that called this run", "/proc/PID/stat of each parent",
                         lambda: {str(k): v for k, v in _procs.ancestors(os.getppid()).items()})]
        if entry.get("start") and not entry.get("unit"):
            start = list(entry["start"])
            out.append(Invariant(
                f"instances of {target} (processes running its start command)",
                "/proc/*/cmdline equal to " + " ".join(start),
                lambda: _instances(start),
                holds=lambda before, after: after is not None and after <= max(before or 0, 1),
                rule="at most one after the run (or no more than before)"))
        return out

    def mentions(self, target):
        """What a process's command line must contain to be watched as the
        daemon or one of its bystanders: the unit's name, the program's name (a
        script's path when the program is an interpreter)."""
        entry = self.allowlist()[target]
        tokens = []
        if entry.get("unit"):
            tokens.append(entry["unit"][:-len(".service")] if entry["unit"].endswith(".service")
                          else entry["unit"])
        start = entry.get("start") or []
        if start:
            program = os.path.basename(start[0])
            if is_interpreter(program) and len(start) > 1:
                script = next((a for a in start[1:] if not a.startswith("-")), None)
                tokens.append(script or program)
            else:
                tokens.append(program)
        return tokens

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("target", help="a key of remediations.process.targets")


def _check_stop(stop, where):
    """``pkill -x NAME``/``pgrep -x``/``killall`` with a name longer than the
    kernel keeps (15 characters) can never match: refuse it at load time."""
    if not stop:
        return
    program = os.path.basename(stop[0])
    if program not in ("pkill", "pgrep", "killall"):
        return
    args = stop[1:]
    full = any(a in ("-f", "--full") or (a.startswith("-") and not a.startswith("--")
                                          and "f" in a[1:]) for a in args)
    exact = program == "killall" or any(
        a in ("-x", "--exact") or (a.startswith("-") and not a.startswith("--") and "x" in a[1:])
        for a in args)
    names = [a for a in args if not a.startswith("-")]
    if exact and not full and names and len(names[-1]) > PROC_NAME_MAX:
        raise configmod.ConfigError(
            f"{where}: {program} matching the process name {names[-1]!r} exactly can never "
            f"match: Linux keeps {PROC_NAME_MAX} characters of a process name; match the full "
            "command line (--full --exact with an anchored pattern) or use a pidfile")


def _instances(start):
    """How many processes run exactly the start command (argv[0] compared by name)."""
    want = [os.path.basename(start[0])] + list(start[1:])
    count = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        args = _procs.argv(int(name))
        if args and [os.path.basename(args[0])] + args[1:] == want:
            fields = _procs.stat_fields(int(name))
            if fields and fields[0] != "Z":
                count += 1
    return count


REMEDIATION = RestartProcess
