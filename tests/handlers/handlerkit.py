"""Helpers for the handler tests (imported by name: ``from handlerkit import ...``;
every area has a conftest.py, so ``from conftest import`` would be ambiguous):
the StackStorm double, Sensu/Zabbix fixtures, a throwaway service process,
configurations that route to it, and readers for the spool and the audit log."""
import importlib.util
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
FIXTURES = os.path.join(TESTS, "fixtures")
DOUBLE_PATH = os.path.join(TESTS, "doubles", "st2.py")
API_KEY = "test-key-5b1f0c"
AUTOREMEDY = os.path.join(os.path.dirname(sys.executable), "autoremedy")


def load_double():
    """tests/doubles/st2.py by path: the repository root must not go on sys.path
    (its autoremedy/ would shadow the installed package under test)."""
    spec = importlib.util.spec_from_file_location("st2_double", DOUBLE_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


st2_double = load_double()



def st2_env(double, **extra):
    env = {"AUTOREMEDY_ST2_URL": double.url, "AUTOREMEDY_ST2_API_KEY": API_KEY}
    env.update(extra)
    return env


def fixture_text(*parts):
    with open(os.path.join(FIXTURES, *parts), encoding="utf-8") as handle:
        return handle.read()




SERVICE = """\
import os, sys, time
marker, starts, pidfile = sys.argv[1:4]
with open(pidfile + ".tmp", "w") as handle:
    handle.write(f"{os.getpid()}\\n")
os.rename(pidfile + ".tmp", pidfile)
with open(starts, "a") as handle:       # one line per start: the remediation count
    handle.write(f"{os.getpid()}\\n")
while True:
    time.sleep(1)
"""


class Service:
    """A throwaway daemon the process remediation may restart: its command line
    carries a unique marker (for the test's own bookkeeping), it writes a pid
    file (what the check watches), and every start appends a line to ``starts``.

    The check uses --pidfile, not --cmdline: concurrent ``autoremedy handle hook
    ... --cmdline MARKER`` processes carry the pattern in their own argv and the
    process check only excludes its own ancestors, so they would count as the
    service (see docs/handlers.md, "Known limits")."""

    def __init__(self, tmp_path):
        self.script = tmp_path / "svc.py"
        self.script.write_text(SERVICE)
        self.marker = f"ar-test-{os.getpid()}-{time.time_ns()}"
        self.starts = tmp_path / "starts.log"
        self.pidfile = tmp_path / "svc.pid"
        self.argv = [sys.executable, str(self.script), self.marker, str(self.starts),
                     str(self.pidfile)]
        self.procs = []

    def start(self):
        before = self.start_count()
        proc = subprocess.Popen(self.argv, start_new_session=True)
        self.procs.append(proc)
        self.wait_running()
        deadline = time.monotonic() + 10
        while self.start_count() == before:       # it has written its start line
            assert time.monotonic() < deadline, "service did not record its start"
            time.sleep(0.02)
        return proc

    def pids(self):
        import psutil
        out = []
        for proc in psutil.process_iter(["cmdline"]):
            if self.marker in (proc.info.get("cmdline") or []):
                out.append(proc.pid)
        return out

    def wait_running(self, timeout=10):
        deadline = time.monotonic() + timeout
        while not self.pids():
            if time.monotonic() > deadline:
                raise AssertionError("service did not start")
            time.sleep(0.05)

    def kill(self):
        import signal
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + 10
        while self.pids():
            if time.monotonic() > deadline:
                raise AssertionError("service did not die")
            time.sleep(0.05)

    def start_count(self):
        if not self.starts.exists():
            return 0
        return len(self.starts.read_text().split())

    @property
    def check_args(self):
        return ["--pidfile", str(self.pidfile)]

    def target(self, settle="10s"):
        return {"start": self.argv, "check": {"pidfile": str(self.pidfile)}, "settle": settle}



def service_config(service, hostname="node-under-test", **extra):
    """A configuration in which 'svc' is the allowlisted process target."""
    data = {
        "hostname": hostname,
        "remediations": {"process": {"enabled": True, "targets": {"svc": service.target()}}},
        "stackstorm": {"breaker_cooldown": "30s", "connect_timeout": 1, "read_timeout": 2},
    }
    for key, value in extra.items():
        data[key] = value
    return data


def spool_entries(state_dir):
    path = os.path.join(str(state_dir), "spool")
    if not os.path.isdir(path):
        return []
    out = []
    for name in sorted(os.listdir(path)):
        if name.endswith(".json") and not name.startswith("."):
            with open(os.path.join(path, name)) as handle:
                out.append(json.load(handle))
    return out


def audit_records(state_dir, what=None):
    path = os.path.join(str(state_dir), "audit.log")
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    return [r for r in records if what is None or r.get("what") == what]


def run_bytes(args, data, state_dir, env=None, timeout=60):
    """The installed command with raw bytes on stdin (and possibly in argv);
    stdout/stderr stay bytes. No inherited AUTOREMEDY_* settings."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AUTOREMEDY_")}
    environ["AUTOREMEDY_STATE_DIR"] = str(state_dir)
    environ.update(env or {})
    return subprocess.run([AUTOREMEDY, *args], input=data, capture_output=True, env=environ,
                          timeout=timeout)
