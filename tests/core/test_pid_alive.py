"""autoremedy.statefile.pid_alive: the one "does the process a state file names
still run" (the spool's claims, the forwarder's heartbeat), against real
processes: running, exited and reaped, a zombie, another user's, and things that
are not pids at all."""
import json
import os
import subprocess
import sys
import time

import pytest

from autoremedy.pipeline import forwarder
from autoremedy.pipeline.spool import Entry, Spool
from autoremedy.statefile import pid_alive

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


def wait_state(pid, state, timeout=10.0):
    """Wait until /proc says ``pid`` is in ``state`` ('Z': exited, not reaped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            if handle.read().rsplit(b")", 1)[1].split()[0] == state:
                return
        time.sleep(0.02)
    raise AssertionError(f"pid {pid} never reached state {state!r}")


def test_a_running_process_is_alive_and_a_reaped_one_is_not():
    assert pid_alive(os.getpid())
    sleeper = subprocess.Popen(SLEEP)
    try:
        assert pid_alive(sleeper.pid)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not pid_alive(sleeper.pid)


def test_a_zombie_is_not_alive():
    # Exited but not reaped: kill -0 still succeeds, yet it holds nothing.
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        wait_state(child.pid, b"Z")
        os.kill(child.pid, 0)                       # what a bare kill -0 would believe
        assert not pid_alive(child.pid)
    finally:
        child.wait()


def test_another_users_process_is_alive():
    """kill -0 on a process we may not signal fails with EPERM: it exists. Asked
    from a forked child that dropped to nobody, about init (pid 1)."""
    assert os.getuid() == 0, "the suite runs as root (scripts/ci-setup.sh)"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                                    # the child: never back into pytest
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                os.kill(1, 0)
                how = "signalled"
            except PermissionError:
                how = "eperm"
            os.write(write, f"{how} {pid_alive(1)}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as handle:
        answer = handle.read()
    os.waitpid(pid, 0)
    assert answer == "eperm True"


@pytest.mark.parametrize("pid", [0, -1, None, "1", 1.0, True])
def test_what_is_not_a_pid_is_not_alive(pid):
    # kill(0, 0) and kill(-1, 0) would succeed: our process group, every process.
    assert pid_alive(pid) is False


def heartbeat(spool, pid, at=None):
    with open(forwarder.path(spool), "w") as handle:
        json.dump({"pid": pid, "at": time.time() if at is None else at, "concurrency": 1}, handle)


def test_the_forwarders_heartbeat_counts_only_from_a_live_process(tmp_path):
    spool = Spool(str(tmp_path))
    os.makedirs(spool.dir, exist_ok=True)
    heartbeat(spool, os.getpid())
    assert forwarder.alive(spool)
    heartbeat(spool, os.getpid(), at=time.time() - forwarder.STALE - 1)
    assert not forwarder.alive(spool)                        # stale
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        wait_state(child.pid, b"Z")
        heartbeat(spool, child.pid)
        assert not forwarder.alive(spool)                    # a zombie forwards nothing
    finally:
        child.wait()
    assert not forwarder.alive(spool)                        # gone
    heartbeat(spool, 0)
    assert not forwarder.alive(spool)                        # our process group is no forwarder


def test_a_zombie_holds_no_spool_claim(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        wait_state(child.pid, b"Z")
        entry = Entry(str(tmp_path / "e.json"), {"claim": {"pid": child.pid, "until": time.time() + 60}})
        assert Spool.claimed(entry) is False
    finally:
        child.wait()
