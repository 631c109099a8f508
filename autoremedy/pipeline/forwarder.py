"""The continuous forwarder's heartbeat: how a handler knows it may hand an
event over instead of waiting on StackStorm itself (docs/fleet.md, "Storm-proof
delivery").

``autoremedy replay --follow`` (handlers/replay.py) writes
``<state_dir>/spool/.forwarder.json`` = {pid, at, concurrency} every second
from its own thread; a handler configured with ``stackstorm.delivery:
forwarder`` hands over only while that file is fresh and its process exists.
"""
import json
import os
import time

HEARTBEAT = ".forwarder.json"
EVERY = 1.0          # seconds between heartbeats
STALE = 10.0         # a handler trusts a heartbeat at most this old


def path(spool):
    return os.path.join(spool.dir, HEARTBEAT)


def beat(spool, concurrency):
    from autoremedy import statefile
    statefile.write_atomic(path(spool), json.dumps(
        {"pid": os.getpid(), "at": time.time(), "concurrency": concurrency}).encode())


def alive(spool, now=None):
    """True when a forwarder is running for this spool: fresh heartbeat, live pid."""
    from autoremedy import safefs
    try:
        # safefs: a FIFO or link a group member planted at the name is refused
        # at once (a blocking open would hang the handler and cost its event).
        data = json.loads(safefs.read(path(spool), 4096))
        pid, at = int(data["pid"]), float(data["at"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    now = time.time() if now is None else now
    if now - at > STALE:
        return False
    from autoremedy.statefile import pid_alive
    return pid_alive(pid)


def gone(spool):
    from autoremedy import safefs
    try:
        safefs.unlink(path(spool))      # relative to the checked spool directory
    except OSError:
        pass
