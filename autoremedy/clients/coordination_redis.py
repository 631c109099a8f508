"""The Redis backend of autoremedy.clients.coordination: the lock per target through
tooz (OpenStack's coordination library,
https://docs.openstack.org/tooz/latest/user/tutorial/lock.html), the ledger of
runs through redis-py.

- **the lock**: tooz's Redis lock, a key with a lease (``lock_ttl``) that a
  thread of the holder renews every third of it while it holds the lock; a
  holder killed with -9 stops renewing and the lock is free after ``lock_ttl``.
  tooz is kept for Redis because its lock is a well-kept implementation at no
  measured cost over one of our own (bench/bench_fleet.py); for MySQL and etcd
  it was not (autoremedy/clients/coordination_mysql.py, coordination_etcd.py).
- **the ledger**: a sorted set of run ids (score: time) and a hash of runs per
  class; a reservation is one Lua script, which Redis runs alone
  (https://redis.io/docs/latest/develop/interactive/programmability/eval-intro/):
  no other command interleaves between reading the window and recording the run.
"""
import json
import threading

from autoremedy.clients.coordination import Unreachable, entry_for, horizon


class RedisBackend:
    def __init__(self, coordinator):
        self.coordinator = coordinator
        self._tooz = None
        self._mutex = threading.Lock()
        self._kept = {}             # lock name -> (stop event, thread): leases renewed while held
        self.ledger = RedisLedger(coordinator)

    def ping(self):
        self.ledger.ping()

    def tooz(self):
        coordinator = self.coordinator
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
            self.ledger.ping()
            try:
                client = tooz_coordination.get_coordinator(
                    self._tooz_url(), coordinator.member.encode())
                bounded(lambda: client.start(start_heart=False), 3 * coordinator.timeout,
                        f"coordination backend {coordinator.where} unreachable (start: no answer "
                        f"in {3 * coordinator.timeout:g}s)")
            except Unreachable:
                raise
            except Exception as exc:
                raise coordinator._fail("start", exc) from None
            _no_client_retries(client)
            self._tooz = client
            return client

    def _tooz_url(self):
        """The backend URL with tooz's options for bounded waits and lock leases."""
        from urllib.parse import urlencode
        coordinator = self.coordinator
        ttl = max(1, int(round(coordinator.lock_ttl)))
        opts = {"lock_timeout": ttl, "socket_timeout": coordinator.timeout,
                "socket_connect_timeout": coordinator.timeout, "timeout": ttl}
        url = coordinator.url
        return url + ("&" if "?" in url else "?") + urlencode(opts)

    def lock(self, name, timeout):
        return _FleetLock(self, name, timeout)

    def _keep(self, name, lock):
        """Renew the lock's lease every third of its TTL while we hold it: a
        holder that dies stops renewing, and the lock is free after lock_ttl."""
        stop = threading.Event()
        period = self.coordinator.lock_ttl / 3

        def renew():
            while not stop.wait(period):
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

    def close(self):
        for name in list(self._kept):
            self._unkeep(name)
        if self._tooz is not None:
            try:
                self._tooz.stop()
            except Exception:       # a backend gone away: its locks expire on their own
                pass
            self._tooz = None
        self.ledger.close()


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
    def __init__(self, backend, name, timeout):
        self.backend, self.name, self.timeout = backend, name, timeout
        self.coordinator = backend.coordinator
        self.lock = None

    def __enter__(self):
        coordinator, backend = self.coordinator, self.backend
        wait = self.timeout if self.timeout is not None else 120.0
        tooz = backend.tooz()
        lock = tooz.get_lock(self.name.encode())
        try:
            got = self._acquire(lock, max(wait, 0.001), wait + 2 * coordinator.timeout)
        except Unreachable:
            raise
        except Exception as exc:
            if _is_connection_error(exc):
                backend._tooz = None
            raise coordinator._fail("lock", exc) from None
        if not got:
            raise TimeoutError(f"fleet lock {self.name} held elsewhere for {wait:g}s")
        self.lock = lock
        backend._keep(self.name, lock)
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
        self.backend._unkeep(self.name)
        try:
            self.lock.release()
        except Exception:   # unreachable now: the lease frees it
            pass
        return False


def _is_connection_error(exc):
    from tooz import coordination as tooz_coordination
    return isinstance(exc, (tooz_coordination.ToozConnectionError, OSError))




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
        entry = entry_for(cls_name, key, member, event_id, target, host, now)
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


