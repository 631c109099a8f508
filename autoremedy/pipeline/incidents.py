"""A small record of open incidents, for sources that cannot say when theirs began.

The node hook (``autoremedy handle hook``) runs a check and knows nothing of the
past; a Sensu Go event without ``id`` whose 21-entry history is all failures
and that carries no ``last_ok`` cannot tell either. Both keep here, per key,
when the incident was first seen: its start makes the derived event id stable
for the whole incident (one remediation, however many events), and an OK run
closes it, so the next failure is a new incident with a new id.

    {key: {"start": t, "status": s, "occurrences": n, "last": t}}

Occurrences restart on any status change (Sensu's semantics: WARNING ->
CRITICAL is a new run), the incident and its start go on. An incident not seen
for ``ttl`` is forgotten.
"""
import time

from autoremedy import statefile

TTL = 7 * 86400.0


def track(path, key, status, now=None, ttl=TTL):
    """Record a run of ``key`` with ``status``; return (incident, was_open).
    An OK run closes the incident and returns the one it closed."""
    from autoremedy.contract.result import Status
    now = time.time() if now is None else now
    status = Status.coerce(status)
    with statefile.updating(path) as data:
        for old in [k for k, v in data.items() if now - v.get("last", 0) > ttl]:
            del data[old]
        current = data.get(key)
        if status is Status.OK:
            data.pop(key, None)
            return (current or {"start": now}), current is not None
        if current is None:
            current = {"start": round(now, 3), "status": int(status), "occurrences": 0}
        elif current.get("status") != int(status):
            current.update(status=int(status), occurrences=0)
        current["occurrences"] += 1
        current["last"] = round(now, 3)
        data[key] = current
        return dict(current), True


def close(path, key):
    with statefile.updating(path) as data:
        data.pop(key, None)


def start(path, key, known, now=None, ttl=TTL):
    """The start of ``key``'s open incident. ``known``: the start the event itself
    tells (kept, so that a later event that cannot tell gets the same one);
    None: the kept start, or ``now`` for an incident seen for the first time."""
    now = time.time() if now is None else now
    with statefile.updating(path) as data:
        for old in [k for k, v in data.items() if now - v.get("last", 0) > ttl]:
            del data[old]
        record = data.get(key)
        begun = known if known is not None else (record or {}).get("start", round(now, 3))
        data[key] = {"start": begun, "last": round(now, 3)}
        return begun
