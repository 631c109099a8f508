"""The MySQL/MariaDB backend of autoremedy.clients.coordination: the lock per target and
the ledger of runs, each on one session kept for the process's life.

Why not tooz's MySQL driver: it opens a new connection for every lock (and
closes it at release); on loopback that cost +17 ms per guarded event against
the local flock (target +5 ms). The lock is the same server primitive tooz
uses, ``GET_LOCK`` (https://mariadb.com/kb/en/get_lock/,
https://dev.mysql.com/doc/refman/8.0/en/locking-functions.html), on a kept
session:

- the lock belongs to the session: a holder killed with -9 closes its socket
  and the server frees the lock at once. A host that vanishes without closing
  (powered off, cut off) is covered by a lease: the lock session runs with
  ``wait_timeout = lock_ttl``, a thread pings it every third of that while a
  lock is held, and a session that stops pinging is ended by the server after
  ``lock_ttl`` — with its locks.
- the wait is bounded: ``GET_LOCK(name, lock_timeout)`` answers 0 when the wait
  is over, and the socket's read timeout is the wait plus ``timeout``.
- lock names are at most 64 characters (MySQL's limit): longer ones are hashed.

On Galera, ``GET_LOCK`` is local to one node: point every host at the same
writer (the VIP or proxy the cloud's services use).

The ledger is one table of runs; a reservation is a transaction that first
locks its class's row (``SELECT ... FOR UPDATE``), so reservations of one class
serialise in the server while other classes go on.
"""
import hashlib
import threading
import time

from autoremedy.clients.coordination import close_quietly, decide, entry_for, horizon


def _params(coordinator):
    from urllib.parse import unquote, urlsplit
    parts = urlsplit(coordinator.url)
    return {"host": parts.hostname or "localhost", "port": parts.port or 3306,
            "user": unquote(parts.username or ""), "password": unquote(parts.password or ""),
            "database": parts.path.lstrip("/") or "autoremedy",
            "connect_timeout": coordinator.timeout, "read_timeout": coordinator.timeout * 3,
            "write_timeout": coordinator.timeout, "autocommit": True}


class MySQLBackend:
    def __init__(self, coordinator):
        import pymysql
        self.coordinator = coordinator
        self.pymysql = pymysql
        self.errors = (pymysql.MySQLError, OSError)
        self.params = _params(coordinator)
        self.ttl = max(1, int(round(coordinator.lock_ttl)))
        self.conn = None                # the lock session
        self.used = 0.0                 # monotonic time of its last statement
        self.held = set()
        self.mutex = threading.Lock()   # one statement at a time on the session
        self._stop = threading.Event()
        self._keeper = None
        self.ledger = MySQLLedger(coordinator, pymysql)

    def ping(self):
        self.ledger.ping()

    def _session(self):
        """The lock session; a new one when it was idle long enough for the
        server to have ended it (no lock can be held on it then)."""
        if self.conn is not None and not self.held and time.monotonic() - self.used > self.ttl / 2:
            self._drop()
        if self.conn is None:
            conn = self.pymysql.connect(**self.params)
            with conn.cursor() as cur:
                cur.execute("SET SESSION wait_timeout = %s", (self.ttl,))
            self.conn = conn
        return self.conn

    def _drop(self):
        if self.conn is not None:
            close_quietly(self.conn)
            self.conn = None
            self.held.clear()           # the server frees them with the session

    def acquire(self, name, wait):
        with self.mutex:
            try:
                conn = self._session()
                conn._read_timeout = wait + self.coordinator.timeout   # bounded wait
                try:
                    with conn.cursor() as cur:
                        cur.execute("SELECT GET_LOCK(%s, %s)", (name, wait))
                        got = cur.fetchone()[0]
                finally:
                    conn._read_timeout = self.params["read_timeout"]
                self.used = time.monotonic()
            except self.errors as exc:
                self._drop()
                raise self.coordinator._fail("lock", exc) from None
            if got != 1:
                return False
            self.held.add(name)
            self._start_keeper()
            return True

    def release(self, name):
        with self.mutex:
            if name not in self.held:
                return                  # the session ended: the server freed it
            self.held.discard(name)
            try:
                with self.conn.cursor() as cur:
                    cur.execute("SELECT RELEASE_LOCK(%s)", (name,))
                self.used = time.monotonic()
            except self.errors:
                self._drop()            # the session is gone, and its locks with it

    def _start_keeper(self):
        if self._keeper is None:
            self._keeper = threading.Thread(target=self._keep, name="mysql-lock-lease",
                                            daemon=True)
            self._keeper.start()

    def _keep(self):
        """While a lock is held, keep the session from reaching wait_timeout."""
        while not self._stop.wait(self.ttl / 3):
            with self.mutex:
                if self.held and self.conn is not None:
                    try:
                        self.conn.ping(reconnect=False)
                        self.used = time.monotonic()
                    except self.errors:
                        self._drop()

    def lock(self, name, timeout):
        if len(name) > 64:
            name = name[:23] + "-" + hashlib.sha1(name.encode()).hexdigest()
        return _MySQLLock(self, name, timeout)

    def close(self):
        self._stop.set()
        with self.mutex:
            self._drop()
        self.ledger.close()


class _MySQLLock:
    def __init__(self, backend, name, timeout):
        self.backend, self.name, self.timeout = backend, name, timeout

    def __enter__(self):
        wait = self.timeout if self.timeout is not None else 120.0
        if not self.backend.acquire(self.name, wait):
            raise TimeoutError(f"fleet lock {self.name} held elsewhere for {wait:g}s")
        return self

    def __exit__(self, *exc):
        self.backend.release(self.name)
        return False


class MySQLLedger:
    """One table of runs; a reservation locks its class's row first. On Galera
    the row lock is local to a node and the loser of a cross-node race gets a
    deadlock error at commit: it is retried."""

    SCHEMA = (
        "CREATE TABLE IF NOT EXISTS autoremedy_fleet_classes ("
        " cls VARCHAR(190) NOT NULL PRIMARY KEY) ENGINE=InnoDB",
        "CREATE TABLE IF NOT EXISTS autoremedy_fleet_runs ("
        " id VARCHAR(190) NOT NULL PRIMARY KEY, cls VARCHAR(190) NOT NULL,"
        " tkey VARCHAR(128) NOT NULL, member VARCHAR(255) NOT NULL,"
        " event VARCHAR(255) NOT NULL DEFAULT '', target VARCHAR(255) NOT NULL DEFAULT '',"
        " host VARCHAR(255) NOT NULL DEFAULT '', pid INT NOT NULL DEFAULT 0, ts DOUBLE NOT NULL,"
        " outcome VARCHAR(16) NOT NULL, KEY by_class (cls, ts)) ENGINE=InnoDB",
    )
    IDLE_RECONNECT = 60.0       # a session idle this long is checked before use

    def __init__(self, coordinator, pymysql):
        self.coordinator = coordinator
        self.pymysql = pymysql
        self.params = _params(coordinator)
        self.conn = None
        self.used = 0.0
        self.classes = set()        # class rows known to exist
        self.errors = (pymysql.MySQLError, OSError)

    def _connect(self):
        if self.conn is not None and time.monotonic() - self.used > self.IDLE_RECONNECT:
            self.conn.ping(reconnect=True)      # the server may have ended an idle session
        if self.conn is None:
            conn = self.pymysql.connect(**self.params)
            with conn.cursor() as cur:
                for statement in self.SCHEMA:
                    cur.execute(statement)
                # A reservation waits for the class row at most this long.
                cur.execute("SET SESSION innodb_lock_wait_timeout = %s",
                            (max(1, int(round(self.coordinator.timeout * 2))),))
            self.conn = conn
        self.used = time.monotonic()
        return self.conn

    def _cls(self, cls_name):
        """The class as stored: namespaced, as the Redis and etcd keys are."""
        return f"{self.coordinator.namespace}:{cls_name}"

    def reserve(self, cls_name, key, member, event_id, target, host, limits, now, dry_run,
                per_host=False):
        cls_name = self._cls(cls_name)
        for attempt in range(5):
            try:
                return self._reserve(cls_name, key, member, event_id, target, host, limits,
                                     now, dry_run, per_host)
            except self.pymysql.err.OperationalError as exc:
                self._drop()
                if exc.args and exc.args[0] in (1213, 1205) and attempt < 4:
                    continue            # deadlock / certification conflict: try again
                raise self.coordinator._fail("ledger", exc) from None
            except self.errors as exc:
                self._drop()
                raise self.coordinator._fail("ledger", exc) from None

    def _reserve(self, cls_name, key, member, event_id, target, host, limits, now, dry_run,
                 per_host=False):
        conn = self._connect()
        with conn.cursor() as cur:
            if cls_name not in self.classes:
                cur.execute("INSERT IGNORE INTO autoremedy_fleet_classes (cls) VALUES (%s)",
                            (cls_name,))
                self.classes.add(cls_name)
            conn.begin()
            try:
                cur.execute("SELECT cls FROM autoremedy_fleet_classes WHERE cls = %s FOR UPDATE",
                            (cls_name,))
                cur.execute("DELETE FROM autoremedy_fleet_runs WHERE cls = %s AND ts < %s",
                            (cls_name, now - horizon(limits)))
                cur.execute("SELECT id, tkey, member, event, host, ts, outcome FROM "
                            "autoremedy_fleet_runs WHERE cls = %s ORDER BY ts", (cls_name,))
                runs = [{"id": r[0], "key": r[1], "member": r[2], "event": r[3], "host": r[4],
                         "ts": r[5], "outcome": r[6]} for r in cur.fetchall()]
                verdict = decide(runs, key, member, event_id, limits, now,
                                 host if per_host else None)
                if verdict is not None or dry_run:
                    conn.rollback()
                    return verdict
                entry = entry_for(cls_name.split(":", 1)[1], key, member, event_id, target, host,
                                  now)
                cur.execute("INSERT INTO autoremedy_fleet_runs (id, cls, tkey, member, event, "
                            "target, host, pid, ts, outcome) VALUES "
                            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                            (entry["id"], cls_name, key, member, entry["event"],
                             entry["target"][:255], host[:255], entry["pid"], now, "running"))
                conn.commit()
                return entry
            except BaseException:
                try:
                    conn.rollback()
                except Exception:
                    pass
                raise

    def ping(self):
        try:
            self._connect().ping(reconnect=False)
        except self.errors as exc:
            self._drop()
            raise self.coordinator._fail("ping", exc) from None

    def settle(self, entry, outcome):
        try:
            with self._connect().cursor() as cur:
                cur.execute("UPDATE autoremedy_fleet_runs SET outcome = %s WHERE id = %s",
                            (outcome, entry["id"]))
        except self.errors as exc:
            self._drop()
            raise self.coordinator._fail("ledger", exc) from None

    def runs(self, cls_name):
        with self._connect().cursor() as cur:
            cur.execute("SELECT id, tkey, member, event, host, ts, outcome, target FROM "
                        "autoremedy_fleet_runs WHERE cls = %s ORDER BY ts", (self._cls(cls_name),))
            return [{"id": r[0], "key": r[1], "member": r[2], "event": r[3], "host": r[4],
                     "ts": r[5], "outcome": r[6], "target": r[7]} for r in cur.fetchall()]

    def _drop(self):
        if self.conn is not None:
            close_quietly(self.conn)
            self.conn = None
            self.classes.clear()

    def close(self):
        self._drop()
