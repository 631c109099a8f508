"""Small JSON state files shared by processes: readings, rate-limit ledgers, breaker.

``write_atomic`` is the one durable-write primitive (temp file in the same
directory, fsync, rename, fsync of the directory): a reader sees the old file or
the new one, never half of either, even after ``kill -9`` or a power cut.
``locked`` serialises read-modify-write cycles across processes with flock.
``pid_alive`` says whether the process a state file names still runs.
"""
import contextlib
import fcntl
import json
import os

from autoremedy import safefs


def write_atomic(path, data, mode=0o640):
    """Write bytes to ``path`` atomically and durably. The directory is opened
    the safe way (safefs): a link planted at ``path`` is replaced, never
    followed; a planted directory on the way is refused."""
    with safefs.open_dir(os.path.dirname(os.path.abspath(path)), create=True) as directory:
        write_in(directory, os.path.basename(path), data, mode)


def write_in(directory, name, data, mode=0o640):
    """write_atomic into an already opened safefs.Dir."""
    fd, tmp = directory.create_temp(mode=mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        directory.replace(tmp, name)
    except BaseException:
        with contextlib.suppress(OSError):
            directory.unlink(tmp)
        raise
    directory.fsync()


def load(path, default=None):
    """Read a JSON state file; a missing, damaged or planted file gives
    ``default`` (state is advisory: losing it must never stop a check or a
    handler; the next save replaces a planted name)."""
    try:
        return json.loads(safefs.read(path))
    except (OSError, ValueError):
        return default


def save(path, value):
    write_atomic(path, json.dumps(value, sort_keys=True, separators=(",", ":")).encode())


@contextlib.contextmanager
def locked(path, timeout=None):
    """Hold an exclusive flock on ``path`` (created if needed, safely: a link or
    FIFO planted at the name is refused, never followed).

    ``timeout=None`` waits forever, 0 fails at once; raises TimeoutError when the
    lock could not be had in time.
    """
    with safefs.open_dir(os.path.dirname(os.path.abspath(path)), create=True) as directory:
        # Read-only is enough for flock: a lock file some other group member
        # created is usable even where its mode would not let us write it.
        fd = directory.open(os.path.basename(path), os.O_RDONLY | os.O_CREAT, 0o640)
    try:
        if timeout is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            _flock_within(fd, timeout)
        yield fd
    finally:
        os.close(fd)  # closing releases the lock


def _flock_within(fd, timeout):
    import time
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise TimeoutError("lock held by another process") from None
            time.sleep(delay)
            delay = min(delay * 2, 0.25)


@contextlib.contextmanager
def updating(path, default_factory=dict, lock_timeout=None):
    """Lock, load, let the caller mutate, save. Yields the loaded value."""
    with locked(path + ".lock", lock_timeout):
        value = load(path, None)
        if value is None:
            value = default_factory()
        yield value
        save(path, value)


# Here, beside the writes and the locks: a pid is worth something only as part of
# state another process of ours left behind (the spool's claims, the forwarder's
# heartbeat), and those files are this module's. The flock of ``locked`` needs no
# such check (the kernel frees it with its holder); a pid written into a file does.

def pid_alive(pid):
    """Whether process ``pid`` (read from a state file) still runs.

    ``kill(pid, 0)`` asks without signalling: no such process is dead; a process
    of another user (EPERM) exists, so it is alive. A zombie (exited, not reaped
    yet) passes kill -0 but holds no claim and sends no heartbeat: not alive.
    Anything but a positive int is not a process (``kill(0, 0)`` would ask
    about our own process group and succeed)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not _zombie(pid)


def _zombie(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            # the state follows the command name, which may hold ')' itself
            return handle.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False            # no /proc to ask: kill -0 has the last word
