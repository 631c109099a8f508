"""The process check and remediation tell the truth: no daemon reported alive when
it is not, no bystander counted or signalled, a failing start is a failure, a
daemon must stay up to be "verified", flapping is seen on the hook path too, and
a daemon runs as its configured identity. Real processes throughout; the
bystanders log every signal they receive.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import yaml

pytestmark = pytest.mark.integration
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DAEMON = """\
import json, os, sys, time
pidfile, report, life = sys.argv[1], sys.argv[2], float(sys.argv[3])
with open(pidfile + ".tmp", "w") as handle:
    handle.write(f"{os.getpid()}\\n")
os.rename(pidfile + ".tmp", pidfile)
with open(report, "a") as handle:
    handle.write(json.dumps({"pid": os.getpid(), "uid": os.getuid(), "gid": os.getgid(),
                             "groups": os.getgroups(), "cwd": os.getcwd(),
                             "env": dict(os.environ), "sid": os.getsid(0)}) + "\\n")
sys.stderr.write("daemon started\\n")
time.sleep(life)
"""

BYSTANDER = """\
import signal, sys, time
log = sys.argv[1]
def logged(signum, frame):
    with open(log, "a") as handle:
        handle.write(f"{signal.Signals(signum).name}\\n")
    if signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        sys.exit(0)
for sig in signal.valid_signals():
    try:
        signal.signal(sig, logged)
    except (OSError, ValueError):
        pass
print("ready", flush=True)
while True:
    time.sleep(1)
"""


class Node:
    """A world-readable directory (another user may run the daemon) with the
    dummy daemon's script, its pid file and its report of who it ran as."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="ar-node-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.run = os.path.join(self.dir, "run")
        os.mkdir(self.run)
        os.chmod(self.run, 0o777)
        self.script = os.path.join(self.dir, "daemon.py")
        with open(self.script, "w") as handle:
            handle.write(DAEMON)
        self.bystander = os.path.join(self.dir, "bystander.py")
        with open(self.bystander, "w") as handle:
            handle.write(BYSTANDER)
        for path in (self.script, self.bystander):
            os.chmod(path, 0o644)
        self.pidfile = os.path.join(self.run, "daemon.pid")
        self.report = os.path.join(self.run, "report.jsonl")
        self.procs = []

    def target(self, life=3600, python=sys.executable, **extra):
        entry = {"start": [python, self.script, self.pidfile, self.report, str(life)],
                 "check": {"pidfile": self.pidfile}, "settle": "5s", "min_uptime": "1s"}
        entry.update(extra)
        return entry

    def spawn(self, argv, **kw):
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, **kw)
        self.procs.append(proc)
        return proc

    def bystander_process(self, *mention):
        """A process whose command line mentions the daemon; logs its signals."""
        log = os.path.join(self.dir, f"signals-{len(self.procs)}.log")
        open(log, "w").close()
        proc = self.spawn([sys.executable, self.bystander, log, *mention])
        assert proc.stdout.readline() == "ready\n"
        return proc, log

    def reports(self):
        if not os.path.exists(self.report):
            return []
        with open(self.report) as handle:
            return [json.loads(line) for line in handle]

    def daemon_pid(self):
        with open(self.pidfile) as handle:
            return int(handle.read())

    def cleanup(self):
        for rec in self.reports():
            try:
                os.kill(rec["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def node():
    n = Node()
    yield n
    n.cleanup()


def config(make_config, entry, name="svc", guards=None):
    section = {"enabled": True, "targets": {name: entry}}
    if guards:
        section["guards"] = guards
    return make_config({"remediations": {"process": section}})


def remediate(run_cli, path, target="svc"):
    ran = run_cli("remediate", "process", "--config", path, target, "--json")
    out = json.loads(ran.stdout)
    out["_exit"] = ran.returncode
    return out


def check(run_cli, *argv):
    return run_cli("check", "process", *argv)


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


# --- a pid file's pid counts only if it is the daemon ---------------------------------

def test_a_reused_pid_is_not_the_daemon_and_the_daemon_is_restarted(run_cli, make_config, node):
    reused, log = node.bystander_process("unrelated")
    with open(node.pidfile, "w") as handle:
        handle.write(f"{reused.pid}\n")
    old = time.time() - 60
    os.utime(node.pidfile, (old, old))                       # written before it started
    ran = check(run_cli, "--pidfile", node.pidfile, "--exe", sys.executable)
    assert ran.returncode == 2, ran
    assert f"pid {reused.pid} from {node.pidfile} is not the daemon: it started" in ran.stdout
    assert "after the pidfile was written (a reused pid)" in ran.stdout
    outcome = remediate(run_cli, config(make_config, node.target()))
    assert outcome["outcome"] == "remediated", outcome
    assert node.daemon_pid() != reused.pid and alive(node.daemon_pid())
    assert reused.poll() is None and open(log).read() == ""    # never signalled


def test_pid_1_another_user_or_another_program_is_not_the_daemon(run_cli, node, daemon_binary):
    with open(node.pidfile, "w") as handle:
        handle.write("1\n")
    ran = check(run_cli, "--pidfile", node.pidfile)
    assert ran.returncode == 2 and "names pid 1 (init or nothing), not a daemon" in ran.stdout
    other = node.spawn(["sleep", "300"], user="nobody")
    time.sleep(0.05)
    with open(node.pidfile, "w") as handle:
        handle.write(f"{other.pid}\n")
    ran = check(run_cli, "--pidfile", node.pidfile, "--user", "root")
    assert ran.returncode == 2 and f"pid {other.pid} from {node.pidfile} is not the daemon: " \
        "it runs as uid 65534, not root" in ran.stdout
    ran = check(run_cli, "--pidfile", node.pidfile, "--exe", sys.executable)
    assert ran.returncode == 2 and "is not the daemon: it runs /usr/bin/sleep, not" in ran.stdout
    assert check(run_cli, "--pidfile", node.pidfile, "--exe", "/usr/bin/sleep").returncode == 0
    ran = check(run_cli, "--name", "sleep", "--exe", "/usr/bin/sleep")
    assert ran.returncode == 3 and "--exe applies to --pidfile" in ran.stdout


# --- D, T and Z are reported as such ---------------------------------------------------

def test_a_stopped_daemon_is_reported_and_not_restarted_blindly(run_cli, make_config, node):
    path = config(make_config, node.target())
    assert remediate(run_cli, path)["outcome"] == "remediated"
    pid = node.daemon_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        ran = check(run_cli, "--pidfile", node.pidfile)
        assert ran.returncode == 2
        assert ran.stdout.startswith(f"PROCESS CRITICAL: 0 processes matching pidfile {node.pidfile}")
        assert f"pid {pid} stopped (T)" in ran.stdout
        outcome = remediate(run_cli, path)
        assert outcome["outcome"] == "refused" and outcome["guard"] == "precondition"
        assert f"pid {pid} is stopped (T)" in outcome["reason"]
        assert len(node.reports()) == 1                        # nothing started
    finally:
        os.kill(pid, signal.SIGCONT)
    assert check(run_cli, "--pidfile", node.pidfile).returncode == 0


def test_a_process_stuck_in_D_is_reported(run_cli, node, tmp_path):
    """A vfork()ing parent waits in uninterruptible sleep until its child execs."""
    source = tmp_path / "vf.c"
    source.write_text("#include <unistd.h>\nint main(void){ if (vfork() == 0) { sleep(60); _exit(0); }"
                      " return 0; }\n")
    binary = tmp_path / "ar-vfork"
    subprocess.run(["gcc", "-o", str(binary), str(source)], check=True)
    proc = node.spawn([str(binary)])
    time.sleep(0.3)
    with open(node.pidfile, "w") as handle:
        handle.write(f"{proc.pid}\n")
    os.utime(node.pidfile, (time.time() + 1, time.time() + 1))
    try:
        ran = check(run_cli, "--pidfile", node.pidfile)
        assert ran.returncode == 2, ran
        assert f"pid {proc.pid} stuck in uninterruptible sleep (D)" in ran.stdout
    finally:
        subprocess.run(["pkill", "-KILL", "-x", "ar-vfork"], check=False)


# --- a cmdline watch matches the daemon's own argv, not bystanders --------------------

def test_bystanders_that_mention_the_daemon_do_not_count(run_cli, node):
    name = f"ar-{os.getpid()}-metadata-agent"
    program = os.path.join(node.dir, name)
    shutil.copy("/bin/sleep", program)
    log = os.path.join(node.dir, f"{name}.log")
    open(log, "w").close()
    tail = node.spawn(["tail", "-f", log])
    editor, _ = node.bystander_process(os.path.join(node.dir, name, "agent.ini"))
    time.sleep(0.1)
    ran = check(run_cli, "--cmdline", name)
    assert ran.returncode == 2, ran                             # only bystanders: dead
    assert ran.stdout.startswith(f"PROCESS CRITICAL: 0 processes matching cmdline {name}")
    node.spawn([program, "300"])
    time.sleep(0.1)
    ran = check(run_cli, "--cmdline", f"{name} 300")
    assert ran.stdout.startswith(f"PROCESS OK: 1 process matching cmdline {name} 300"), ran
    assert tail.poll() is None and editor.poll() is None
    # an interpreter's script counts as the program
    script = os.path.join(node.dir, f"ar-{os.getpid()}-agent-script")
    shutil.copy(node.bystander, script)
    node.spawn([sys.executable, "-u", script, os.path.join(node.dir, "x.log")])
    time.sleep(0.3)
    ran = check(run_cli, "--cmdline", f"ar-{os.getpid()}-agent-script {node.dir}")
    assert ran.stdout.startswith("PROCESS OK: 1 process"), ran


# --- the start command's outcome, and staying up --------------------------------------

def test_a_failing_start_command_is_a_failure_with_its_stderr(run_cli, make_config, node):
    entry = node.target()
    entry["start"] = [sys.executable, "-c",
                      "import sys; sys.stderr.write('cannot read /etc/svc.ini\\n'); sys.exit(3)"]
    outcome = remediate(run_cli, config(make_config, entry))
    assert outcome["outcome"] == "failed" and outcome["_exit"] == 1
    assert "start svc: exit 3: cannot read /etc/svc.ini" in outcome["reason"]


def test_a_daemon_that_dies_after_starting_is_not_verified(run_cli, make_config, node):
    outcome = remediate(run_cli, config(make_config, node.target(life=1.5, min_uptime="3s")))
    assert outcome["outcome"] == "failed", outcome
    assert "svc started, then was not running after" in outcome["reason"]
    assert "less than min_uptime 3s" in outcome["reason"]
    assert outcome["duration_s"] >= 1.5
    assert not alive(node.reports()[0]["pid"])


def test_a_daemon_that_stays_up_is_verified_after_min_uptime(run_cli, make_config, node):
    started = time.monotonic()
    outcome = remediate(run_cli, config(make_config, node.target(min_uptime="2s")))
    assert outcome["outcome"] == "remediated", outcome
    assert time.monotonic() - started >= 2
    assert "(min_uptime 2s)" in outcome["verify"]["summary"]
    assert any(n.startswith("start svc as ") and "running as pid" in n for n in outcome["notes"])


def test_flapping_is_detected_on_the_hook_path(run_cli, make_config, node):
    path = config(make_config, node.target(life=2.0, min_uptime="0.3s"),
                  guards={"flap": {"changes": 2, "window": "1h"},
                          "rate_limit": {"max": 10, "per": "1h"}})
    hook = ["handle", "hook", "process", "--config", path, "--target", "svc",
            "--pidfile", node.pidfile]
    first = run_cli(*hook)
    assert "local process svc: remediated: verified OK" in first.stdout, first
    pid = node.daemon_pid()
    deadline = time.monotonic() + 5
    while alive(pid):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    second = run_cli(*hook)
    assert "local process svc: refused: status changed 2 times" in second.stdout, second
    assert len(node.reports()) == 1                            # not restarted again


# --- identity -------------------------------------------------------------------------

def test_the_daemon_runs_as_its_user_group_environment_and_directory(run_cli, make_config, node):
    os.chown(node.run, 65534, -1)
    entry = node.target(python="/usr/bin/python3", user="nobody", group="nogroup",
                        environment={"AR_SETTING": "on"}, working_directory=node.dir)
    outcome = remediate(run_cli, config(make_config, entry), "svc")
    assert outcome["outcome"] == "remediated", outcome
    [rec] = node.reports()
    import grp
    assert rec["uid"] == 65534 and rec["gid"] == grp.getgrnam("nogroup").gr_gid
    assert rec["cwd"] == node.dir
    assert rec["env"]["AR_SETTING"] == "on" and rec["env"]["USER"] == "nobody"
    assert set(rec["env"]) <= {"PATH", "LC_ALL", "LANG", "LC_CTYPE", "SYSTEMD_PAGER", "HOME",
                               "TMPDIR", "USER", "LOGNAME", "AR_SETTING"}, rec["env"]
    assert rec["sid"] == rec["pid"]                            # its own session
    assert outcome["plan"][-1]["step"].startswith("start svc as nobody group nogroup in ")


def test_a_unit_target_takes_no_identity_and_unknown_users_are_refused(run_cli, make_config, node):
    bad = config(make_config, {"unit": "x", "user": "nobody"})
    ran = run_cli("remediate", "process", "--config", bad, "svc")
    assert "user apply to a start command; a unit sets them itself" in ran.stdout + ran.stderr
    path = config(make_config, node.target(user="no-such-user-ar"))
    outcome = remediate(run_cli, path)
    assert outcome["outcome"] == "refused" and "no such user 'no-such-user-ar'" in outcome["reason"]
    assert node.reports() == []


# --- the sample's metadata-agent entry ------------------------------------------------

def test_the_sample_stop_command_stops_the_agent_and_nothing_else(run_cli, make_config, node):
    with open(os.path.join(ROOT, "packaging", "autoremedy.yaml.sample")) as handle:
        sample = yaml.safe_load(handle)
    entry = sample["remediations"]["process"]["targets"]["metadata-agent"]
    agent = os.path.join(node.dir, "neutron-metadata-agent")
    with open(agent, "w") as handle:
        handle.write("#!/usr/bin/python3\nimport time\ntime.sleep(600)\n")
    os.chmod(agent, 0o755)
    ini = os.path.join(node.dir, "metadata_agent.ini")

    def here(value):
        return value.replace("/usr/bin/neutron-metadata-agent", agent).replace(
            "/etc/neutron/metadata_agent.ini", ini)
    entry = {"start": [here(a) for a in entry["start"]], "stop": [here(a) for a in entry["stop"]],
             "check": entry["check"], "settle": "5s", "min_uptime": "0.5s"}
    # the old sample's stop command can never match: refused at configuration time
    old = config(make_config, dict(entry, stop=["/usr/bin/pkill", "-x", "neutron-metadata"]),
                 name="metadata-agent")
    ran = run_cli("config", "check", "--config", old)
    assert ran.returncode == 3 and "Linux keeps 15 characters of a process name" in ran.stderr
    log = os.path.join(node.dir, "neutron-metadata-agent.log")
    open(log, "w").close()
    tail = node.spawn(["tail", "-f", log])
    running = node.spawn(entry["start"])
    time.sleep(0.3)
    assert subprocess.run(["pkill", "-x", "neutron-metadata"]).returncode == 1  # never matches
    assert subprocess.run(entry["stop"]).returncode == 0
    assert running.wait(timeout=5) == -signal.SIGTERM and tail.poll() is None
    path = config(make_config, entry, name="metadata-agent")
    outcome = remediate(run_cli, path, "metadata-agent")
    assert outcome["outcome"] == "remediated", outcome
    assert tail.poll() is None
    subprocess.run(entry["stop"], check=True)
