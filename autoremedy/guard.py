"""Guardrails shared by every remediation, whichever path triggered it.

A remediation may only run when all of these agree (reference/stackstorm.md §11):

- the class is enabled and the target is in its allowlist (checked by the Remediation);
- the event is not silenced and no maintenance file covers the host or target;
- the failure has been seen ``min_occurrences`` times and is not flapping;
- no other process is remediating the same target (one flock per target); an
  event already handled is not handled twice (20 handler processes with the
  same event run the remediation once);
- the target has not been remediated ``rate_limit.max`` times in ``rate_limit.per``
  (then a human must look: the fix does not hold);
- the class has not run ``global_cap.max`` times in ``global_cap.per`` across all
  targets (blast radius: many failures at once are a partition or a monitoring
  fault, not many independent faults).

The ledger of runs lives in ``<state_dir>/guard/ledger.json`` under a lock; it is
pruned to the longest window in use.
"""
import hashlib
import os
import time

from autoremedy import statefile


IDLE = ("noop", "refused")     # ledger outcomes of runs that changed nothing


class Refused(Exception):
    """A guard said no. ``guard`` names which one; the text says why."""

    def __init__(self, guard, reason):
        super().__init__(reason)
        self.guard = guard
        self.reason = reason


class Skip(Exception):
    """Nothing should be done and nothing is wrong (silenced, already handled)."""

    def __init__(self, guard, reason):
        super().__init__(reason)
        self.guard = guard
        self.reason = reason


def target_key(cls_name, target):
    """A file-name-safe key: targets may contain '/' (mounts) or anything else."""
    digest = hashlib.sha256(f"{cls_name}\0{target}".encode()).hexdigest()[:20]
    return f"{cls_name}-{digest}"


class Guard:
    def __init__(self, state_dir, cls_name, limits, maintenance_file=None, hostname=None,
                 clock=time.time):
        self.cls_name = cls_name
        self.limits = limits
        self.maintenance_file = maintenance_file
        self.hostname = hostname
        self.clock = clock
        self.dir = os.path.join(state_dir, "guard")
        self.ledger_path = os.path.join(self.dir, "ledger.json")

    # -- checks that need no lock ---------------------------------------------
    def admit(self, target, trigger):
        """Raise Skip/Refused for the lock-free guards (silence, maintenance,
        occurrences, flapping)."""
        if trigger.silenced:
            raise Skip("silenced", "the event is silenced in the monitor")
        covered = self.maintenance(target)
        if covered:
            raise Refused("maintenance", covered)
        need = int(self.limits.get("min_occurrences") or 1)
        if trigger.occurrences is not None and trigger.occurrences < need:
            raise Skip("occurrences", f"seen {trigger.occurrences} time(s), acting from {need}")
        flap = self.limits.get("flap") or {}
        changes = self.flap_changes(target, trigger)
        if flap.get("changes") and changes >= flap["changes"]:
            raise Refused("flapping", f"status changed {changes} times in "
                          f"{flap['window']:g}s (limit {flap['changes']})")

    def maintenance(self, target):
        """A maintenance file that is empty covers everything; otherwise each line
        names a host or a target (``#`` comments allowed)."""
        path = self.maintenance_file
        if not path:
            return None
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                lines = [ln.split("#", 1)[0].strip() for ln in handle]
        except FileNotFoundError:
            return None
        except OSError as exc:
            return f"maintenance file {path} unreadable ({exc.strerror}): assuming maintenance"
        names = {ln for ln in lines if ln}
        if not names:
            return f"maintenance file {path} is present"
        for name in (self.hostname, str(target), f"{self.cls_name}:{target}"):
            if name and name in names:
                return f"{name} is listed in maintenance file {path}"
        return None

    def flap_changes(self, target, trigger):
        """Status changes in the flap window: from the monitor's history when the
        event carries one, else from our own record of triggers for this target."""
        window = (self.limits.get("flap") or {}).get("window") or 0
        now = self.clock()
        if trigger.history:
            statuses = [s for s in trigger.history]
        else:
            with statefile.updating(self.ledger_path) as ledger:
                seen = ledger.setdefault("seen", {}).setdefault(target_key(self.cls_name, target), [])
                if trigger.status is not None:
                    seen.append([now, int(trigger.status)])
                seen[:] = [s for s in seen if now - s[0] <= window][-100:]
                statuses = [s[1] for s in seen]
        return sum(1 for a, b in zip(statuses, statuses[1:]) if a != b)

    # -- checks under the target lock -----------------------------------------
    def lock(self, target):
        timeout = self.limits.get("lock_timeout")
        path = os.path.join(self.dir, "locks", target_key(self.cls_name, target) + ".lock")
        return statefile.locked(path, timeout=timeout)

    def reserve(self, target, event_id, dry_run=False):
        """Under the target lock: refuse on duplicate event, rate limit or global
        cap; otherwise record the run in the ledger (it counts even if it fails)
        and return its ledger entry."""
        now = self.clock()
        rate = self.limits["rate_limit"]
        cap = self.limits["global_cap"]
        horizon = max(rate["per"], cap["per"], 86400)
        key = target_key(self.cls_name, target)
        with statefile.updating(self.ledger_path) as ledger:
            runs = [r for r in ledger.get("runs", []) if now - r["ts"] <= horizon]
            ledger["runs"] = runs
            if event_id:
                for run in runs:
                    if run.get("event") == event_id and run["key"] == key:
                        raise Skip("duplicate", f"event {event_id} already handled "
                                   f"(pid {run.get('pid')}, {run.get('outcome')})")
            # Runs that changed nothing (noop, refused by a safety check) do not
            # use up the rate limit or the cap.
            mine = [r for r in runs if r["key"] == key and now - r["ts"] <= rate["per"]
                    and r.get("outcome") not in IDLE]
            if len(mine) >= rate["max"]:
                raise Refused("rate_limit", f"{len(mine)} runs on {target} in the last "
                              f"{rate['per']:g}s (limit {rate['max']}): the fix does not hold")
            klass = [r for r in runs if r["cls"] == self.cls_name and now - r["ts"] <= cap["per"]
                     and r.get("outcome") not in IDLE]
            if len(klass) >= cap["max"]:
                raise Refused("global_cap", f"{len(klass)} {self.cls_name} remediations in the last "
                              f"{cap['per']:g}s (cap {cap['max']}): too many at once, a human decides")
            if dry_run:
                return None
            entry = {"ts": now, "cls": self.cls_name, "key": key, "target": str(target),
                     "event": event_id, "pid": os.getpid(), "outcome": "running"}
            runs.append(entry)
            return entry

    def settle(self, entry, outcome):
        """Write the final outcome of a reserved run."""
        if entry is None:
            return
        with statefile.updating(self.ledger_path) as ledger:
            for run in ledger.get("runs", []):
                if run["ts"] == entry["ts"] and run["key"] == entry["key"] and run["pid"] == entry["pid"]:
                    run["outcome"] = outcome
                    break

    def recent(self, limit=20):
        ledger = statefile.load(self.ledger_path, {}) or {}
        return ledger.get("runs", [])[-limit:]
