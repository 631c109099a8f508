"""Guards that hold across hosts: the lock per target, the run ledger behind
``rate_limit`` / ``global_cap`` and the ``fleet_cap`` guard, kept in a
coordination service the cloud already runs (docs/fleet.md).

    coordination:
      backend_url: redis://10.0.0.5:6379/0        # or mysql://user:pw@db/autoremedy,
                                                  # etcd3+http://10.0.0.5:2379; default: local
      unreachable: refuse          # node-scoped classes when the backend is unreachable:
                                   # refuse (default) | local (this host's lock and caps only)
      timeout: 2s                  # longest wait for one answer of the backend
      lock_ttl: 30s                # a holder killed with -9 frees its lock after this (Redis, etcd)

Without the section (``backend_url: local``) everything stays in the host's
state directory as before and this module imports nothing: tooz (OpenStack's
coordination library) and the backend clients are imported only when a backend
is configured, so a check or a handler on a host without coordination pays
nothing for it (bench/bench_imports.py).

What goes where:

- **locks** through tooz (``get_lock``): Redis locks with a lease renewed while
  the holder lives, MySQL/MariaDB ``GET_LOCK`` (freed by the server when the
  holder's session dies), etcd3 keys bound to a lease. A holder killed with -9
  stops renewing: its lock is free after ``lock_ttl`` (Redis, etcd) or at once
  (MySQL, session loss).
- **the ledger** (every reserved run: class, target key, host or target counted
  by ``fleet_cap``, event id, outcome) is *not* in tooz, which offers no
  counters: it is one atomic step in the backend itself — a Lua script on a
  sorted set in Redis (scripts run alone on the server), a transaction holding
  the class's row ``FOR UPDATE`` in MySQL/MariaDB, a compare-and-swap
  transaction on the class's key in etcd. Reading the window, deciding and
  recording the run are one step, so three hosts reserving at once never see
  the same free slot (tests/fleet).

Fail-safe: when the backend does not answer within ``timeout`` (or its lock
within the guard's ``lock_timeout``), an API-scoped remediation refuses with the
reason (two hosts acting on one API object is exactly what the lock is for), and
a node-scoped one refuses too unless ``unreachable: local`` lets it go on under
this host's own lock and caps (the fleet cap is then not counted: said in the
outcome).
"""
import json
import os
import random
import threading
import time

LOCAL = "local"
REFUSE = "refuse"
POLICIES = (REFUSE, LOCAL)
SCHEMES = ("redis", "rediss", "mysql", "etcd3+http", "etcd3+https")
IDLE = ("noop", "refused")      # the guard's own rule: runs that changed nothing count for nothing


class Unreachable(Exception):
    """The coordination backend did not answer (in time); the text says which and why."""


def settings(config):
    """The coordination section with defaults, or None when it is local."""
    section = dict(config.get("coordination") or {})
    url = (section.get("backend_url") or LOCAL).strip()
    if url == LOCAL:
        return None
    section["backend_url"] = url
    section.setdefault("unreachable", REFUSE)
    section.setdefault("timeout", 2.0)
    section.setdefault("lock_ttl", 30.0)
    section.setdefault("namespace", "autoremedy")
    return section


def check(config):
    """Config-time validation: a message naming the key, or None."""
    section = config.get("coordination") or {}
    url = (section.get("backend_url") or LOCAL).strip()
    policy = section.get("unreachable", REFUSE)
    if policy not in POLICIES:
        return f"coordination.unreachable: {policy!r} is not one of {', '.join(POLICIES)}"
    if url == LOCAL:
        return None
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in SCHEMES:
        return (f"coordination.backend_url: {display(url)!r} is not local or "
                f"{', '.join(s + '://...' for s in SCHEMES)}")
    for key in ("timeout", "lock_ttl"):
        if key in section and not section[key] > 0:
            return f"coordination.{key}: must be more than 0"
    return None


def display(url):
    """The URL without its password: for reasons, audit records and logs."""
    from urllib.parse import urlsplit, urlunsplit
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return urlunsplit(parts._replace(query=""))
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}", query=""))


_FLEETS = {}
_FLEETS_LOCK = threading.Lock()


def for_config(config):
    """The process's Coordinator for the configured backend (one per URL: a
    handler process starts it once), or None when coordination is local."""
    section = settings(config)
    if section is None:
        return None
    problem = check(config)
    if problem:
        from autoremedy.config import ConfigError
        raise ConfigError(problem)
    member = f"{config.hostname}-{os.getpid()}"
    key = (section["backend_url"], section["namespace"], member)
    with _FLEETS_LOCK:
        found = _FLEETS.get(key)
        if found is None:
            found = _FLEETS[key] = Coordinator(section, member)
        return found


def close_all():
    with _FLEETS_LOCK:
        fleets = list(_FLEETS.values())
        _FLEETS.clear()
    for fleet in fleets:
        fleet.close()


class Coordinator:
    """One backend: tooz for the locks, the backend's own client for the ledger.
    Started lazily, at the first lock; an unreachable backend raises
    Unreachable and is tried afresh at the next call."""

    def __init__(self, section, member):
        self.url = section["backend_url"]
        self.where = display(self.url)
        self.policy = section["unreachable"]
        self.timeout = float(section["timeout"])
        self.lock_ttl = float(section["lock_ttl"])
        self.namespace = section["namespace"]
        self.member = member
        self.scheme = self.url.split("://", 1)[0]
        self._tooz = None
        self._ledger = None
        self._mutex = threading.Lock()
        self._kept = {}             # lock name -> (lock, stop event): leases renewed while held

    # -- connection ----------------------------------------------------------------
    def _fail(self, what, exc):
        text = str(exc).strip() or type(exc).__name__
        return Unreachable(f"coordination backend {self.where} unreachable ({what}: "
                           f"{' '.join(text.split())[:200]})")

    def tooz(self):
        with self._mutex:
            if self._tooz is not None:
                return self._tooz
            import warnings
            with warnings.catch_warnings():
                # futurist (a tooz dependency) warns on import when eventlet is
                # installed: not ours to print in a handler's output.
                warnings.simplefilter("ignore")
                from tooz import coordination as tooz_coordination
            # A quick word with the backend first: tooz's own start retries for
            # a minute against a dead server; then start() itself, bounded.
            self._ledger_unlocked().ping()
            try:
                coordinator = tooz_coordination.get_coordinator(
                    self._tooz_url(), self.member.encode())
                bounded(lambda: coordinator.start(start_heart=False), 3 * self.timeout,
                        f"coordination backend {self.where} unreachable (start: no answer in "
                        f"{3 * self.timeout:g}s)")
            except Unreachable:
                raise
            except Exception as exc:
                raise self._fail("start", exc) from None
            _no_client_retries(coordinator)
            self._tooz = coordinator
            return coordinator

    def _tooz_url(self):
        """The backend URL with tooz's options for bounded waits and lock leases."""
        from urllib.parse import urlencode
        ttl = max(1, int(round(self.lock_ttl)))
        if self.scheme.startswith("redis"):
            opts = {"lock_timeout": ttl, "socket_timeout": self.timeout,
                    "socket_connect_timeout": self.timeout, "timeout": ttl}
        elif self.scheme.startswith("etcd3"):
            opts = {"lock_timeout": ttl, "timeout": max(1, int(round(self.timeout)))}
        else:
            opts = {}
        if not opts:
            return self.url
        return self.url + ("&" if "?" in self.url else "?") + urlencode(opts)

    def ledger(self):
        with self._mutex:
            return self._ledger_unlocked()

    def _ledger_unlocked(self):
        if self._ledger is None:
            if self.scheme.startswith("redis"):
                self._ledger = RedisLedger(self)
            elif self.scheme == "mysql":
                self._ledger = MySQLLedger(self)
            else:
                self._ledger = EtcdLedger(self)
        return self._ledger

    def close(self):
        for name in list(self._kept):
            self._unkeep(name)
        if self._tooz is not None:
            try:
                self._tooz.stop()
            except Exception:       # a backend gone away: its locks expire on their own
                pass
            self._tooz = None
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None

    # -- the lock per target ---------------------------------------------------------
    def lock(self, name, timeout):
        """A context manager holding the fleet-wide lock ``name``. TimeoutError
        when another holder keeps it past ``timeout`` (the guard's
        lock_timeout); Unreachable when the backend does not answer."""
        return _FleetLock(self, f"{self.namespace}-{name}", timeout)

    def _keep(self, name, lock):
        """Renew the lock's lease every third of its TTL while we hold it: a
        holder that dies stops renewing, and the lock is free after lock_ttl."""
        if self.scheme == "mysql":
            return          # GET_LOCK lives as long as the session: nothing to renew
        stop = threading.Event()

        def renew():
            while not stop.wait(self.lock_ttl / 3):
                try:
                    lock.heartbeat()
                except Exception:     # the backend is away: the lease may lapse
                    pass
        thread = threading.Thread(target=renew, name=f"lease-{name}", daemon=True)
        self._kept[name] = (stop, thread)
        thread.start()

    def _unkeep(self, name):
        kept = self._kept.pop(name, None)
        if kept is not None:
            kept[0].set()


def _no_client_retries(coordinator):
    """tooz's Redis driver retries a failed command 15 times, on a client that
    retries each 3 times with back-off: a minute against a dead server. Our
    deadline is the guard's; the client is told not to retry on its own."""
    client = getattr(coordinator, "_client", None)
    pool = getattr(client, "connection_pool", None)
    if pool is None:
        return
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    pool.connection_kwargs["retry"] = Retry(NoBackoff(), 0)
    for conn in list(getattr(pool, "_available_connections", ())):   # made by start()'s ping
        conn.retry = Retry(NoBackoff(), 0)


def bounded(call, deadline, message):
    """``call()`` on a helper thread; Unreachable(message) if it has not
    returned after ``deadline`` seconds (the thread is left to finish)."""
    outcome, done = {}, threading.Event()

    def attempt():
        try:
            outcome["value"] = call()
        except Exception as exc:      # handed to the caller's thread
            outcome["error"] = exc
        done.set()
    threading.Thread(target=attempt, daemon=True).start()
    if not done.wait(deadline):
        raise Unreachable(message)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


class _FleetLock:
    def __init__(self, coordinator, name, timeout):
        self.coordinator, self.name, self.timeout = coordinator, name, timeout
        self.lock = None

    def __enter__(self):
        coordinator = self.coordinator
        wait = self.timeout if self.timeout is not None else 120.0
        tooz = coordinator.tooz()
        lock = tooz.get_lock(self.name.encode())
        try:
            got = self._acquire(lock, max(wait, 0.001), wait + 2 * coordinator.timeout)
        except Unreachable:
            raise
        except Exception as exc:
            coordinator._tooz = None if _is_connection_error(exc) else coordinator._tooz
            raise coordinator._fail("lock", exc) from None
        if not got:
            raise TimeoutError(f"fleet lock {self.name} held elsewhere for {wait:g}s")
        self.lock = lock
        coordinator._keep(self.name, lock)
        return self

    def _acquire(self, lock, wait, deadline):
        """lock.acquire(wait) on a helper thread, given up after ``deadline``
        seconds whatever the driver does (a blackholed backend, a driver's own
        retries): the guard's wait stays bounded. A lock obtained after we gave
        up is released at once (or lapses with its lease)."""
        outcome, done, abandoned = {}, threading.Event(), threading.Event()

        def attempt():
            try:
                outcome["got"] = lock.acquire(blocking=wait)
            except Exception as exc:      # handed to the caller's thread
                outcome["error"] = exc
            done.set()
            if abandoned.is_set() and outcome.get("got"):
                try:
                    lock.release()
                except Exception:
                    pass
        threading.Thread(target=attempt, name=f"acquire-{self.name}", daemon=True).start()
        if not done.wait(deadline):
            abandoned.set()
            raise Unreachable(f"coordination backend {self.coordinator.where} unreachable "
                              f"(lock: no answer in {deadline:g}s)")
        if "error" in outcome:
            raise outcome["error"]
        return outcome["got"]

    def __exit__(self, *exc):
        self.coordinator._unkeep(self.name)
        try:
            self.lock.release()
        except Exception:   # unreachable now: the lease (or the session) frees it
            pass
        return False


def _is_connection_error(exc):
    from tooz import coordination as tooz_coordination
    return isinstance(exc, (tooz_coordination.ToozConnectionError, OSError))


# --- the shared ledger ------------------------------------------------------------------

def decide(runs, key, member, event_id, limits, now, host=None):
    """The guard rules over the runs of one class (oldest first); a (guard,
    reason) refusal, or None to go ahead. ``runs`` are dicts with ts, key,
    member, event, outcome, host. ``host``: count ``global_cap`` over this
    host's runs only (node-scoped classes: their rate limit and cap stay the
    host's own, ``fleet_cap`` is the fleet-wide one). The one rule set for every
    backend whose check is not written in the backend's own language (the Redis
    script mirrors it)."""
    rate, cap, fleet = limits["rate_limit"], limits["global_cap"], limits.get("fleet_cap")
    if event_id:
        for run in runs:
            if run.get("event") == event_id and run["key"] == key:
                return "duplicate", (f"event {event_id} already handled (on {run.get('host')}, "
                                     f"{run.get('outcome')})")
    busy = [r for r in runs if r.get("outcome") not in IDLE]
    mine = [r for r in busy if r["key"] == key and now - r["ts"] <= rate["per"]]
    if len(mine) >= rate["max"]:
        return "rate_limit", len(mine)
    klass = [r for r in busy if now - r["ts"] <= cap["per"] and (host is None or r["host"] == host)]
    if len(klass) >= cap["max"]:
        return "global_cap", len(klass)
    if fleet:
        members = {r["member"] for r in busy if now - r["ts"] <= fleet["per"]}
        if member not in members and len(members) >= fleet["max"]:
            return "fleet_cap", len(members)
    return None


def horizon(limits):
    fleet = limits.get("fleet_cap") or {"per": 0}
    return max(limits["rate_limit"]["per"], limits["global_cap"]["per"], fleet["per"], 86400.0)


_REDIS_RESERVE = """
local runs, info = KEYS[1], KEYS[2]
local now, horizon = tonumber(ARGV[1]), tonumber(ARGV[2])
local key, member, event = ARGV[3], ARGV[4], ARGV[5]
local rmax, rper = tonumber(ARGV[6]), tonumber(ARGV[7])
local cmax, cper = tonumber(ARGV[8]), tonumber(ARGV[9])
local fmax, fper = tonumber(ARGV[10]), tonumber(ARGV[11])
local dry, id, entry, onhost = ARGV[12], ARGV[13], ARGV[14], ARGV[15]
for _, old in ipairs(redis.call('ZRANGEBYSCORE', runs, '-inf', '(' .. (now - horizon))) do
  redis.call('ZREM', runs, old)
  redis.call('HDEL', info, old)
end
local mine, klass, nmembers, members = 0, 0, 0, {}
for _, rid in ipairs(redis.call('ZRANGE', runs, 0, -1)) do
  local raw = redis.call('HGET', info, rid)
  if raw then
    local run = cjson.decode(raw)
    if event ~= '' and run.event == event and run.key == key then
      return {'duplicate', tostring(run.host), tostring(run.outcome)}
    end
    if run.outcome ~= 'noop' and run.outcome ~= 'refused' then
      local age = now - run.ts
      if run.key == key and age <= rper then mine = mine + 1 end
      if age <= cper and (onhost == '' or run.host == onhost) then klass = klass + 1 end
      if fmax >= 0 and age <= fper and not members[run.member] then
        members[run.member] = true
        nmembers = nmembers + 1
      end
    end
  end
end
if mine >= rmax then return {'rate_limit', tostring(mine)} end
if klass >= cmax then return {'global_cap', tostring(klass)} end
if fmax >= 0 and not members[member] and nmembers >= fmax then
  return {'fleet_cap', tostring(nmembers)}
end
if dry == '1' then return {'ok', ''} end
redis.call('ZADD', runs, now, id)
redis.call('HSET', info, id, entry)
redis.call('EXPIRE', runs, math.ceil(horizon) + 60)
redis.call('EXPIRE', info, math.ceil(horizon) + 60)
return {'ok', id}
"""

_REDIS_SETTLE = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local run = cjson.decode(raw)
run.outcome = ARGV[2]
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(run))
return 1
"""


def _entry(cls_name, key, member, event_id, target, host, now):
    return {"ts": now, "cls": cls_name, "key": key, "member": member, "event": event_id or "",
            "target": str(target), "host": host, "pid": os.getpid(), "outcome": "running",
            "id": f"{host}-{os.getpid()}-{time.time_ns()}"}


class RedisLedger:
    """Sorted set of run ids (score: time) + hash of runs, per class; reserve is
    one Lua script (Redis runs a script alone: no other command interleaves)."""

    def __init__(self, coordinator):
        import redis
        self.coordinator = coordinator
        from redis.backoff import NoBackoff
        from redis.retry import Retry
        # No retries of our own: a script that timed out may have run, and a
        # retry would reserve twice; the guard refuses instead.
        self.client = redis.Redis.from_url(coordinator.url.split("?", 1)[0],
                                           socket_timeout=coordinator.timeout,
                                           socket_connect_timeout=coordinator.timeout,
                                           retry=Retry(NoBackoff(), 0))
        self._reserve = self.client.register_script(_REDIS_RESERVE)
        self._settle = self.client.register_script(_REDIS_SETTLE)
        self.errors = (redis.RedisError, OSError)

    def _keys(self, cls_name):
        base = f"{self.coordinator.namespace}:ledger:{cls_name}"
        return [f"{base}:runs", f"{base}:info"]

    def reserve(self, cls_name, key, member, event_id, target, host, limits, now, dry_run,
                per_host=False):
        entry = _entry(cls_name, key, member, event_id, target, host, now)
        fleet = limits.get("fleet_cap") or {"max": -1, "per": 0}
        args = [now, horizon(limits), key, member, event_id or "",
                limits["rate_limit"]["max"], limits["rate_limit"]["per"],
                limits["global_cap"]["max"], limits["global_cap"]["per"],
                fleet["max"], fleet["per"], "1" if dry_run else "0", entry["id"],
                json.dumps(entry), host if per_host else ""]
        try:
            verdict = self._reserve(keys=self._keys(cls_name), args=args)
        except self.errors as exc:
            raise self.coordinator._fail("ledger", exc) from None
        word = verdict[0].decode() if isinstance(verdict[0], bytes) else verdict[0]
        rest = [v.decode() if isinstance(v, bytes) else v for v in verdict[1:]]
        if word == "ok":
            return None if dry_run else entry
        if word == "duplicate":
            return "duplicate", f"event {event_id} already handled (on {rest[0]}, {rest[1]})"
        return word, int(rest[0])

    def ping(self):
        try:
            self.client.ping()
        except self.errors as exc:
            raise self.coordinator._fail("ping", exc) from None

    def settle(self, entry, outcome):
        try:
            self._settle(keys=[self._keys(entry["cls"])[1]], args=[entry["id"], outcome])
        except self.errors as exc:
            raise self.coordinator._fail("ledger", exc) from None

    def runs(self, cls_name):
        """Every run recorded for the class (tests, ``autoremedy status``)."""
        raw = self.client.hgetall(self._keys(cls_name)[1])
        return sorted((json.loads(v) for v in raw.values()), key=lambda r: r["ts"])

    def close(self):
        try:
            self.client.close()
        except Exception:
            pass


class MySQLLedger:
    """One table of runs; a reservation is a transaction that first locks its
    class's row (``SELECT ... FOR UPDATE``), so reservations of one class
    serialise in the server while other classes go on. On Galera the row lock
    is local to a node and the loser of a cross-node race gets a deadlock error
    at commit: it is retried."""

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

    def __init__(self, coordinator):
        from urllib.parse import unquote, urlsplit
        import pymysql
        self.coordinator = coordinator
        self.pymysql = pymysql
        parts = urlsplit(coordinator.url)
        self.params = {"host": parts.hostname or "localhost", "port": parts.port or 3306,
                       "user": unquote(parts.username or ""),
                       "password": unquote(parts.password or ""),
                       "database": parts.path.lstrip("/") or "autoremedy",
                       "connect_timeout": coordinator.timeout,
                       "read_timeout": coordinator.timeout * 3,
                       "write_timeout": coordinator.timeout, "autocommit": True}
        self.conn = None
        self.errors = (pymysql.MySQLError, OSError)

    def _connect(self):
        if self.conn is None:
            conn = self.pymysql.connect(**self.params)
            with conn.cursor() as cur:
                for statement in self.SCHEMA:
                    cur.execute(statement)
                # A reservation waits for the class row at most this long.
                cur.execute("SET SESSION innodb_lock_wait_timeout = %s",
                            (max(1, int(round(self.coordinator.timeout * 2))),))
            self.conn = conn
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
            cur.execute("INSERT IGNORE INTO autoremedy_fleet_classes (cls) VALUES (%s)",
                        (cls_name,))
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
                verdict = decide(runs, key, member, event_id, limits, now, host if per_host else None)
                if verdict is not None or dry_run:
                    conn.rollback()
                    return verdict
                entry = _entry(cls_name.split(":", 1)[1], key, member, event_id, target, host, now)
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
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None

    def close(self):
        self._drop()


class EtcdLedger:
    """One key per class holding its runs (JSON); a reservation reads it with
    its revision and writes it back in a transaction that succeeds only if the
    revision is unchanged (compare-and-swap), retried on conflict."""

    def __init__(self, coordinator):
        from urllib.parse import urlsplit
        from etcd3gw.client import Etcd3Client
        self.coordinator = coordinator
        parts = urlsplit(coordinator.url)
        self.client = Etcd3Client(host=parts.hostname or "localhost", port=parts.port or 2379,
                                  protocol="https" if parts.scheme.endswith("https") else "http",
                                  timeout=coordinator.timeout)
        self.errors = (Exception,)

    def _key(self, cls_name):
        return f"/{self.coordinator.namespace}/ledger/{cls_name}"

    def ping(self):
        try:
            self.client.status()
        except self.errors as exc:
            raise self.coordinator._fail("ping", exc) from None

    def _read(self, cls_name):
        import base64
        answer = self.client.post(self.client.get_url("/kv/range"),
                                  json={"key": _b64(self._key(cls_name))})
        kvs = answer.get("kvs") or []
        if not kvs:
            return [], 0
        value = json.loads(base64.b64decode(kvs[0]["value"]))
        return value, int(kvs[0].get("mod_revision", 0))

    def _swap(self, cls_name, runs, revision):
        key = _b64(self._key(cls_name))
        txn = {"compare": [{"key": key, "result": "EQUAL", "target": "MOD",
                            "mod_revision": revision}],
               "success": [{"request_put": {"key": key, "value": _b64(json.dumps(runs))}}],
               "failure": []}
        answer = self.client.post(self.client.get_url("/kv/txn"), json=txn)
        return bool(answer.get("succeeded"))

    def reserve(self, cls_name, key, member, event_id, target, host, limits, now, dry_run,
                per_host=False):
        deadline = time.monotonic() + self.coordinator.timeout * 5
        while True:
            try:
                runs, revision = self._read(cls_name)
                runs = [r for r in runs if now - r["ts"] <= horizon(limits)]
                verdict = decide(runs, key, member, event_id, limits, now, host if per_host else None)
                if verdict is not None or dry_run:
                    return verdict
                entry = _entry(cls_name, key, member, event_id, target, host, now)
                if self._swap(cls_name, runs + [entry], revision):
                    return entry
            except self.errors as exc:
                raise self.coordinator._fail("ledger", exc) from None
            time.sleep(random.uniform(0.002, 0.03))     # lost the race: let the winner through
            if time.monotonic() > deadline:
                raise Unreachable(f"coordination backend {self.coordinator.where}: ledger busy "
                                  "(compare-and-swap kept losing)")

    def settle(self, entry, outcome):
        deadline = time.monotonic() + self.coordinator.timeout * 3
        while time.monotonic() < deadline:
            try:
                runs, revision = self._read(entry["cls"])
                for run in runs:
                    if run["id"] == entry["id"]:
                        run["outcome"] = outcome
                if self._swap(entry["cls"], runs, revision):
                    return
            except self.errors as exc:
                raise self.coordinator._fail("ledger", exc) from None

    def runs(self, cls_name):
        return self._read(cls_name)[0]

    def close(self):
        pass


def _b64(text):
    import base64
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()
