"""Small JSON state files shared by processes: readings, rate-limit ledgers, breaker.

``write_atomic`` is the one durable-write primitive (temp file in the same
directory, fsync, rename, fsync of the directory): a reader sees the old file or
the new one, never half of either, even after ``kill -9`` or a power cut.
``locked`` serialises read-modify-write cycles across processes with flock.
"""
import contextlib
import fcntl
import json
import os
import tempfile


def write_atomic(path, data, mode=0o640):
    """Write bytes to ``path`` atomically and durably."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o750, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def fsync_dir(directory):
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load(path, default=None):
    """Read a JSON state file; a missing or damaged file gives ``default``
    (state is advisory: losing it must never stop a check or a handler)."""
    try:
        with open(path, "rb") as handle:
            return json.loads(handle.read())
    except (OSError, ValueError):
        return default


def save(path, value):
    write_atomic(path, json.dumps(value, sort_keys=True, separators=(",", ":")).encode())


@contextlib.contextmanager
def locked(path, timeout=None):
    """Hold an exclusive flock on ``path`` (created if needed).

    ``timeout=None`` waits forever, 0 fails at once; raises TimeoutError when the
    lock could not be had in time.
    """
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, mode=0o750, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
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
