"""Dead letters: input that could not become an event, kept with the reason.

    <state_dir>/deadletter/<ns>-<source>-<pid>.raw    the bytes as received (the head
                                                     of them beyond ``max_file``)
    <state_dir>/deadletter/<ns>-<source>-<pid>.json   reason, source, size, how much
                                                     was kept, its sha256, the argv
                                                     for a bad command line, time

A dead letter is what an operator reads (and re-feeds once the cause is fixed:
``autoremedy handle sensu < X.raw``, ``xargs -0 -a X.raw autoremedy handle
zabbix``), so it is bounded: one file keeps at most ``max_file`` bytes, and the
folder at most ``max_count`` letters and ``max_total`` bytes. Room for a new
letter is made by pruning the oldest ones, each pruning audited (``deadletter``
record, result ``pruned``, naming the letter and its reason): a flood of garbage
cannot fill the disk the spool needs, and what was dropped is on record. The
newest input is always kept, because it is the one nobody has seen yet.

Writes are atomic (statefile.write_in); pruning runs under a lock in the folder
so two handlers do not prune the same letters twice. Every name in the folder is
opened relative to the folder's checked fd (safefs): a link planted there is
never followed, by root least of all.
"""
import hashlib
import json
import os
import time

from autoremedy import safefs, statefile

MAX_FILE = 4 << 20          # bytes of one input kept
MAX_TOTAL = 64 << 20        # bytes in the whole folder
MAX_COUNT = 1000            # letters in the folder


class Limits:
    def __init__(self, max_file=MAX_FILE, max_total=MAX_TOTAL, max_count=MAX_COUNT):
        self.max_file = max(1024, int(max_file))
        self.max_total = max(self.max_file * 2, int(max_total))
        self.max_count = max(1, int(max_count))

    @classmethod
    def from_config(cls, config):
        get = config.get
        return cls(get("spool.deadletter_max_file") or MAX_FILE,
                   get("spool.deadletter_max_total") or MAX_TOTAL,
                   get("spool.deadletter_max_count") or MAX_COUNT)


def write(directory, raw, reason, source, size=None, argv=None, limits=None, audit=None,
          clock=time.time):
    """Keep ``raw`` (bytes) with ``reason``; return the path of the .raw file.
    ``size`` is the input's full size when ``raw`` is already a head of it;
    ``argv`` is recorded for a bad command line. Raises OSError when the folder
    cannot be written (the caller says so: the input could not be kept)."""
    limits = limits or Limits()
    total = len(raw) if size is None else max(size, len(raw))
    kept = raw[:limits.max_file]
    stem = f"{time.time_ns():020d}-{_token(source)}-{os.getpid()}"
    meta = {"reason": reason, "source": source, "size": total, "kept": len(kept),
            "truncated": total > len(kept), "sha256": hashlib.sha256(kept).hexdigest(),
            "received_at": round(clock(), 3), "raw": stem + ".raw"}
    if argv is not None:
        meta["argv"] = list(argv)
    body = json.dumps(meta, sort_keys=True).encode()
    with statefile.locked(os.path.join(directory, ".lock")), \
            safefs.open_dir(directory, create=True) as folder:
        _make_room(folder, len(kept) + len(body), limits, audit)
        statefile.write_in(folder, stem + ".raw", kept, mode=0o640)
        statefile.write_in(folder, stem + ".json", body, mode=0o640)
    return os.path.join(directory, stem + ".raw")


def _token(source):
    text = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(source))[:32]
    return text or "input"


def letters(directory):
    """[(stem, bytes)] oldest first (names start with the time in ns).
    ``directory`` is a path or an open safefs.Dir."""
    if isinstance(directory, str):
        try:
            with safefs.open_dir(directory) as folder:
                return letters(folder)
        except FileNotFoundError:
            return []
    sizes = {}
    for name in directory.listdir():
        stem, dot, ext = name.rpartition(".")
        if not dot or ext not in ("raw", "json") or name.startswith("."):
            continue
        try:
            sizes[stem] = sizes.get(stem, 0) + directory.lstat(name).st_size
        except FileNotFoundError:
            continue
    return sorted(sizes.items())


def _make_room(directory, incoming, limits, audit):
    existing = letters(directory)
    used = sum(size for _, size in existing)
    while existing and (len(existing) + 1 > limits.max_count
                        or used + incoming > limits.max_total):
        stem, size = existing.pop(0)
        reason = _reason(directory, stem)
        for ext in ("raw", "json"):
            try:
                directory.unlink(f"{stem}.{ext}")
            except (FileNotFoundError, IsADirectoryError):
                pass
        used -= size
        if audit is not None:
            try:
                audit("deadletter", "pruned", letter=stem, bytes=size, reason=reason,
                      why=f"dead letters over their cap ({limits.max_count} letters, "
                          f"{limits.max_total} bytes): the oldest makes room")
            except Exception:              # noqa: BLE001 - an audit failure must not stop the keeping
                pass


def _reason(directory, stem):
    try:
        return str(json.loads(directory.read(stem + ".json", 1 << 16)).get("reason", ""))[:300]
    except (OSError, ValueError, AttributeError):
        return None
