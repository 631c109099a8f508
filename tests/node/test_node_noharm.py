"""The no-harm contract of the disk and process classes, on real mounts and processes.

disk: a tmpfs holding logs, user data and a directory bind-mounted *inside* the
log root (same filesystem, so device numbers cannot tell it apart), plus a file
outside reached only by a symlink. The snapshot is the test's own os.walk of
the whole temporary tree (inside and outside the roots) and ``df``.
expect_harm: a deliberately widened walk (device numbers only, as before)
deletes through the bind mount and must end ``failed`` naming that file.

process: a dead dummy daemon and signal-logging bystanders whose command lines
mention it (a ``tail -f`` of its log). The snapshot is which bystanders are
alive, every signal they logged, and how many daemons run. expect_harm: a stop
command widened to ``pkill -f`` kills the bystanders and must end ``failed``.
"""
import os
import subprocess
import sys
import time

import pytest

from nodekit import DAY, FUTURE_DAYS, fill, fresh, future_env
from noharm_harness import Case, expect_harm, expect_no_harm, remediate_json

pytestmark = pytest.mark.integration
MiB = 1024 * 1024


def tree(top):
    """{path: state} of everything under ``top`` — read without autoremedy —
    except autoremedy's own state directory (its ledger and locks change)."""
    out = {}
    for directory, dirs, files in os.walk(top):
        if directory == top:
            dirs[:] = [d for d in dirs if d != "state"]
        for name in dirs + files:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            if os.path.islink(path):
                out[path] = ("symlink", os.readlink(path))
            elif os.path.isdir(path):
                out[path] = ("dir", st.st_ino)
            else:
                out[path] = ("file", st.st_ino, st.st_size)
    return out


def df_used(mount):
    done = subprocess.run(["df", "-B1", "--output=used", mount], capture_output=True, text=True,
                          check=True)
    return int(done.stdout.split()[-1])


class DiskCase(Case):
    cls_name = "disk"

    def __init__(self, run_cli, top, mount, config, old, widen=None):
        self.run_cli, self.top, self.mount, self.config = run_cli, top, mount, config
        self.old, self.widen = old, widen
        self.df = []

    def snapshot(self):
        self.df.append(df_used(self.mount))
        return tree(self.top)

    def remediate(self):
        if not self.widen:
            def ahead(*args):
                return self.run_cli(*args, env=future_env())
            return remediate_json(ahead, self.cls_name, "--config", self.config, self.mount)
        from autoremedy.config import Config
        from autoremedy.contract.remediation import perform
        from autoremedy.remediations import disk

        widen = self.widen

        class Widened(disk.REMEDIATION):
            def candidates(self, rule, target):        # st_dev only: walks into bind mounts
                return widened_candidates(rule, target)

            def unlink(self, root, cand):
                if widen == "walk and unlink":         # by path, as before: no mount check
                    os.unlink(cand.path)
                else:
                    super().unlink(root, cand)
        return perform(Widened(Config.load(self.config, environ={})), self.mount).to_dict()

    def allowed(self):
        return set(self.old)


def widened_candidates(rule, target):
    """What the walk did before: it stays on the device, so a bind mount of the
    same filesystem is walked through."""
    from autoremedy.remediations._disk_files import Candidate
    dev = os.stat(target).st_dev
    now = time.time() + FUTURE_DAYS * DAY
    found = []
    for directory, _dirs, files in os.walk(rule["root"]):
        for name in files:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            if (os.path.isfile(path) and not os.path.islink(path) and st.st_dev == dev
                    and max(st.st_mtime, st.st_ctime) < now - rule["older_than"]
                    and name.endswith((".1", ".gz", ".old"))):
                found.append(Candidate(path, st, now - st.st_ctime, rule))
    return found, []


@pytest.fixture
def bound_disk(tmpfs, bind, tmp_path, make_config):
    """95.5% full: 7 MiB of old rotated logs; a bind mount of another directory
    of the same tmpfs inside the log root, holding an old rotated log too."""
    mount = tmpfs("10m")
    logs = os.path.join(mount, "log")
    os.makedirs(os.path.join(logs, "nova"))
    old = [fill(logs, 2 * MiB, "syslog.1"), fill(os.path.join(logs, "nova"), 3 * MiB, "nova.log.2.gz"),
           fill(logs, 2 * MiB, "kern.log.old")]
    fresh(fill(logs, MiB // 2, "syslog.2.gz"))                           # recent: kept
    fill(logs, MiB // 2, "syslog")                                       # live: kept
    fill(mount, int(1.3 * MiB), "database.ibd")                          # not a log: kept
    elsewhere = os.path.join(mount, "elsewhere")
    os.mkdir(elsewhere)
    fill(elsewhere, MiB // 4, "secret.1")                                # outside the root
    os.mkdir(os.path.join(logs, "bound"))
    bind(elsewhere, os.path.join(logs, "bound"))
    precious = tmp_path / "precious.1"
    precious.write_bytes(b"x" * 1000)
    os.symlink(str(precious), os.path.join(logs, "link.1"))
    config = make_config({"remediations": {"disk": {"enabled": True, "targets": {mount: {
        "warning": 85, "critical": 95, "target": 20,
        "rules": [{"type": "rotated-logs", "root": logs, "older_than": "7d"}]}}}}})
    return {"top": str(tmp_path), "mount": mount, "config": config, "old": old,
            "bound": os.path.join(logs, "bound", "secret.1")}


def test_disk_cleanup_harms_nothing_outside_its_plan(run_cli, bound_disk):
    d = bound_disk
    case = DiskCase(run_cli, d["top"], d["mount"], d["config"], d["old"])
    run = expect_no_harm(case)
    assert sorted(set(run.before) - set(run.after)) == sorted(d["old"])
    assert os.path.exists(d["bound"])
    freed = case.df[0] - case.df[1]
    assert freed >= 7 * MiB, case.df
    assert run.outcome["reach"][0]["names"] == sorted(d["old"]) or \
        sorted(run.outcome["reach"][0]["names"]) == sorted(d["old"])


def test_a_walk_widened_through_a_bind_mount_fails_naming_the_file(run_cli, bound_disk):
    d = bound_disk
    case = DiskCase(run_cli, d["top"], d["mount"], d["config"], d["old"], widen="walk and unlink")
    run = expect_harm(case, named=[f"file {d['bound']} changed outside the plan"])
    assert run.outcome["outcome"] == "failed"
    # the test's own snapshot agrees: the bound file (under both of its names) is what changed
    assert {line.split(":")[0] for line in run.differences} == {
        d["bound"], d["bound"].replace(os.path.join("log", "bound"), "elsewhere")}


def test_a_widened_walk_alone_is_stopped_at_deletion_time(run_cli, bound_disk):
    """Defence in depth: the deletion opens every directory without following
    symlinks and checks its mount id, so even a plan naming a file through a
    bind mount cannot delete it."""
    d = bound_disk
    case = DiskCase(run_cli, d["top"], d["mount"], d["config"], d["old"], widen="walk")
    run = expect_no_harm(case)
    assert f"{d['bound']}: its directory is on another mount" in " ".join(run.outcome["notes"])
    assert os.path.exists(d["bound"])


# --- process ----------------------------------------------------------------------

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
while True:
    time.sleep(1)
"""


class ProcessCase(Case):
    cls_name = "process"

    def __init__(self, run_cli, config, daemon, bystanders):
        self.run_cli, self.config, self.daemon = run_cli, config, daemon
        self.bystanders = bystanders            # [(Popen, signal log path)]

    def snapshot(self):
        state = {}
        for proc, log in self.bystanders:
            alive = proc.poll() is None
            with open(log) as handle:
                state[f"bystander {proc.pid}"] = (alive, handle.read())
        state["daemon"] = daemons(self.daemon)
        return state

    def remediate(self):
        return remediate_json(self.run_cli, self.cls_name, "--config", self.config, "demo-daemon")

    def allowed(self):
        return {"daemon"}


def daemons(binary):
    """How many processes run the dummy daemon's own program (argv[0])."""
    count = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as handle:
                    if handle.read().split(b"\0")[0] == binary.encode():
                        count += 1
            except OSError:
                continue
    return count


@pytest.fixture
def bystanders(tmp_path, daemon_binary, spawn):
    """Two processes that mention the daemon (a tail of its log, an editor on
    its configuration), logging every signal they get."""
    script = tmp_path / "bystander.py"
    script.write_text(BYSTANDER)
    name = os.path.basename(daemon_binary)
    out = []
    for mention in (f"/var/log/{name}.log", f"/etc/{name}/{name}.ini"):
        log = tmp_path / f"signals-{len(out)}.log"
        log.write_text("")
        out.append((spawn([sys.executable, str(script), str(log), mention]), str(log)))
    time.sleep(0.3)                             # handlers installed
    return out


def process_config(make_config, daemon_binary, stop):
    return make_config({"remediations": {"process": {"enabled": True, "targets": {"demo-daemon": {
        "start": [daemon_binary, "3600"], "stop": stop,
        "check": {"cmdline": f"{os.path.basename(daemon_binary)} 3600"}, "settle": "5s"}}}}})


def test_restart_harms_no_bystander(run_cli, make_config, daemon_binary, bystanders):
    name = os.path.basename(daemon_binary)
    config = process_config(make_config, daemon_binary, ["pkill", "-x", name])
    try:
        run = expect_no_harm(ProcessCase(run_cli, config, daemon_binary, bystanders))
        assert run.before["daemon"] == 0 and run.after["daemon"] == 1
    finally:
        subprocess.run(["pkill", "-x", name], check=False)


def test_a_stop_command_that_kills_bystanders_fails_naming_them(run_cli, make_config, daemon_binary,
                                                                bystanders):
    name = os.path.basename(daemon_binary)
    config = process_config(make_config, daemon_binary, ["pkill", "-f", name])   # too wide
    try:
        run = expect_harm(ProcessCase(run_cli, config, daemon_binary, bystanders),
                          named=["changed outside the plan"])
        assert run.outcome["outcome"] == "failed"
        for proc, _log in bystanders:
            assert f"process {proc.pid}@" in " ".join(run.outcome["harm"])
        assert all(state == (False, "SIGTERM\n") for key, state in run.after.items()
                   if key.startswith("bystander"))
    finally:
        subprocess.run(["pkill", "-x", name], check=False)
