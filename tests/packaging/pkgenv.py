"""Paths and helpers the packaging tests share (imported by name from the test
modules; kept out of conftest.py so no other area's conftest can shadow it)."""
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PACKAGING = os.path.join(ROOT, "packaging")
SCRIPTS = os.path.join(ROOT, "scripts")
VENV_BIN = os.path.dirname(sys.executable)
AUTOREMEDY = os.path.join(VENV_BIN, "autoremedy")


def need(tool):
    """The path of an external tool the test needs; fails (never skips) without it."""
    path = shutil.which(tool) or (tool if os.path.isfile(tool) else None)
    if path is None:
        pytest.fail(f"{tool} is not installed: run scripts/setup.d/40-zabbix.sh and 45-packaging.sh")
    return path


def classes():
    """The check classes this build has (`autoremedy check --list`)."""
    out = subprocess.run([AUTOREMEDY, "check", "--list"], capture_output=True, text=True, check=True)
    return out.stdout.split()


class machine_lock:
    """Hold an exclusive lock on /run/lock/autoremedy-tests-NAME.lock while using
    something there is one of per machine (the dpkg database and the installed
    package; the Zabbix stack's fixed ports, its database and
    /etc/zabbix/zabbix.conf.php). Test sessions run side by side (several
    checkouts, a `make test` beside a single file's run) then take turns instead
    of failing on dpkg's lock or on busy ports — or, worse, one session purging
    the package another is testing. Waits at most ``timeout`` seconds."""

    def __init__(self, name, timeout=900):
        self.path = f"/run/lock/autoremedy-tests-{name}.lock"
        self.timeout = timeout
        self.handle = None

    def __enter__(self):
        import fcntl
        import time
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.handle = open(self.path, "a+")
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self.handle.close()
                    pytest.fail(f"{self.path} still held by another test session after {self.timeout}s")
                time.sleep(1)
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"{os.getpid()}\n")
        self.handle.flush()
        return self

    def __exit__(self, *exc):
        import fcntl
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()
        return False


def dpkg(*args, timeout=300):
    """dpkg ARGS, waiting (bounded) while another program holds dpkg's lock:
    a package manager running beside the tests (apt, unattended-upgrades, a
    setup script) is waited for, the way apt's DPkg::Lock::Timeout does."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        proc = subprocess.run([need("dpkg"), *map(str, args)], capture_output=True, text=True)
        locked = proc.returncode != 0 and "lock" in proc.stderr and "locked by another process" in proc.stderr
        if not locked or time.monotonic() > deadline:
            return proc
        time.sleep(2)
