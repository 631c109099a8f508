"""Guardrails shared by every remediation, whichever path triggered it.

A remediation may only run when all of these agree (the guardrails of StackStorm's auto-remediation guidance and Sensu's
remediation handler: https://docs.stackstorm.com/rules.html,
https://github.com/sensu/sensu-remediation-handler):

- the class is enabled and the target is in its allowlist (checked by the Remediation);
- the event is not silenced and no maintenance file covers the host or target;
  host names match as routing's same-host rule has it (``same_host``: case does
  not matter, ``cmp-07`` and ``cmp-07.example.com`` are one node), and both this
  node and the event's host are looked up;
- the failure has been seen ``min_occurrences`` times and is not flapping. When
  the event carries no count (a Zabbix alert), the count is ours: the problem
  triggers recorded for this target in the last hour (or flap window), the
  trailing run of failures. Zabbix alerts once per problem unless the action's
  escalation repeats it, so with Zabbix either repeat the alert or express the
  count in the trigger (``min(/host/key,#3)``) and keep ``min_occurrences: 1``
  (docs/handlers.md);
- no other process is remediating the same target (one flock per target); an
  event already handled is not handled twice (20 handler processes with the
  same event run the remediation once);
- the target has not been remediated ``rate_limit.max`` times in ``rate_limit.per``
  (then a human must look: the fix does not hold);
- the class has not run ``global_cap.max`` times in ``global_cap.per`` across all
  targets (blast radius: many failures at once are a partition or a monitoring
  fault, not many independent faults).

- the class has not run on ``fleet_cap.max`` distinct hosts (node-scoped
  classes) or targets (API-scoped ones) in ``fleet_cap.per`` (a network event
  that makes hundreds of node hooks fall back at once: beyond N, a human).

The ledger of runs lives in ``<state_dir>/guard/ledger.json`` under a lock; it is
pruned to the longest window in use. With a ``coordination:`` backend the lock
per target and the ledger of runs are fleet-wide instead (autoremedy.clients.coordination,
docs/fleet.md); the seams below hand them over and apply its fail-safe.
"""
import contextlib
import hashlib
import os
import time

from autoremedy import statefile


IDLE = ("noop", "refused")     # ledger outcomes of runs that changed nothing
COUNT_WINDOW = 3600.0          # at least this much trigger history is kept for counting


def same_host(a, b):
    """'web-01' and 'web-01.example.com' are the same node; case does not matter."""
    a, b = str(a).lower().rstrip("."), str(b).lower().rstrip(".")
    if a == b:
        return True
    if "." in a and "." in b:
        return False
    return a.split(".", 1)[0] == b.split(".", 1)[0]


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


def _trailing_failures(seen):
    """How many of the last recorded triggers in a row were failures."""
    count = 0
    for _, status in reversed(seen):
        if status == 0:
            break
        count += 1
    return count


def target_key(cls_name, target):
    """A file-name-safe key: targets may contain '/' (mounts) or anything else."""
    digest = hashlib.sha256(f"{cls_name}\0{target}".encode()).hexdigest()[:20]
    return f"{cls_name}-{digest}"


def fleet_for(config):
    """The coordination backend of ``config`` (autoremedy.clients.coordination), or None
    when guards are local: the module (and tooz) is imported only when configured."""
    url = config.get("coordination.backend_url")
    if not url or str(url).strip() == "local":
        return None
    from autoremedy.clients import coordination
    return coordination.for_config(config)


def refusal_text(guard, count, cls_name, target, limits, scope=None):
    """The reason a count guard refused: one wording for the local and fleet ledgers."""
    if guard == "rate_limit":
        rate = limits["rate_limit"]
        return (f"{count} runs on {target} in the last {rate['per']:g}s (limit {rate['max']}): "
                "the fix does not hold")
    if guard == "global_cap":
        cap = limits["global_cap"]
        return (f"{count} {cls_name} remediations in the last {cap['per']:g}s (cap {cap['max']}): "
                "too many at once, a human decides")
    fleet = limits["fleet_cap"]
    what = "hosts" if scope == "node" else "targets"
    return (f"fleet cap: {count} distinct {what} remediated by {cls_name} in the last "
            f"{fleet['per']:g}s (fleet_cap {fleet['max']}): too many at once across the fleet, "
            "a human decides")


class Guard:
    def __init__(self, state_dir, cls_name, limits, maintenance_file=None, hostname=None,
                 clock=time.time, scope=None, fleet=None):
        self.scope = scope            # "node": fleet_cap counts hosts; "api": targets
        self.fleet = fleet            # autoremedy.clients.coordination.Coordinator, or None (local)
        self.degraded = None          # why the fleet backend was left for local guards
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
        covered = self.maintenance(target, getattr(trigger, "host", None))
        if covered:
            raise Refused("maintenance", covered)
        need = int(self.limits.get("min_occurrences") or 1)
        seen = self._record(target, trigger)
        if trigger.occurrences is not None:
            if trigger.occurrences < need:
                raise Skip("occurrences", f"seen {trigger.occurrences} time(s), acting from {need}")
        elif need > 1 and seen is not None and int(trigger.status) != 0:
            counted = _trailing_failures(seen)
            if counted < need:
                raise Skip("occurrences", f"seen {counted} time(s) (counted here: the event "
                                          f"carries no occurrences), acting from {need}")
        flap = self.limits.get("flap") or {}
        changes = self.flap_changes(target, trigger, seen)
        if flap.get("changes") and changes >= flap["changes"]:
            raise Refused("flapping", f"status changed {changes} times in "
                          f"{flap['window']:g}s (limit {flap['changes']})")

    def maintenance(self, target, host=None):
        """A maintenance file that is empty covers everything; otherwise each line
        names a host (this node or the event's, matched by ``same_host``) or a
        target (``#`` comments allowed)."""
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
        for name in (str(target), f"{self.cls_name}:{target}"):
            if name in names:
                return f"{name} is listed in maintenance file {path}"
        for node in (self.hostname, host):
            for name in names:
                if node and ":" not in name and same_host(node, name):
                    return f"{node} is listed in maintenance file {path} (as {name})"
        return None

    def _record(self, target, trigger):
        """Append this trigger to our own record for the target (used when the
        event has no history or no count); return the record, oldest first, or
        None when nothing needs it (the event carries both)."""
        if trigger.status is None or (trigger.history and trigger.occurrences is not None):
            return None
        window = max((self.limits.get("flap") or {}).get("window") or 0, COUNT_WINDOW)
        now = self.clock()
        with statefile.updating(self.ledger_path) as ledger:
            seen = ledger.setdefault("seen", {}).setdefault(target_key(self.cls_name, target), [])
            seen.append([now, int(trigger.status)])
            seen[:] = [s for s in seen if now - s[0] <= window][-100:]
            return [list(s) for s in seen]

    def flap_changes(self, target, trigger, seen=None):
        """Status changes in the flap window: from the monitor's history when the
        event carries one, else from our own record of triggers for this target."""
        window = (self.limits.get("flap") or {}).get("window") or 0
        if trigger.history:
            statuses = list(trigger.history)
        else:
            if seen is None:
                seen = self._record(target, trigger) or []
            now = self.clock()
            points = [(s[0], s[1]) for s in seen if now - s[0] <= window]
            # The node hook and `autoremedy remediate` only ever see failures: a
            # run that ended "remediated" is the return to OK they never report,
            # and the next run is the failure again. Without these points a
            # daemon that dies, is restarted and dies again never "flaps" there.
            points += self._run_points(target, now, window)
            if trigger.status is None:
                points.append((now, 2))       # an operator's run: the target is failing
            points.sort(key=lambda p: p[0])
            statuses = [p[1] for p in points]
        return sum(1 for a, b in zip(statuses, statuses[1:]) if a != b)

    def _run_points(self, target, now, window):
        """(time, status) of this target's finished runs in the window: failing
        when it started, OK right after when it ended remediated."""
        if not window:
            return []
        key = target_key(self.cls_name, target)
        ledger = statefile.load(self.ledger_path, {}) or {}
        points = []
        for run in ledger.get("runs", []):
            if run.get("key") != key or now - run["ts"] > window or \
                    run.get("outcome") in IDLE + ("running",):
                continue
            points.append((run["ts"], 2))
            if run.get("outcome") == "remediated":
                points.append((run["ts"] + 1e-3, 0))
        return points

    # -- checks under the target lock -----------------------------------------
    def fleet_key(self, target):
        """The key of a target in the fleet lock and ledger: a node-scoped
        class's target is a thing on this host (nova-compute here is not
        nova-compute there), an API-scoped one is the same object from any host."""
        if self.scope == "node":
            return target_key(self.cls_name, f"{str(self.hostname).lower()}\0{target}")
        return target_key(self.cls_name, target)

    def member(self, target):
        """What fleet_cap counts: this host for node-scoped classes, else the target."""
        return str(self.hostname) if self.scope == "node" else str(target)

    def _unreachable(self, exc):
        """The fleet backend did not answer: refuse, or (node scope with
        ``coordination.unreachable: local``) go on under this host's guards."""
        from autoremedy.clients.coordination import LOCAL
        if self.scope == "node" and self.fleet.policy == LOCAL:
            self.degraded = str(exc)
            return
        why = ("an API-scoped remediation acts only under the fleet-wide lock and ledger"
               if self.scope != "node" else "coordination.unreachable is refuse")
        raise Refused("coordination", f"{exc}: {why}")

    @contextlib.contextmanager
    def lock(self, target):
        timeout = self.limits.get("lock_timeout")
        if self.fleet is not None and self.degraded is None:
            from autoremedy.clients.coordination import Unreachable
            held = self.fleet.lock(self.fleet_key(target), timeout)
            try:
                held.__enter__()
            except Unreachable as exc:
                self._unreachable(exc)
            else:
                try:
                    yield
                finally:
                    held.__exit__(None, None, None)
                return
        path = os.path.join(self.dir, "locks", target_key(self.cls_name, target) + ".lock")
        with statefile.locked(path, timeout=timeout):
            yield

    def _reserve_fleet(self, target, event_id, dry_run, now):
        """The fleet ledger's reservation; None when it fell back to local."""
        from autoremedy.clients.coordination import Unreachable
        try:
            verdict = self.fleet.ledger().reserve(
                self.cls_name, self.fleet_key(target), self.member(target), event_id, target,
                str(self.hostname), self.limits, now, dry_run, per_host=self.scope == "node")
        except Unreachable as exc:
            self._unreachable(exc)
            return False
        if verdict is None or isinstance(verdict, dict):
            return verdict
        guard, detail = verdict
        if guard == "duplicate":
            raise Skip("duplicate", detail)
        raise Refused(guard, refusal_text(guard, detail, self.cls_name, target, self.limits,
                                          self.scope))

    def reserve(self, target, event_id, dry_run=False):
        """Under the target lock: refuse on duplicate event, rate limit or global
        cap; otherwise record the run in the ledger (it counts even if it fails)
        and return its ledger entry."""
        now = self.clock()
        if self.fleet is not None and self.degraded is None:
            entry = self._reserve_fleet(target, event_id, dry_run, now)
            if entry is not False:
                return entry
        rate = self.limits["rate_limit"]
        cap = self.limits["global_cap"]
        fleet = self.limits.get("fleet_cap")
        horizon = max(rate["per"], cap["per"], (fleet or {}).get("per", 0), 86400)
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
                raise Refused("rate_limit", refusal_text("rate_limit", len(mine), self.cls_name,
                                                         target, self.limits))
            klass = [r for r in runs if r["cls"] == self.cls_name and now - r["ts"] <= cap["per"]
                     and r.get("outcome") not in IDLE]
            if len(klass) >= cap["max"]:
                raise Refused("global_cap", refusal_text("global_cap", len(klass), self.cls_name,
                                                         target, self.limits))
            member = self.member(target)
            if fleet:
                # Only this host's ledger: the fleet-wide count needs a coordination backend.
                members = {r.get("member", r["key"]) for r in runs if r["cls"] == self.cls_name
                           and now - r["ts"] <= fleet["per"] and r.get("outcome") not in IDLE}
                if member not in members and len(members) >= fleet["max"]:
                    raise Refused("fleet_cap", refusal_text("fleet_cap", len(members),
                                                            self.cls_name, target, self.limits,
                                                            self.scope))
            if dry_run:
                return None
            entry = {"ts": now, "cls": self.cls_name, "key": key, "target": str(target),
                     "member": member, "event": event_id, "pid": os.getpid(),
                     "outcome": "running"}
            runs.append(entry)
            return entry

    def settle(self, entry, outcome):
        """Write the final outcome of a reserved run."""
        if entry is None:
            return
        if "id" in entry and self.fleet is not None:
            from autoremedy.clients.coordination import Unreachable
            try:
                self.fleet.ledger().settle(entry, outcome)
            except Unreachable:
                pass        # stays "running": it keeps counting, the safe side
            return
        with statefile.updating(self.ledger_path) as ledger:
            for run in ledger.get("runs", []):
                if run["ts"] == entry["ts"] and run["key"] == entry["key"] and run["pid"] == entry["pid"]:
                    run["outcome"] = outcome
                    break

    def recent(self, limit=20):
        ledger = statefile.load(self.ledger_path, {}) or {}
        return ledger.get("runs", [])[-limit:]
