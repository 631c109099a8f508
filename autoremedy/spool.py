"""The durable spool: every event is on disk before the first delivery attempt.

Layout under the state directory::

    spool/<ns>-<key>.json       one file per event (key = Event.spool_key), named by
                                the time it was first spooled so a sorted listing is
                                the delivery order
    spool/.lock                 serialises put() across handler processes
    spool/.replay.lock          one replay at a time
    deadletter/<ns>-<source>-<pid>.raw   the raw input that could not be parsed
    deadletter/<ns>-<source>-<pid>.json  why, when, how big

Writes go through ``statefile.write_atomic`` (temp file + fsync + rename + fsync of
the directory): after ``kill -9`` or a power cut a reader sees the whole old file or
the whole new one, never a torn one. A file is removed only after StackStorm
answered 2xx; a crash between that answer and the unlink means one duplicate
delivery with the same trace tag, never a loss.

While a handler works on its event (POST, then perhaps a local remediation) the
entry carries a *claim* (pid + expiry): replay leaves claimed entries alone, so an
event is not delivered twice in parallel; a claim of a dead process is void.
"""
import json
import os
import time

from autoremedy import statefile

CLAIM_TTL = 3600.0          # a claim older than this is void even if the pid was reused
TEMP_MAX_AGE = 600.0        # temp files of writers killed mid-write are swept after this
FORMAT = 1


class CorruptEntry(Exception):
    """A spool file that cannot be read back (disk fault, manual edit)."""


class Entry:
    """One spooled event and what happened to it so far."""

    def __init__(self, path, data):
        self.path = path
        self.name = os.path.basename(path)
        self.data = data

    @property
    def id(self):
        return self.data["id"]

    @property
    def key(self):
        return self.data["key"]

    @property
    def event(self):
        from autoremedy.event import Event
        return Event.from_dict(self.data["event"])

    @property
    def spooled_at(self):
        return self.data["spooled_at"]

    @property
    def attempts(self):
        return self.data.get("attempts", 0)

    @property
    def local(self):
        """Local remediation outcomes recorded for this event (oldest first)."""
        return self.data.setdefault("local", [])

    def mark_local(self, outcome, host):
        self.local.append({"class": outcome.cls_name, "target": str(outcome.target),
                           "outcome": outcome.status, "reason": outcome.reason,
                           "guard": outcome.guard, "verify": outcome.verify,
                           "dry_run": outcome.status == "dry-run", "host": host,
                           "at": round(time.time(), 3)})

    def mark_escalated(self, reason, bundle=None):
        self.data["escalation"] = {"reason": reason, "at": round(time.time(), 3),
                                   "bundle": bundle}

    def attempted(self, error):
        self.data["attempts"] = self.attempts + 1
        self.data["last_error"] = error
        self.data["last_attempt"] = round(time.time(), 3)

    def __repr__(self):
        return f"Entry({self.name})"


class Spool:
    def __init__(self, state_dir):
        self.state_dir = state_dir
        self.dir = os.path.join(state_dir, "spool")
        self.deadletter_dir = os.path.join(state_dir, "deadletter")
        self.lock_path = os.path.join(self.dir, ".lock")
        self.replay_lock_path = os.path.join(self.dir, ".replay.lock")

    # -- writing --------------------------------------------------------------------
    def put(self, event, claim=True, clock=time.time):
        """Spool ``event`` durably and return its Entry. The same event spooled again
        (same id and state: a retried alert, 20 handlers with one event) updates the
        one entry, keeping its place in the order and its local-remediation marks."""
        now = clock()
        key = event.spool_key
        with statefile.locked(self.lock_path):
            existing = self._find(key)
            entry = None
            if existing is not None:
                try:
                    entry = self._read(existing)
                except CorruptEntry as exc:
                    self._quarantine(existing, str(exc))
                    entry = None
            if entry is None:
                name = f"{time.time_ns():020d}-{key}.json"
                entry = Entry(os.path.join(self.dir, name), {
                    "v": FORMAT, "key": key, "id": event.id, "spooled_at": round(now, 6),
                    "attempts": 0, "last_error": None, "local": [], "escalation": None})
            entry.data["event"] = event.to_dict(with_raw=True)
            entry.data["updated_at"] = round(now, 6)
            entry.data["claim"] = _claim(now) if claim else None
            self._write(entry)
        return entry

    def save(self, entry, release=True):
        """Write back an entry's marks (attempts, local outcomes, escalation)."""
        if release:
            entry.data["claim"] = None
        entry.data["updated_at"] = round(time.time(), 6)
        with statefile.locked(self.lock_path):
            if not os.path.exists(entry.path):
                # Delivered and removed meanwhile (a replay took it after its claim
                # lapsed): the marks are news StackStorm has not heard, so spool again.
                entry.path = os.path.join(self.dir, f"{time.time_ns():020d}-{entry.key}.json")
                entry.name = os.path.basename(entry.path)
            self._write(entry)

    def remove(self, entry):
        """Forget a delivered entry. No directory fsync: if the unlink is lost in a
        crash the event is delivered once more, with the same trace tag."""
        try:
            os.unlink(entry.path)
        except FileNotFoundError:
            pass

    def _write(self, entry):
        data = json.dumps(entry.data, sort_keys=True, separators=(",", ":"), default=str)
        statefile.write_atomic(entry.path, data.encode())

    # -- reading --------------------------------------------------------------------
    def names(self):
        """Entry file names in delivery order (oldest first)."""
        try:
            return sorted(n for n in os.listdir(self.dir) if n.endswith(".json") and n[0] != ".")
        except FileNotFoundError:
            return []

    def _find(self, key):
        suffix = f"-{key}.json"
        for name in self.names():
            if name.endswith(suffix):
                return os.path.join(self.dir, name)
        return None

    def load(self, name):
        """The Entry for ``name``, or None if it has gone (delivered meanwhile)."""
        path = os.path.join(self.dir, name)
        try:
            return self._read(path)
        except FileNotFoundError:
            return None

    def _read(self, path):
        with open(path, "rb") as handle:
            raw = handle.read()
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("v") != FORMAT or "event" not in data:
                raise ValueError("not a spool entry")
        except ValueError as exc:
            raise CorruptEntry(f"{os.path.basename(path)}: {exc}") from None
        return Entry(path, data)

    def entries(self):
        """Yield (name, Entry or CorruptEntry) in order; vanished files are skipped."""
        for name in self.names():
            try:
                entry = self.load(name)
            except CorruptEntry as exc:
                yield name, exc
                continue
            if entry is not None:
                yield name, entry

    @staticmethod
    def claimed(entry, now=None):
        """True while a live handler process is still working on this entry."""
        claim = entry.data.get("claim")
        if not claim:
            return False
        now = time.time() if now is None else now
        if claim.get("until", 0) < now:
            return False
        pid = claim.get("pid")
        if not isinstance(pid, int) or pid == os.getpid():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return _not_zombie(pid)

    # -- dead letters and housekeeping ------------------------------------------------
    def deadletter(self, raw, reason, source):
        """Keep input that could not be parsed, with the reason; return its path."""
        stem = f"{time.time_ns():020d}-{source}-{os.getpid()}"
        raw_path = os.path.join(self.deadletter_dir, stem + ".raw")
        statefile.write_atomic(raw_path, raw, mode=0o640)
        meta = {"reason": reason, "source": source, "size": len(raw), "received_at": time.time(),
                "raw": os.path.basename(raw_path)}
        statefile.write_atomic(os.path.join(self.deadletter_dir, stem + ".json"),
                               json.dumps(meta, sort_keys=True).encode(), mode=0o640)
        return raw_path

    def _quarantine(self, path, reason):
        """Move an unreadable entry out of the delivery order, into the dead letters."""
        try:
            with open(path, "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            return None
        kept = self.deadletter(raw, f"corrupt spool entry: {reason}", "spool")
        os.unlink(path)
        return kept

    def quarantine(self, name, reason):
        return self._quarantine(os.path.join(self.dir, name), reason)

    def sweep_temp(self, now=None, max_age=TEMP_MAX_AGE):
        """Remove temp files left by writers killed mid-write (they never became
        entries, so nothing is lost with them); return how many."""
        now = time.time() if now is None else now
        removed = 0
        for directory in (self.dir, self.deadletter_dir):
            try:
                names = os.listdir(directory)
            except FileNotFoundError:
                continue
            for name in names:
                if not (name.startswith(".tmp-") and name.endswith(".part")):
                    continue
                path = os.path.join(directory, name)
                try:
                    if now - os.lstat(path).st_mtime > max_age:
                        os.unlink(path)
                        removed += 1
                except FileNotFoundError:
                    continue
        return removed

    def stats(self, now=None):
        """{depth, oldest_age, oldest, deadletter}: cheap enough for a check (a
        directory listing; the age comes from the oldest file's name)."""
        now = time.time() if now is None else now
        names = self.names()
        oldest_age = None
        if names:
            try:
                oldest_age = max(0.0, now - int(names[0].split("-", 1)[0]) / 1e9)
            except ValueError:
                oldest_age = None
        try:
            dead = sum(1 for n in os.listdir(self.deadletter_dir) if n.endswith(".json"))
        except FileNotFoundError:
            dead = 0
        return {"depth": len(names), "oldest_age": oldest_age,
                "oldest": names[0] if names else None, "deadletter": dead,
                "path": self.dir}


def _claim(now):
    return {"pid": os.getpid(), "until": round(now + CLAIM_TTL, 3)}


def _not_zombie(pid):
    """kill -0 succeeds on zombies; a zombie holds no claim."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return fields[0] != b"Z"
    except (OSError, IndexError):
        return True
