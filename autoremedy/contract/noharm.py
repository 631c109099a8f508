"""The no-harm contract: what a remediation may change, and what must survive it.

A check passing after a run is not evidence that the run harmed nothing: a cap
policy can truncate queues it never named, a reset can delete a peer's queues,
a bootstrap can make a second Primary, and the check still passes. So every
remediation declares, next to its plan:

- its **reach** (``Reach``): the exact resources the run may change — the
  plan's names — and a way to read every resource of that kind the run could
  touch (the "world": a superset). After the run, a resource outside the names
  that changed is harm, whatever the check says. A reached resource may also
  be held to the change the plan announced (``expect``: e.g. an instance must
  end ACTIVE on another host, not in ERROR).
- its **invariants** (``Invariant``): what must hold before and after — every
  durable queue's message count, the set of Primary components, a table's
  checksum against the source, the power state of instances outside the plan —
  each with *how* it is read, so the operator can judge the evidence.

``perform()`` (autoremedy.contract.remediation) reads both before the run (a run whose
evidence cannot be read refuses, naming what is unknown), runs, reads them
again and reports ``remediated`` only when the check passes, every invariant
holds and nothing outside the reach changed. Reading is the class's job and
must stay bounded: one API listing, one ``virsh list``, chunked checksums.
"""
import json

NOT_READ = object()


def _plain(value, limit=4000):
    """A JSON-safe, bounded rendering of a reading for the outcome and audit."""
    try:
        text = json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        text = repr(value)
        return text[:limit]
    if len(text) <= limit:
        return json.loads(text)
    return text[:limit] + f"... ({len(text)} chars)"


class Unreadable(Exception):
    """The evidence cannot be read: a run would be blind, so it refuses."""


class Invariant:
    """Something that must survive the run.

    name   what it is ("queue qa1 messages", "Primary components")
    how    how it is read ("GET /api/queues/%2F?columns=name,messages")
    read   () -> a JSON-able value; raise (anything) when it cannot be read
    holds  (before, after) -> bool; default: unchanged
    rule   the rule ``holds`` applies, in words ("unchanged", "not fewer")
    """

    def __init__(self, name, how, read, holds=None, rule="unchanged"):
        self.name, self.how, self.read = name, how, read
        self.holds = holds or (lambda before, after: before == after)
        self.rule = rule

    @staticmethod
    def not_fewer(name, how, read):
        """Counts that must not drop (messages, rows, instances)."""
        return Invariant(name, how, read, holds=lambda b, a: a is not None and b is not None
                         and a >= b, rule="not fewer")


class Reach:
    """What the run may change, and how to see everything it could change.

    kind    the resource kind ("queue", "file", "instance", "node", "table")
    names   the keys the plan names: the only ones allowed to change
    read    () -> {key: state}: every resource of this kind the run could touch
            (a superset of ``names``); ``None`` when the plan changes nothing
            of its kind that can be listed (then only the invariants guard it)
    how     how ``read`` reads it
    expect  optional {key: (before, after) -> bool}: the change the plan
            announced for a reached key (no entry: any change is allowed)
    appear  whether keys that did not exist before may appear outside the
            names (files a daemon writes while we clean up: yes; queues: no)
    """

    def __init__(self, kind, names, read=None, how="", expect=None, appear=False):
        self.kind = kind
        self.names = [str(n) for n in names]
        self.read, self.how = read, how
        self.expect = dict(expect or {})
        self.appear = appear

    def differences(self, before, after):
        """Changes the reach does not allow, as one line each."""
        out = []
        allowed = set(self.names)
        for key in sorted(set(before) | set(after), key=str):
            was, now = before.get(key, NOT_READ), after.get(key, NOT_READ)
            if was == now:
                continue
            if key not in allowed:
                if was is NOT_READ and self.appear:
                    continue
                out.append(f"{self.kind} {key} changed outside the plan: "
                           f"{_show(was)} -> {_show(now)}")
            elif key in self.expect and not self.expect[key](
                    None if was is NOT_READ else was, None if now is NOT_READ else now):
                out.append(f"{self.kind} {key} did not change as planned: "
                           f"{_show(was)} -> {_show(now)}")
        return out


def _show(value):
    if value is NOT_READ:
        return "(absent)"
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 200 else text[:200] + "..."


class Evidence:
    """The readings of one run: reach worlds and invariants, before and after."""

    def __init__(self, reaches, invariants):
        self.reaches = list(reaches or [])
        self.invariants = list(invariants or [])
        self.before_world, self.after_world = {}, {}
        self.before_inv, self.after_inv = {}, {}
        self.problems = []      # unreadable after the run, broken invariants, harm

    def read_before(self):
        """Read everything; raise Unreadable naming what cannot be read."""
        unknown = []
        for i, reach in enumerate(self.reaches):
            if reach.read is None:
                continue
            try:
                self.before_world[i] = dict(reach.read())
            except Exception as exc:  # any failure means blind: refuse
                unknown.append(f"{reach.kind}s ({reach.how}): {_why(exc)}")
        for i, inv in enumerate(self.invariants):
            try:
                self.before_inv[i] = inv.read()
            except Exception as exc:
                unknown.append(f"{inv.name} ({inv.how}): {_why(exc)}")
        if unknown:
            raise Unreadable("cannot read what the run could harm: " + "; ".join(unknown))

    def read_after(self):
        """Read again and compare; return the list of problems (empty = no harm)."""
        for i, reach in enumerate(self.reaches):
            if reach.read is None or i not in self.before_world:
                continue
            try:
                self.after_world[i] = dict(reach.read())
            except Exception as exc:
                self.problems.append(f"cannot read {reach.kind}s after the run "
                                     f"({reach.how}): {_why(exc)}")
                continue
            self.problems.extend(reach.differences(self.before_world[i], self.after_world[i]))
        for i, inv in enumerate(self.invariants):
            try:
                self.after_inv[i] = inv.read()
            except Exception as exc:
                self.problems.append(f"cannot read {inv.name} after the run ({inv.how}): "
                                     f"{_why(exc)}")
                continue
            if not inv.holds(self.before_inv.get(i), self.after_inv[i]):
                self.problems.append(f"invariant broken: {inv.name} ({inv.rule}): "
                                     f"{_show(self.before_inv.get(i))} -> "
                                     f"{_show(self.after_inv[i])}")
        return self.problems

    def to_dict(self):
        """What the dry-run, the JSON outcome and the audit record show."""
        reach = []
        for i, r in enumerate(self.reaches):
            row = {"kind": r.kind, "names": r.names, "how": r.how or None,
                   "watched": len(self.before_world.get(i, {})) if r.read else None}
            if i in self.after_world:
                before, after = self.before_world[i], self.after_world[i]
                row["changed"] = sorted((str(k) for k in set(before) | set(after)
                                         if before.get(k, NOT_READ) != after.get(k, NOT_READ)))
            reach.append(row)
        invariants = []
        for i, inv in enumerate(self.invariants):
            row = {"name": inv.name, "how": inv.how, "rule": inv.rule,
                   "before": _plain(self.before_inv.get(i))}
            if i in self.after_inv:
                row["after"] = _plain(self.after_inv[i])
                row["holds"] = bool(inv.holds(self.before_inv.get(i), self.after_inv[i]))
            invariants.append(row)
        return {"reach": reach, "invariants": invariants}


def _why(exc):
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
