"""What every remediation is, and the one guarded way to perform it.

A remediation class (``remediations/<class>.py``) subclasses ``Remediation`` and
provides ``plan`` (what it would do), ``run`` (do it) and ``verify`` (re-run the
check). ``perform`` wraps them in every guard (autoremedy.contract.guard), dry-run and
an audit record for each decision; the node hook, the Sensu/Zabbix handlers,
``autoremedy remediate`` and the StackStorm pack all end here.

Every class also declares ``reach`` (what the run may change) and
``invariants`` (what must survive it); ``perform`` reads both before and after
the run and reports ``remediated`` only when the check passes, every invariant
holds and nothing outside the reach changed (autoremedy.contract.noharm).

Targets come from the class's allowlist in the configuration, never from event
text: ``resolve`` looks a name up in the allowlist and refuses anything else.
"""
import time

from autoremedy import config as configmod
from autoremedy.contract import execute
from autoremedy.contract.guard import Guard, Refused, Skip, fleet_for
from autoremedy.contract.noharm import Evidence, Unreadable
from autoremedy.contract.result import Status

# Outcome words. The first four need nobody; the last three are escalations
# ("partial": the run did something, the whole is not back — a human finishes).
REMEDIATED, NOOP, DRY_RUN, SKIPPED, REFUSED, FAILED, PARTIAL = (
    "remediated", "noop", "dry-run", "skipped", "refused", "failed", "partial")
ESCALATIONS = (REFUSED, FAILED, PARTIAL)

COMMON_SCHEMA = {
    "enabled": bool,
    "scope": str,
    "dry_run": bool,
    "guards": configmod.Any,     # validated by Config.guards
    "verify_timeout": configmod.Duration,
}


class Trigger:
    """Why a remediation is being considered: which event, from where, how bad."""

    def __init__(self, source="cli", event_id=None, status=None, occurrences=None,
                 silenced=False, history=None, host=None):
        self.source = source
        self.host = host            # the event's host: the maintenance file may name it
        self.event_id = event_id
        self.status = None if status is None else Status.coerce(status)
        self.occurrences = occurrences
        self.silenced = bool(silenced)
        self.history = list(history or [])


class Step:
    """One action of a plan: a description and, usually, the argv it runs."""

    def __init__(self, description, argv=None, timeout=60.0, action=None, detach=False,
                 allow_failure=False, details=None):
        self.description = description
        self.details = list(details or [])  # e.g. the files a cleanup would delete
        self.allow_failure = allow_failure  # e.g. stopping what is already dead
        self.argv = list(argv) if argv is not None else None
        self.timeout = timeout
        self.action = action          # a callable for API-driven steps
        self.detach = detach

    def to_dict(self):
        out = {"step": self.description}
        if self.argv is not None:
            out["argv"] = self.argv
        if self.details:
            out["details"] = self.details
        return out

    def __repr__(self):
        return f"Step({self.description!r})"


class Outcome:
    def __init__(self, cls_name, target, status, reason="", plan=(), notes=(), verify=None,
                 guard=None, duration=0.0, event_id=None, evidence=None):
        self.cls_name, self.target, self.status = cls_name, target, status
        self.reason, self.plan, self.notes = reason, list(plan), list(notes)
        self.verify, self.guard, self.duration, self.event_id = verify, guard, duration, event_id
        self.evidence = evidence    # noharm.Evidence: reach and invariants, before/after

    @property
    def escalate(self):
        return self.status in ESCALATIONS

    @property
    def harm(self):
        """What the run changed outside its reach or broke (empty: no harm seen)."""
        return list(self.evidence.problems) if self.evidence is not None else []

    def to_dict(self):
        out = {"class": self.cls_name, "target": str(self.target), "outcome": self.status,
               "reason": self.reason, "guard": self.guard,
               "plan": [s.to_dict() for s in self.plan], "notes": self.notes,
               "verify": self.verify, "duration_s": round(self.duration, 3),
               "event_id": self.event_id}
        if self.evidence is not None:
            out.update(self.evidence.to_dict())
            out["harm"] = self.harm
        return out

    def line(self):
        text = f"{self.cls_name} {self.target}: {self.status}"
        return f"{text}: {self.reason}" if self.reason else text


class RemediationError(Exception):
    """A step failed; the remediation stops and escalates."""


class Noop(Exception):
    """Raised by ``run`` when it finds, under the lock, that nothing needs doing
    (another host already fixed it): the outcome is ``noop`` and no rate-limit
    slot is spent."""


class Remediation:
    """Subclass per failure class. Class attributes:

    name    the failure class (``process``, ``disk`` ...)
    scope   ``node`` (runs only on the failing node) or ``api`` (anywhere with API access)
    schema  class-specific configuration keys under ``remediations.<name>``
    """

    name = None
    scope = "node"
    schema = {}

    def __init__(self, config, runner=execute.run, audit=None):
        self.config = config
        self.runner = runner
        self.audit = audit
        self.settings = configmod.section(config, f"remediations.{self.name}",
                                          {**COMMON_SCHEMA, **self.schema})

    # -- what subclasses provide ------------------------------------------------
    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("target", help="a target named in the configuration's allowlist")

    def target_from_args(self, args):
        return args.target

    def allowlist(self):
        """{target name: settings} from the configuration."""
        return self.settings.get("targets") or {}

    def listed(self, name):
        """Whether ``name`` is an allowlisted target, decided from the configuration
        alone (no probe): the node hook asks before it runs a check with options a
        less trusted caller chose. ``resolve`` still decides for the run itself."""
        return bool(name) and name in self.allowlist()

    def lock_key(self, target):
        """What the per-target lock is keyed by: the target itself by default. A
        class whose targets can name one resource twice (two names for one
        database server) returns the resource's identity: one lock for all names."""
        return target

    def resolve(self, name):
        """The allowlisted target called ``name``; refuse anything else (an empty or
        unknown target is an error, never 'all')."""
        targets = self.allowlist()
        if not name:
            raise Refused("allowlist", "no target given")
        if name not in targets:
            raise Refused("allowlist", f"{name!r} is not in remediations.{self.name}.targets")
        return name

    def plan(self, target):
        """Steps that would fix ``target``; [] when it is already healthy."""
        raise NotImplementedError

    def run(self, target, plan):
        """Execute the plan through the subprocess boundary; return notes."""
        notes = []
        for step in plan:
            notes.append(self.run_step(step))
        return notes

    def run_step(self, step):
        if step.action is not None:
            return f"{step.description}: {step.action() or 'done'}"
        try:
            done = self.runner(step.argv, timeout=step.timeout, detach=step.detach)
        except execute.CommandError as exc:
            raise RemediationError(f"{step.description}: {exc}") from None
        if done.returncode not in (0, None):
            if step.allow_failure:
                return f"{step.description}: exit {done.returncode} (tolerated)"
            raise RemediationError(f"{step.description}: exit {done.returncode}: {done.brief()}")
        return f"{step.description}: ok"

    def verify(self, target):
        """Re-run the check for ``target``; return a Result. A Result with a true
        ``partial`` attribute means "some of it is back": outcome ``partial``."""
        raise NotImplementedError

    def reach(self, target, plan):
        """[noharm.Reach]: exactly what ``plan`` may change, and how to list
        everything of that kind the run could touch. Every class declares it;
        None means "not declared": the run refuses (guard ``no-harm``)."""
        return None

    def invariants(self, target, plan):
        """[noharm.Invariant]: what must survive the run, each with how it is
        read. Every class declares it; None means "not declared"."""
        return None

    # -- helpers for subclasses -----------------------------------------------------
    @staticmethod
    def poll(probe, seconds, interval=0.25, sleep=time.sleep):
        """Re-run ``probe() -> Result`` until it is OK or ``seconds`` have passed and
        return the last Result: the verification of most classes (a restarted
        daemon or a rejoined node needs a moment before the check can pass)."""
        deadline = time.monotonic() + seconds
        while True:
            result = probe()
            if result.status is Status.OK or time.monotonic() >= deadline:
                return result
            sleep(interval)

    @staticmethod
    def needs_action(result, what):
        """False when the check passes (the plan is empty: idempotent), True when it
        fails; raise when it cannot tell — acting blind could double a daemon or
        delete what is still needed."""
        if result.status is Status.OK:
            return False
        if result.status is Status.UNKNOWN:
            raise Refused("precondition", f"cannot tell {what}: {result.summary}")
        return True

    # -- shared behaviour ---------------------------------------------------------
    @property
    def enabled(self):
        return bool(self.settings.get("enabled"))

    @property
    def dry_run(self):
        return self.config.dry_run or bool(self.settings.get("dry_run"))


def _evidence(remediation, target, plan):
    """The class's declarations for this plan. A class that declares neither its
    reach nor its invariants cannot be checked for harm: it refuses (Unreadable)."""
    reaches = remediation.reach(target, plan)
    invariants = remediation.invariants(target, plan)
    if reaches is None and invariants is None:
        raise Unreadable(f"{remediation.name} declares neither its reach nor its invariants: "
                         "what the run could harm cannot be read, so it does not run "
                         "(docs/noharm.md)")
    return Evidence(reaches or [], invariants or [])


def perform(remediation, target_name, trigger=None, audit=None, dry_run=None, clock=time.time):
    """Run one remediation through every guard. Never raises for expected
    failures: returns an Outcome whose ``escalate`` says whether a human is needed."""
    trigger = trigger or Trigger()
    config = remediation.config
    cls_name = remediation.name
    audit = audit or remediation.audit
    dry_run = remediation.dry_run if dry_run is None else (dry_run or remediation.dry_run)
    started = time.monotonic()
    base = {"cls": cls_name, "target": str(target_name), "event_id": trigger.event_id,
            "trigger": trigger.source, "dry_run": dry_run}
    evidence = None

    def finish(status, reason="", guard_name=None, plan=(), notes=(), verify=None):
        outcome = Outcome(cls_name, target_name, status, reason, plan, notes, verify,
                          guard_name, time.monotonic() - started, trigger.event_id, evidence)
        if audit is not None:
            shown = evidence.to_dict() if evidence is not None else {}
            try:
                audit.record("remediation", "ok" if status in (REMEDIATED, NOOP, DRY_RUN, SKIPPED)
                             else status, outcome=status, reason=reason, guard=guard_name,
                             plan=[s.to_dict() for s in plan] or None, notes=list(notes) or None,
                             verify=verify, duration_ms=round(outcome.duration * 1000),
                             reach=shown.get("reach"), invariants=shown.get("invariants"),
                             harm=outcome.harm or None, **base)
            except OSError as exc:
                # The outcome stands even when the audit cannot be written; say so.
                outcome.notes.append(f"audit record not written: {exc}")
        return outcome

    guard = Guard(config.state_dir, cls_name, config.guards(cls_name),
                  maintenance_file=config.get("maintenance_file"), hostname=config.hostname,
                  clock=clock, scope=remediation.settings.get("scope") or remediation.scope)
    try:
        if not remediation.enabled:
            raise Refused("enabled", f"remediations.{cls_name}.enabled is not true")
        guard.fleet = fleet_for(config)     # None: this host's guards (no coordination:)
        target = remediation.resolve(target_name)
        guard.admit(target, trigger)
        with guard.lock(remediation.lock_key(target)):
            entry = guard.reserve(target, trigger.event_id, dry_run=dry_run)
            try:
                plan = remediation.plan(target)
            except (Refused, Skip):
                # A class-specific safety refusal (DEVELOPING.md: "raise Refused from
                # resolve/plan"): an escalation with its guard name, not a failure.
                guard.settle(entry, REFUSED)
                raise
            except Exception as exc:
                guard.settle(entry, FAILED)
                return finish(FAILED, f"planning failed: {exc}")
            if not plan:
                guard.settle(entry, NOOP)
                return finish(NOOP, "already healthy (the check passes), nothing to do: "
                                    "a plan is made only while the check fails")
            # The no-harm evidence, before anything moves: a run that cannot see
            # what it could harm is blind, and refuses.
            try:
                evidence = _evidence(remediation, target, plan)
                evidence.read_before()
            except (Refused, Skip):
                guard.settle(entry, REFUSED)
                raise
            except Unreadable as exc:
                guard.settle(entry, REFUSED)
                return finish(REFUSED, str(exc), "no-harm", plan=plan)
            except Exception as exc:
                guard.settle(entry, REFUSED)
                return finish(REFUSED, f"cannot declare what the run could harm: {exc}",
                              "no-harm", plan=plan)
            if dry_run:
                return finish(DRY_RUN, "would run the plan", plan=plan)
            try:
                notes = remediation.run(target, plan)
            except Noop as exc:
                guard.settle(entry, NOOP)
                return finish(NOOP, str(exc) or "nothing left to do", plan=plan)
            except Exception as exc:
                guard.settle(entry, FAILED)
                harm = evidence.read_after() if evidence is not None else []
                return finish(FAILED, _with_harm(str(exc), harm), plan=plan)
            try:
                result = remediation.verify(target)
            except Exception as exc:
                result = None
                failure = f"verification could not run: {exc}"
            harm = evidence.read_after() if evidence is not None else []
            if result is None:
                guard.settle(entry, FAILED)
                return finish(FAILED, _with_harm(failure, harm), plan=plan, notes=notes)
            verify = {"status": result.status.name, "summary": result.summary}
            if harm:
                guard.settle(entry, FAILED)
                return finish(FAILED, _with_harm(f"harm detected (check {result.status.name})",
                                                 harm), plan=plan,
                              notes=notes, verify=verify)
            if result.status is Status.OK:
                guard.settle(entry, REMEDIATED)
                return finish(REMEDIATED, "verified OK", plan=plan, notes=notes, verify=verify)
            status = PARTIAL if getattr(result, "partial", False) else FAILED
            guard.settle(entry, status)
            return finish(status, f"verification failed: {result.status.name}: {result.summary}",
                          plan=plan, notes=notes, verify=verify)
    except Skip as exc:
        return finish(SKIPPED, exc.reason, exc.guard)
    except Refused as exc:
        return finish(REFUSED, exc.reason, exc.guard)
    except TimeoutError:
        return finish(REFUSED, "another remediation of this target is still running", "lock")
    except configmod.ConfigError as exc:
        return finish(REFUSED, str(exc), "config")
    except OSError as exc:
        # The guards' ledger and locks live in the state directory: when it
        # cannot be written (permissions, ENOSPC, EROFS, a planted name) the
        # rate limit and the lock cannot be honoured, so nothing runs.
        return finish(REFUSED, f"guard state cannot be kept in {config.state_dir}: "
                               f"{exc.strerror or exc}", "state")


def _with_harm(reason, harm):
    """The reason, then every difference the no-harm comparison found."""
    if not harm:
        return reason
    return f"{reason}; " + "; ".join(harm)
