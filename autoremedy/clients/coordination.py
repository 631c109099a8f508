"""Guards that hold across hosts: the lock per target, the run ledger behind
``rate_limit`` / ``global_cap`` and the ``fleet_cap`` guard, kept in a
coordination service the cloud already runs (docs/fleet.md).

    coordination:
      backend_url: redis://10.0.0.5:6379/0        # or mysql://user:pw@db/autoremedy,
                                                  # etcd3+http://10.0.0.5:2379; default: local
      unreachable: refuse          # node-scoped classes when the backend is unreachable:
                                   # refuse (default) | local (this host's lock and caps only)
      timeout: 2s                  # longest wait for one answer of the backend
      lock_ttl: 30s                # a holder killed with -9 frees its lock after this (Redis,
                                   # etcd; MySQL: at once, after this for a host gone silent)

Without the section (``backend_url: local``) everything stays in the host's
state directory as before and this module imports nothing: tooz (OpenStack's
coordination library) and the backend clients are imported only when a backend
is configured, so a check or a handler on a host without coordination pays
nothing for it (bench/bench_imports.py).

What goes where, per backend (each module says why):

- Redis (autoremedy/clients/coordination_redis.py): the lock through tooz (a lease
  renewed while the holder lives), the ledger a Lua script on a sorted set.
- MySQL/MariaDB (autoremedy/clients/coordination_mysql.py): the lock ``GET_LOCK`` on a
  session kept for the process's life (freed by the server when the holder's
  session ends), the ledger a transaction holding the class's row ``FOR UPDATE``.
- etcd (autoremedy/clients/coordination_etcd.py): the lock a key bound to the process's
  lease, the ledger one key per run written by a compare-and-swap transaction,
  over one kept-alive HTTP connection.

A holder killed with -9 frees its lock after ``lock_ttl`` (Redis, etcd: the
lease lapses) or at once (MySQL: the session ends). The ledger (every reserved
run: class, target key, host or target counted by ``fleet_cap``, event id,
outcome) is *not* in tooz, which offers no counters: reading the window,
deciding (``decide()``, the one rule set) and recording the run are one atomic
step in the backend itself, so three hosts reserving at once never see the same
free slot (tests/fleet). tooz is used for Redis only: its MySQL driver connects
for every lock and its etcd driver (etcd3gw, over ``requests``) grants a
lease for every lock — both missed the +5 ms per event target
(docs/fleet.md, "Measured").

Fail-safe: when the backend does not answer within ``timeout`` (or its lock
within the guard's ``lock_timeout``), an API-scoped remediation refuses with the
reason (two hosts acting on one API object is exactly what the lock is for), and
a node-scoped one refuses too unless ``unreachable: local`` lets it go on under
this host's own lock and caps (the fleet cap is then not counted: said in the
outcome).
"""
import os
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
    """The coordination section with defaults, or None when it is local. The
    core schema has the section's keys and defaults (config.py: Config.load
    validated it already; ``check`` below is its rules across keys)."""
    from autoremedy import config as configmod
    section = configmod.section(config, "coordination", configmod.SCHEMA["coordination"],
                                configmod.DEFAULTS["coordination"])
    url = (section.get("backend_url") or LOCAL).strip()
    if url == LOCAL:
        return None
    section["backend_url"] = url
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
    """One backend's locks and ledger, started lazily at the first use; an
    unreachable backend raises Unreachable and is tried afresh at the next call."""

    def __init__(self, section, member):
        self.url = section["backend_url"]
        self.where = display(self.url)
        self.policy = section["unreachable"]
        self.timeout = float(section["timeout"])
        self.lock_ttl = float(section["lock_ttl"])
        self.namespace = section["namespace"]
        self.member = member
        self.scheme = self.url.split("://", 1)[0]
        self._backend = None
        self._mutex = threading.Lock()

    def _fail(self, what, exc):
        text = str(exc).strip() or type(exc).__name__
        return Unreachable(f"coordination backend {self.where} unreachable ({what}: "
                           f"{' '.join(text.split())[:200]})")

    def backend(self):
        with self._mutex:
            if self._backend is None:
                if self.scheme.startswith("redis"):
                    from autoremedy.clients.coordination_redis import RedisBackend as kind
                elif self.scheme == "mysql":
                    from autoremedy.clients.coordination_mysql import MySQLBackend as kind
                else:
                    from autoremedy.clients.coordination_etcd import EtcdBackend as kind
                self._backend = kind(self)
            return self._backend

    def ledger(self):
        return self.backend().ledger

    def lock(self, name, timeout):
        """A context manager holding the fleet-wide lock ``name``. TimeoutError
        when another holder keeps it past ``timeout`` (the guard's
        lock_timeout); Unreachable when the backend does not answer."""
        return self.backend().lock(f"{self.namespace}-{name}", timeout)

    def close(self):
        with self._mutex:
            backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()


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


def close_quietly(conn):
    """Close a backend connection that may already be broken: closing is the way out
    of an error, so its own failure must not replace the error being handled."""
    if conn is not None:
        try:
            conn.close()
        except Exception:
            pass


def horizon(limits):
    fleet = limits.get("fleet_cap") or {"per": 0}
    return max(limits["rate_limit"]["per"], limits["global_cap"]["per"], fleet["per"], 86400.0)


def entry_for(cls_name, key, member, event_id, target, host, now):
    return {"ts": now, "cls": cls_name, "key": key, "member": member, "event": event_id or "",
            "target": str(target), "host": host, "pid": os.getpid(), "outcome": "running",
            "id": f"{host}-{os.getpid()}-{time.time_ns()}"}


