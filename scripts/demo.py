#!/usr/bin/env python3
"""``make demo``: the whole flow on this machine, nothing external.

1. A dead process: a throwaway service is killed, ``autoremedy check process``
   says CRITICAL, the guarded restart from a demo configuration brings it back,
   the check says OK, and the audit trail shows every decision.
2. A full disk: a small tmpfs mounted by the demo (or, where mounting is not
   permitted, a scratch directory with a threshold just above its filesystem's
   current use) is filled with old rotated logs past its threshold and freed by
   policy; the live log stays.
3. Detect -> forward -> fall back: the service dies again; the node hook
   (``autoremedy handle hook process``) finds StackStorm unreachable, restarts
   the service under the guards, verifies it and keeps the event in the spool;
   the StackStorm double comes up; ``autoremedy replay`` delivers the event marked
   as remediated locally; ``autoremedy status`` shows it all. A Sensu event sent
   while StackStorm is up is delivered straight away.

Everything lives under one temporary directory; the service, the StackStorm
double and the mount are cleaned up whatever happens. Exit 0 when every step
did what it should, 1 when one did not (the reason is printed), 2 when run
outside the venv. ``--keep`` keeps the directory for a look afterwards;
``--no-mount`` forces the scratch-directory fallback.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DOUBLE = os.path.join(ROOT, "tests", "doubles", "st2.py")
SENSU_EVENT = os.path.join(ROOT, "tests", "fixtures", "sensu", "sensu-go-event.json")
BIN = os.path.dirname(os.path.abspath(sys.executable))
AUTOREMEDY = os.path.join(BIN, "autoremedy")
API_KEY = "demo-api-key-not-secret"

SERVICE = """\
import os, sys, time
pidfile = sys.argv[2]
with open(pidfile + ".tmp", "w") as handle:
    handle.write(f"{os.getpid()}\\n")
os.rename(pidfile + ".tmp", pidfile)
while True:
    time.sleep(1)
"""


class StepFailed(Exception):
    """A step did not do what the demo expects; the text says what."""


class Demo:
    def __init__(self, base, mount_allowed=True):
        self.base = base
        self.mount_allowed = mount_allowed
        self.state = os.path.join(base, "state")
        self.config_path = os.path.join(base, "autoremedy.yaml")
        self.pidfile = os.path.join(base, "demo-svc.pid")
        self.service_script = os.path.join(base, "demo-svc.py")
        self.disk = os.path.join(base, "disk")
        self.record = os.path.join(base, "stackstorm-received.jsonl")
        self.mounted = False
        self.double = None
        self.st2_port = None
        self.disk_thresholds = (80, 90)

    # -- narration --------------------------------------------------------------------
    @staticmethod
    def title(text):
        print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)

    @staticmethod
    def say(text, blank=False):
        if blank:
            print()
        print(textwrap.fill(text, 100), flush=True)

    def run(self, *args, expect=(0,), stdin=None, show=True):
        """Run the installed ``autoremedy`` as Sensu/Zabbix/an operator would."""
        shown = " ".join(_quote(a) for a in args)
        print(f"\n$ autoremedy {shown}" + (f" < {os.path.basename(stdin)}" if stdin else ""), flush=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOREMEDY_")}
        env["AUTOREMEDY_CONFIG"] = self.config_path
        data = open(stdin, "rb").read() if stdin else None
        proc = subprocess.run([AUTOREMEDY, *args], input=data, capture_output=True, env=env,
                              timeout=120)
        out = (proc.stdout + proc.stderr).decode("utf-8", "replace").rstrip()
        if show and out:
            print(textwrap.indent(out, "  "), flush=True)
        if proc.returncode not in expect:
            raise StepFailed(f"`autoremedy {shown}` exited {proc.returncode}, expected "
                             f"{' or '.join(map(str, expect))}")
        return proc.returncode, out

    # -- set-up -------------------------------------------------------------------------
    def prepare(self):
        os.makedirs(self.state)
        with open(self.service_script, "w") as handle:
            handle.write(SERVICE)
        key_file = os.path.join(self.base, "st2.key")
        with open(key_file, "w") as handle:
            handle.write(API_KEY + "\n")
        os.chmod(key_file, 0o600)
        self.start_double()
        self.prepare_disk()
        config = {
            "state_dir": self.state,
            "maintenance_file": os.path.join(self.base, "maintenance"),
            "hostname": "demo-node",
            "stackstorm": {"url": f"http://127.0.0.1:{self.st2_port}", "webhook": "autoremedy",
                           "api_key_file": key_file, "connect_timeout": 1, "read_timeout": 2,
                           "breaker_cooldown": "30s"},
            "guards": {"rate_limit": {"max": 3, "per": "1h"}},
            "remediations": {
                "process": {"enabled": True, "targets": {"demo-svc": {
                    "start": [sys.executable, self.service_script, "--pidfile", self.pidfile],
                    "check": {"pidfile": self.pidfile}, "settle": "10s"}}},
                "disk": {"enabled": True, "targets": {self.disk: {
                    "warning": self.disk_thresholds[0], "critical": self.disk_thresholds[1],
                    # Age is the newest of mtime and ctime: files written now are
                    # new, so the demo's policy takes rotated logs of any age (a
                    # real one says 7d; docs/disk.md).
                    "rules": [{"type": "rotated-logs", "root": os.path.join(self.disk, "log"),
                               "older_than": "0s"}]}}},
            },
            "routes": [{"source": "sensu-*", "check": "*", "fallback": "escalate"}],
        }
        import yaml
        with open(self.config_path, "w") as handle:
            handle.write("# Written by scripts/demo.py: the demo's whole configuration.\n")
            yaml.safe_dump(config, handle, sort_keys=False)

    def start_double(self):
        """The StackStorm double, started now but down (its port refuses connections)
        until part 3 brings it up: the port is reserved from the start."""
        self.double = subprocess.Popen(
            [sys.executable, DOUBLE, "--port", "0", "--api-key", API_KEY, "--hook", "autoremedy",
             "--record", self.record, "--mode", "down"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
        line = self.double.stdout.readline().strip()
        if not line.isdigit():
            raise StepFailed("the StackStorm double did not start")
        self.st2_port = int(line)

    def st2_up(self):
        self.double.send_signal(signal.SIGUSR1)
        import socket
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.st2_port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise StepFailed("the StackStorm double did not come up") from None
                time.sleep(0.05)

    def prepare_disk(self):
        os.makedirs(self.disk)
        if self.mount_allowed and os.geteuid() == 0 and shutil.which("mount"):
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0755",
                                   "autoremedy-demo", self.disk], capture_output=True, text=True)
            if done.returncode == 0:
                self.mounted = True
                return
            self.say(f"(mount not permitted here: {done.stderr.strip() or done.returncode}; "
                     "using the scratch-directory fallback)")
        # Fallback: the scratch directory sits on a big shared filesystem; put the
        # thresholds just above its current use so that the fill crosses them.
        st = os.statvfs(self.disk)
        used = (st.f_blocks - st.f_bfree) * st.f_frsize
        avail = st.f_bavail * st.f_frsize
        pct = 100.0 * used / (used + avail)
        # Margins of a third / a half of the fill on each side absorb what other
        # programs write meanwhile (~100 MB on a 100 GB filesystem).
        self.fill_bytes = max(256 << 20, int((used + avail) * 0.003))
        step = 100.0 * self.fill_bytes / (used + avail)
        self.disk_thresholds = (round(pct + step / 3, 2), round(pct + step / 2, 2))

    # -- part 1 -------------------------------------------------------------------------
    def start_service(self):
        subprocess.Popen([sys.executable, self.service_script, "--pidfile", self.pidfile],
                         start_new_session=True, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
        self.wait_service(True)

    def service_pid(self):
        try:
            pid = int(open(self.pidfile).read().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def wait_service(self, running, timeout=10):
        deadline = time.monotonic() + timeout
        while (self.service_pid() is not None) != running:
            if time.monotonic() > deadline:
                raise StepFailed(f"demo-svc did not {'start' if running else 'stop'}")
            time.sleep(0.05)

    def kill_service(self):
        pid = self.service_pid()
        print(f"\n# kill -9 {pid}   (demo-svc dies)", flush=True)
        os.kill(pid, signal.SIGKILL)
        self.wait_service(False)

    def part1_process(self):
        self.title("1. A dead process, put back by the guarded restart")
        self.say("A throwaway service (demo-svc) runs; the configuration allowlists it as the only "
                 "process the robot may restart.")
        self.start_service()
        self.run("check", "process", "--pidfile", self.pidfile)
        self.kill_service()
        self.run("check", "process", "--pidfile", self.pidfile, expect=(2,))
        self.run("remediate", "process", "--dry-run", "demo-svc")
        self.run("remediate", "process", "demo-svc")
        if self.service_pid() is None:
            raise StepFailed("demo-svc is not running after the restart")
        self.run("check", "process", "--pidfile", self.pidfile)
        self.run("remediate", "process", "sshd", expect=(1,))
        self.say("Not in the allowlist: refused and escalated (exit 1); nothing ran. The audit "
                 "trail records every decision:")
        self.show_audit()

    def show_audit(self, what=("remediation",)):
        with open(os.path.join(self.state, "audit.log")) as handle:
            for line in handle:
                entry = json.loads(line)
                if entry["what"] not in what:
                    continue
                when = time.strftime("%H:%M:%S", time.localtime(entry["ts"]))
                verify = entry.get("verify") or {}
                tail = f" [verify {verify.get('status')}]" if verify else ""
                print(f"  {when} {entry.get('cls')} {entry.get('target')}: {entry.get('outcome')}"
                      f"{' (dry-run)' if entry.get('dry_run') else ''}: {entry.get('reason')}{tail}"
                      f" ({entry.get('duration_ms')} ms)", flush=True)

    # -- part 2 -------------------------------------------------------------------------
    def part2_disk(self):
        self.title("2. A full disk, freed by policy")
        log = os.path.join(self.disk, "log")
        os.makedirs(log)
        if self.mounted:
            self.say(f"A 16 MiB tmpfs is mounted on {self.disk}; the policy may delete rotated logs "
                     "under log/ (oldest first, until the disk is below its warning threshold), "
                     "nothing else.")
            sizes = [3 << 20] * 5          # 15 MiB of old rotated logs
        else:
            self.say(f"Scratch directory {self.disk}: thresholds {self.disk_thresholds[0]}% / "
                     f"{self.disk_thresholds[1]}%, just above the filesystem's current use.")
            sizes = [self.fill_bytes // 4] * 4
        for n, size in enumerate(sizes, 1):
            path = os.path.join(log, f"nova-compute.log.{n}.gz")
            _write_zeros(path, size)
        live = os.path.join(log, "nova-compute.log")
        with open(live, "w") as handle:
            handle.write("the live log: not rotated, must survive\n")
        print(f"\n# wrote {len(sizes)} rotated logs and the live log", flush=True)
        warn, crit = map(str, self.disk_thresholds)
        self.run("check", "disk", "-p", self.disk, "-w", warn, "-c", crit, expect=(2,))
        self.run("remediate", "disk", "--dry-run", self.disk)
        self.run("remediate", "disk", self.disk)
        self.run("check", "disk", "-p", self.disk, "-w", warn, "-c", crit)
        if not os.path.exists(live):
            raise StepFailed("the live log was deleted")
        left = sorted(os.listdir(log))
        print(f"\n# left under log/: {', '.join(left)} (deletion stopped once below "
              f"{self.disk_thresholds[0]}%)", flush=True)
        if len(left) >= len(sizes) + 1 or left[0] != "nova-compute.log":
            raise StepFailed(f"unexpected files left: {left}")

    # -- part 3 -------------------------------------------------------------------------
    def part3_handlers(self):
        self.title("3. Detect -> forward to StackStorm -> fall back locally -> replay")
        self.say(f"StackStorm (a loopback double following its webhook contract) is configured at "
                 f"127.0.0.1:{self.st2_port} but DOWN: the port refuses connections.")
        self.kill_service()
        code, out = self.run("handle", "hook", "process", "--target", "demo-svc",
                             "--pidfile", self.pidfile)
        for needed in ("StackStorm not reached: connection refused", "remediated: verified OK",
                       "kept in the spool"):
            if needed not in out:
                raise StepFailed(f"the hook output lacks {needed!r}")
        if self.service_pid() is None:
            raise StepFailed("demo-svc is not running after the local fallback")
        self.say("The node restarted its own service under the guards, verified it, and kept "
                 "the event for StackStorm.", blank=True)
        self.run("check", "spool")
        self.run("status")
        self.title("StackStorm comes back")
        self.st2_up()
        print(f"# StackStorm double is up on 127.0.0.1:{self.st2_port}", flush=True)
        self.run("replay")
        received = self.received()
        if len(received) != 1:
            raise StepFailed(f"StackStorm received {len(received)} events, expected 1")
        body = received[0]["body"]
        marks = body["autoremedy"]
        self.say("What StackStorm's rule sees (trigger.body):", blank=True)
        print(f"  trace tag            {received[0]['trace_tag']}")
        print(f"  event                {body['event']['source']} {body['event']['host']}/"
              f"{body['event']['check']} {body['event']['state']}")
        print(f"  remediated_locally   {marks['remediated_locally']}")
        local = marks["local"][0]
        print(f"  local                {local['class']} {local['target']}: {local['outcome']} "
              f"(verify {local['verify']['status']})")
        print(f"  replayed, attempt    {marks['replayed']}, {marks['attempt']}")
        if not marks["remediated_locally"] or received[0]["trace_tag"] != body["event"]["id"]:
            raise StepFailed("the replayed event is not marked as remediated locally")
        self.run("status")
        self.title("While StackStorm is up, events go straight through")
        self.run("handle", "sensu", stdin=SENSU_EVENT)
        if len(self.received()) != 2:
            raise StepFailed("the Sensu event did not reach StackStorm")
        self.run("check", "spool")

    def received(self):
        """What the StackStorm double accepted (202), from its record file."""
        try:
            with open(self.record) as handle:
                requests = [json.loads(line) for line in handle if line.strip()]
        except FileNotFoundError:
            return []
        return [r for r in requests if r["status"] == 202]

    # -- clean-up -----------------------------------------------------------------------
    def cleanup(self):
        problems = []
        pid = self.service_pid() if os.path.exists(self.pidfile) else None
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.double is not None and self.double.poll() is None:
            self.double.terminate()
            try:
                self.double.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.double.kill()
        problems += _sweep(self.base)
        if self.mounted:
            done = subprocess.run(["umount", self.disk], capture_output=True, text=True)
            if done.returncode != 0:
                done = subprocess.run(["umount", "-l", self.disk], capture_output=True, text=True)
            if done.returncode != 0:
                problems.append(f"could not unmount {self.disk}: {done.stderr.strip()}")
            else:
                self.mounted = False
        return problems


def _write_zeros(path, size):
    chunk = b"\0" * (1 << 20)
    with open(path, "wb") as handle:
        left = size
        while left > 0:
            handle.write(chunk[:min(left, len(chunk))])
            left -= len(chunk)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def _sweep(base, quiet=0.5, limit=15.0):
    """Kill every process naming the demo's directory until none has been seen for
    ``quiet`` seconds: an interrupted ``autoremedy`` child can still be starting the
    service again while the first pass runs (a one-pass sweep left one behind in CI)."""
    deadline = time.monotonic() + limit
    calm_since = None
    while time.monotonic() < deadline:
        found = [pid for pid in _processes_with(base) if pid != os.getpid()]
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        now = time.monotonic()
        if found:
            calm_since = None
        elif calm_since is None:
            calm_since = now
        elif now - calm_since >= quiet:
            return []
        time.sleep(0.05)
    return [f"processes under {base} still appearing after {limit:g}s"]


def _processes_with(text):
    """PIDs whose command line contains ``text`` (the demo's own service script)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as handle:
                if text.encode() in handle.read():
                    out.append(int(name))
        except OSError:
            continue
    return out


def _quote(arg):
    import shlex
    return shlex.quote(arg)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the demo directory")
    parser.add_argument("--no-mount", action="store_true", help="use the scratch-directory fallback")
    args = parser.parse_args(argv)
    if not os.access(AUTOREMEDY, os.X_OK):
        print(f"demo: {AUTOREMEDY} not found: run it with `make demo` (it builds the venv)",
              file=sys.stderr)
        return 2
    def terminate(signum, frame):
        raise KeyboardInterrupt          # SIGTERM (a CI timeout) cleans up like Ctrl-C
    # SIGINT too: started from a background job, the demo inherits SIGINT ignored and
    # Python then installs no KeyboardInterrupt handler (a clean-clone run under `&`
    # finished the demo with exit 0 after a Ctrl-C).
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, terminate)
    base = tempfile.mkdtemp(prefix="autoremedy-demo-")
    demo = Demo(base, mount_allowed=not args.no_mount)
    print(f"autoremedy demo: everything lives under {base}; nothing external is needed.")
    print(f"export AUTOREMEDY_CONFIG={demo.config_path}   # every command below uses it")
    code = 0
    try:
        demo.prepare()
        demo.part1_process()
        demo.part2_disk()
        demo.part3_handlers()
        demo.title("demo OK: detected, forwarded, fell back, healed, verified, replayed, audited")
    except StepFailed as exc:
        print(f"\ndemo FAILED: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("\ndemo interrupted", file=sys.stderr)
        code = 130
    finally:
        problems = demo.cleanup()
        for problem in problems:
            print(f"demo: clean-up: {problem}", file=sys.stderr)
        if args.keep or problems:
            print(f"(kept {base})")
        else:
            shutil.rmtree(base, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
