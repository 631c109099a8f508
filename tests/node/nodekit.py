"""Helpers for the node tests (a unique module name: every test area has a conftest)."""
import os
import time

DAY = 86400.0
# A file's age is the newest of its mtime and ctime, and ctime cannot be set back:
# so instead of making files old, the disk remediation runs FUTURE_DAYS ahead
# under libfaketime (scripts/setup.d/50-node.sh). Every file the test writes is
# then FUTURE_DAYS old; ``fresh()`` makes one new at that time.
FUTURE_DAYS = 10
LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def future_env(days=FUTURE_DAYS):
    """Environment for a command that runs ``days`` ahead (monotonic time and
    file timestamps stay real)."""
    if not os.path.exists(LIBFAKETIME):
        raise AssertionError(f"{LIBFAKETIME} missing: run scripts/setup.d/50-node.sh")
    return {"LD_PRELOAD": LIBFAKETIME, "FAKETIME": f"+{days}d",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1", "NO_FAKE_STAT": "1",
            "FAKETIME_DONT_RESET": "1"}


def fill(directory, nbytes, name="fill.bin"):
    with open(os.path.join(directory, name), "wb") as handle:
        handle.write(b"\0" * nbytes)
    return os.path.join(directory, name)


def age(path, days):
    """Set mtime ``days`` back (ctime becomes now: what ``tar x``/``cp -p`` do)."""
    old = time.time() - days * DAY
    os.utime(path, (old, old))


def fresh(path, days=FUTURE_DAYS):
    """New as seen from a run ``days`` ahead: mtime set to that time."""
    new = time.time() + days * DAY
    os.utime(path, (new, new))
