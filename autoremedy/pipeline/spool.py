"""The durable spool: every event is on disk before the first delivery attempt.

Layout under the state directory::

    spool/<ns>-<key>.json       one file per event (key = Event.spool_key), named by
                                the time it was first spooled so a sorted listing is
                                the delivery order
    spool/.lock                 serialises put() across handler processes
    spool/.replay.lock          one replay at a time
    deadletter/<ns>-<source>-<pid>.raw   the raw input that could not be parsed
    deadletter/<ns>-<source>-<pid>.json  why, when, how big (autoremedy.pipeline.deadletter)

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

from autoremedy import safefs, statefile

CLAIM_TTL = 3600.0          # a claim older than this is void even if the pid was reused
TEMP_MAX_AGE = 600.0        # temp files of writers killed mid-write are swept after this
FORMAT = 1


class CorruptEntry(Exception):
    """A spool file that cannot be read back (disk fault, manual edit)."""


class PlantedEntry(CorruptEntry):
    """A name in the spool that is no file of ours (a link, a FIFO, a hard link, a
    file moved in): removed, never read, never kept as a dead letter."""


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
        from autoremedy.pipeline.event import Event
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
            if not self._exists(entry.name):
                # Delivered and removed meanwhile (a replay took it after its claim
                # lapsed): the marks are news StackStorm has not heard, so spool again.
                entry.path = os.path.join(self.dir, f"{time.time_ns():020d}-{entry.key}.json")
                entry.name = os.path.basename(entry.path)
            self._write(entry)

    def remove(self, entry):
        """Forget a delivered entry. No directory fsync: if the unlink is lost in a
        crash the event is delivered once more, with the same trace tag."""
        try:
            with self._open() as directory:
                directory.unlink(entry.name)
        except FileNotFoundError:
            pass

    def _write(self, entry):
        data = json.dumps(entry.data, sort_keys=True, separators=(",", ":"), default=str)
        with self._open(create=True) as directory:
            statefile.write_in(directory, entry.name, data.encode())

    def _open(self, create=False):
        """The spool directory, opened and checked (safefs: every name in it is
        resolved relative to this fd, never through a planted link)."""
        return safefs.open_dir(self.dir, create=create)

    # -- reading --------------------------------------------------------------------
    def names(self):
        """Entry file names in delivery order (oldest first)."""
        try:
            with self._open() as directory:
                listing = directory.listdir()
        except FileNotFoundError:
            return []
        return sorted(n for n in listing if n.endswith(".json") and n[0] != ".")

    def _exists(self, name):
        try:
            with self._open() as directory:
                directory.lstat(name)
            return True
        except FileNotFoundError:
            return False

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
        try:
            raw = safefs.read(path)
        except safefs.Refused as exc:
            # A link, FIFO or foreign file planted in the spool: never read
            # through it (a root replay would copy what it points at).
            raise PlantedEntry(exc.why) from None
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
        return pid != os.getpid() and statefile.pid_alive(pid)

    # -- dead letters and housekeeping ------------------------------------------------
    def deadletter(self, raw, reason, source, **options):
        """Keep input that could not be parsed, with the reason; return its path
        (autoremedy.pipeline.deadletter: capped per file and for the folder)."""
        from autoremedy.pipeline import deadletter
        return deadletter.write(self.deadletter_dir, raw, reason, source, **options)

    def _quarantine(self, path, reason):
        """Move an unreadable entry out of the delivery order, into the dead
        letters. A planted name (link, FIFO, hard link, foreign file) is only
        removed: its content is not ours to copy anywhere. Returns the dead
        letter's path, or None."""
        name = os.path.basename(path)
        try:
            raw = safefs.read(path)
        except FileNotFoundError:
            return None
        except safefs.Refused:
            raw = None
        kept = None
        if raw is not None:
            kept = self.deadletter(raw, f"corrupt spool entry: {reason}", "spool")
        with self._open() as directory:
            try:
                directory.unlink(name)
            except IsADirectoryError:
                pass        # a directory planted under an entry's name: names() skips it
            except FileNotFoundError:
                pass
        return kept

    def quarantine(self, name, reason):
        return self._quarantine(os.path.join(self.dir, name), reason)

    def sweep_temp(self, now=None, max_age=TEMP_MAX_AGE):
        """Remove temp files left by writers killed mid-write (they never became
        entries, so nothing is lost with them); return how many."""
        now = time.time() if now is None else now
        removed = 0
        for path in (self.dir, self.deadletter_dir):
            try:
                directory = safefs.open_dir(path)
            except FileNotFoundError:
                continue
            with directory:
                for name in directory.listdir():
                    if not (name.startswith(".tmp-") and name.endswith(".part")):
                        continue
                    try:
                        if now - directory.lstat(name).st_mtime > max_age:
                            directory.unlink(name)
                            removed += 1
                    except (FileNotFoundError, IsADirectoryError):
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
            with safefs.open_dir(self.deadletter_dir) as directory:
                dead = sum(1 for n in directory.listdir() if n.endswith(".json"))
        except FileNotFoundError:
            dead = 0
        return {"depth": len(names), "oldest_age": oldest_age,
                "oldest": names[0] if names else None, "deadletter": dead,
                "path": self.dir}


def _claim(now):
    return {"pid": os.getpid(), "until": round(now + CLAIM_TTL, 3)}
