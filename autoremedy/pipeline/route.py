"""Routing table and the one forward-or-fall-back dispatch every handler uses.

    spool (durable, before anything else)
      -> StackStorm answers 2xx?          delivered: unspool, exit 0
      -> otherwise (unreachable, breaker open, not configured, 4xx):
           a problem event with a route?  guarded local remediation (perform())
           nothing we may do here?        escalate
         the event stays spooled with what happened (``autoremedy replay`` tells
         StackStorm later, marked as remediated locally or escalated).

Routes (``routes:`` in the configuration, first match wins) map an event to a
failure class and a target of that class's allowlist; without a matching route,
the event's own ``autoremedy_class`` / ``autoremedy_target`` labels (Sensu labels,
Classic custom attributes, Zabbix tags, the node hook's class and ``--target``)
name them::

    routes:
      - check: "proc-nova-compute*"     # glob on the event's check name
        labels: {service: nova}         # globs on labels / Zabbix tags (all must match)
        source: "sensu-*"               # sensu-go, sensu-classic, zabbix, hook
        host: "cmp-*"                   # glob on the event's host
        class: process                  # remediations/<class>.py
        target: nova-compute            # key of remediations.process.targets
        enabled: true                   # false: match, but never act locally here
        fallback: remediate             # remediate | node-hook | escalate

Either way the target is a key of the class's allowlist, resolved there: event
text can at most pick one of the configured targets, never define one (an
unknown or empty target is refused, never "all"). Whether a class may run here
is its scope (``remediations.<class>.scope``, else the class's own): ``node``
classes only act on the failing node itself, ``api`` classes act from anywhere. Enabled flags, allowlists, silences, maintenance, occurrences,
flapping, locks, rate limits, caps and dry-run are all ``perform()``'s guards.

Exit codes (docs/DEVELOPING.md): 0 delivered, or handled locally as configured;
1 escalation (refused or failed remediation, nothing may act here); 3
configuration error (StackStorm 4xx, TLS, bad settings). The event is in the
spool whenever it was not delivered.
"""
import fnmatch

from autoremedy.audit import safe_audit
from autoremedy.pipeline.event import printable
from autoremedy.contract.exitcodes import EXIT_CONFIG, EXIT_ESCALATED, EXIT_OK
from autoremedy.contract.guard import same_host    # one same-node rule for routing and maintenance
from autoremedy.contract.runtime import describe

NODE, BACKEND = "node", "backend"
REMEDIATE, NODE_HOOK, ESCALATE = "remediate", "node-hook", "escalate"
FALLBACKS = (REMEDIATE, NODE_HOOK, ESCALATE)
RAN = ("remediated", "failed", "partial")     # local outcomes whose steps ran: never run twice


# --- routing table ------------------------------------------------------------------

class Route:
    def __init__(self, spec, index):
        self.spec = spec
        self.index = index
        self.cls = spec.get("class")
        self.target = spec.get("target")
        self.enabled = spec.get("enabled", True)
        self.fallback = spec.get("fallback", REMEDIATE)

    def matches(self, event):
        for key, value in (("source", event.source), ("host", event.host), ("check", event.check)):
            pattern = self.spec.get(key)
            if pattern is not None and not fnmatch.fnmatchcase(value, pattern):
                return False
        for name, pattern in (self.spec.get("labels") or {}).items():
            if name not in event.labels or not fnmatch.fnmatchcase(event.labels[name], pattern):
                return False
        return True

    def __repr__(self):
        return f"routes[{self.index}]"


class RouteError(Exception):
    """The routing table is unusable; the text names the entry."""


def routes(config):
    out = []
    for i, spec in enumerate(config.get("routes") or []):
        fallback = spec.get("fallback", REMEDIATE)
        if fallback not in FALLBACKS:
            raise RouteError(f"routes[{i}].fallback: {fallback!r} is not one of {', '.join(FALLBACKS)}")
        if fallback != ESCALATE and (not spec.get("class") or not spec.get("target")):
            raise RouteError(f"routes[{i}]: 'class' and 'target' are required "
                             "(the target is a key of remediations.<class>.targets)")
        out.append(Route(spec, i))
    return out


def check_routes(config):
    """For ``autoremedy config check``: every route that may act names a known
    class and a key of that class's allowlist (ConfigError names the route)."""
    from autoremedy.contract.registry import available
    from autoremedy.config import ConfigError
    try:
        table = routes(config)
    except RouteError as exc:
        raise ConfigError(str(exc)) from None
    known = available("remediations")
    for route in table:
        if route.fallback == ESCALATE:
            continue
        if route.cls not in known:
            raise ConfigError(f"{route}.class: no such remediation class {route.cls!r} "
                              f"(known: {', '.join(known)})")
        if route.target not in (config.remediation(route.cls).get("targets") or {}):
            raise ConfigError(f"{route}.target: {route.target!r} is not in "
                              f"remediations.{route.cls}.targets")


def match(config, event):
    """The first route matching ``event``, or None."""
    for route in routes(config):
        if route.matches(event):
            return route
    return None


CLASS_LABEL, TARGET_LABEL = "autoremedy_class", "autoremedy_target"


def from_labels(event):
    """(class, target) named by the event's labels / Zabbix tags, the way the
    packaged Sensu checks and Zabbix triggers label themselves. Only a hint: the
    class must exist and enable itself, and the target must be a key of that
    class's allowlist (perform() refuses anything else, and an absent target)."""
    cls = event.labels.get(CLASS_LABEL)
    if not cls:
        return None, None
    return cls, event.labels.get(TARGET_LABEL) or None


# --- what happened --------------------------------------------------------------------

class Decision:
    """Everything one dispatch did, for the handler's output and exit code."""

    def __init__(self, event):
        self.event = event
        self.entry = None
        self.spool_error = None
        self.delivery = None
        self.outcome = None
        self.escalation = None
        self.config_error = None
        self.earlier = []        # local outcomes an earlier run recorded for this same event
        self.kept = False        # the spool holds the event for delivery (replay / drain)
        self.notes = []          # (stream, text): 'out' lines to stdout, 'err' to stderr

    def say(self, text):
        self.notes.append(("out", text))

    def warn(self, text):
        self.notes.append(("err", text))

    @property
    def exit_code(self):
        if self.config_error:
            return EXIT_CONFIG
        if self.escalation:
            return EXIT_ESCALATED
        return EXIT_OK

    def verdict(self):
        """One line for the monitor's log: what became of the event and why —
        delivered / kept for delivery / remediated locally / escalated. A retry of
        the same event gives the same line (the local outcome is the recorded one)."""
        if self.delivery is not None and self.delivery.ok:
            return f"delivered to StackStorm ({self.delivery.line()})"
        why = self.delivery.reason if self.delivery is not None else "not tried"
        head = f"kept for delivery (StackStorm: {why})" if self.kept else \
            f"NOT kept (StackStorm: {why}); the spool could not keep it"
        parts = [head]
        local = self.outcome_line()
        if local:
            parts.append(local)
        if self.escalation:
            parts.append(f"escalated: {self.escalation}")
        return "; ".join(parts)

    def outcome_line(self):
        if self.outcome is not None:
            word = "remediated locally" if self.outcome.status == "remediated" else "local"
            return f"{word}: {self.outcome.line()}"
        if self.earlier:
            last = self.earlier[-1]
            word = "remediated locally" if last.get("outcome") == "remediated" else "local"
            text = f"{last.get('class')} {last.get('target')}: {last.get('outcome')}"
            if last.get("reason"):
                text += f": {last['reason']}"
            return f"{word} (earlier attempt): {text}"
        return ""

    def print(self, out=None, err=None):
        import sys
        out, err = out or sys.stdout, err or sys.stderr
        from autoremedy import redact
        for stream, text in self.notes:
            (out if stream == "out" else err).write(f"autoremedy: {redact.text(text)}\n")


# --- the dispatch -----------------------------------------------------------------------

def dispatch(config, event, path, dry_run=False, cls=None, target=None, audit=None):
    """Spool, forward, fall back. Returns a Decision; never raises for expected
    trouble (network, StackStorm, guards, remediation failures). ``cls`` and
    ``target``, when given, are the caller's (the node hook's) instead of a route."""
    return Dispatch(config, event, path, dry_run, cls, target, audit).run()


class Dispatch:
    """One event on its way: spool, forward, fall back. What every step needs is
    held here once — the configuration, the Decision being built, the path (node
    hook or backend handler), dry-run, a class and target the caller forced, the
    audit trail and the audit fields that name the event — instead of being
    passed down each call."""

    def __init__(self, config, event, path, dry_run=False, cls=None, target=None, audit=None):
        from autoremedy.audit import audit_for
        from autoremedy.pipeline.spool import Spool
        self.config, self.event, self.path, self.dry_run = config, event, path, dry_run
        self.cls, self.target = cls, target
        self.audit = audit if audit is not None else audit_for(config)
        self.decision = Decision(event)
        self.spool = Spool(config.state_dir)
        # 'host' in an audit record is the machine that wrote it; the event's is event_host.
        self.base = {"event_id": event.id, "source": event.source, "event_host": event.host,
                     "check": event.check, "status": event.status.name, "path": path}

    def record(self, what, result, **fields):
        """An audit record about this event (never raises: safe_audit)."""
        safe_audit(self.audit, what, result, **fields, **self.base)

    def run(self):
        event, decision, spool = self.event, self.decision, self.spool
        if self._hand_over():
            # The continuous forwarder delivers it (keep-alive, bounded concurrency):
            # this handler's time does not grow with StackStorm's latency or the rate.
            try:
                decision.entry = spool.put(event, claim=False)
            except OSError as exc:
                decision.spool_error = f"cannot spool the event in {spool.dir}: {exc.strerror or exc}"
            else:
                decision.say(f"{event.describe()}: spooled for the forwarder ({decision.entry.name})")
                self.record("forward", "ok", outcome="handed-over")
                return decision
        try:
            decision.entry = spool.put(event)
            # What an earlier run (a retry of this alert by the monitor) already did
            # here: it is not done twice, and the retry reports the same outcome.
            # Only runs that changed something (or tried to) are final; a skip
            # (min_occurrences, silenced) or a refusal is judged again now.
            decision.earlier = [m for m in decision.entry.local if m.get("outcome") in RAN]
        except OSError as exc:
            decision.spool_error = f"cannot spool the event in {spool.dir}: {exc.strerror or exc}"
            decision.warn(decision.spool_error + " (delivering without a safety net)")
            self.record("spool", "error", reason=decision.spool_error)

        decision.delivery = self._forward()
        delivery = decision.delivery
        self.record("forward", "ok" if delivery.ok else "error", outcome=delivery.outcome,
                    code=delivery.code, request_id=delivery.request_id, reason=delivery.reason,
                    duration_ms=round(delivery.elapsed * 1000))
        if delivery.ok:
            if decision.entry is not None:
                spool.remove(decision.entry)
            decision.say(f"{event.describe()}: delivered to StackStorm ({delivery.line()})")
            self._drain()
            return decision

        if delivery.outcome == "config":
            decision.config_error = delivery.reason
            decision.warn(f"StackStorm configuration error for {event.describe()}: {delivery.reason}")
        else:
            decision.say(f"{event.describe()}: StackStorm not reached: {delivery.reason}")

        self._fall_back()

        if decision.entry is None and not decision.escalation:
            # Neither StackStorm nor the spool has it: only a retry by the monitor
            # (non-zero exit) can still bring it to StackStorm.
            self._escalate("StackStorm did not take the event and it could not be spooled")
        if decision.entry is not None:
            try:
                spool.save(decision.entry)
                decision.kept = True
                decision.say(f"event kept in the spool for replay ({decision.entry.name})")
            except OSError as exc:
                decision.warn(f"cannot update the spool entry: {exc.strerror or exc}")
        return decision

    def _hand_over(self):
        """Leave delivery to the forwarder (``replay --follow``)? Only when the
        configuration asks for it (``stackstorm.delivery: forwarder``), a forwarder
        is alive for this spool, and the breaker is closed: while StackStorm is
        known unreachable the event takes the direct path, whose local fallback is
        decided here, now, within the handler's budget."""
        if self.config.get("stackstorm.delivery", "direct") != "forwarder":
            return False
        from autoremedy.pipeline import forwarder
        from autoremedy.pipeline.breaker import CLOSED, Breaker
        if not forwarder.alive(self.spool):
            return False
        try:
            return Breaker.for_config(self.config).state().get("state", CLOSED) == CLOSED
        except OSError:
            return False

    def _forward(self):
        from autoremedy.pipeline.breaker import Breaker
        from autoremedy.pipeline.stackstorm import UNREACHABLE, CONFIG, Client, Delivery, SettingsError, document
        from autoremedy.config import ConfigError
        try:
            client = Client.from_config(self.config)
        except (SettingsError, ConfigError) as exc:
            return Delivery(CONFIG, None, str(exc))
        if client is None:
            return Delivery(UNREACHABLE, None, "StackStorm is not configured (stackstorm.url / "
                            "AUTOREMEDY_ST2_URL): falling back")
        breaker = Breaker.for_config(self.config)
        try:
            allowed = breaker.allow()
        except OSError:
            allowed = True          # no breaker state (read-only disk): just try
        if not allowed:
            return Delivery(UNREACHABLE, None, "circuit breaker open (StackStorm recently "
                            "unreachable): not trying until the cool-down ends")
        entry = self.decision.entry
        entry_data = entry.data if entry is not None else {}
        event = self.event
        document_ = document(entry_data, event.to_dict(), event.raw, self.config.hostname)
        try:
            delivery = client.post(document_, event.id)
        finally:
            client.close()
        try:
            if delivery.ok:
                breaker.success()
            elif delivery.outcome == UNREACHABLE:
                breaker.failure(delivery.reason)
        except OSError:
            pass
        if entry is not None and not delivery.ok:
            entry.attempted(delivery.reason)
        return delivery

    def _fall_back(self):
        event, decision = self.event, self.decision
        if not event.is_problem:
            article = "an" if event.action[:1] in "aeiou" else "a"
            decision.say(f"nothing to remediate for {article} {event.action} event "
                         f"({event.status.name}); StackStorm hears of it on replay")
            return
        if decision.earlier and not self.dry_run:
            self._restate()
            return
        cls, target = self.cls, self.target
        if cls is None:
            choice = self._choose()
            if choice is None:
                return                      # escalated or deferred: nothing runs here
            cls, target = choice
        self._remediate(cls, target)

    def _restate(self):
        """A retry of an event whose local remediation already ran (the monitor did
        not hear the first answer, or its alert failed): the remediation is not run
        again, and the answer is the first one — the same exit status on every retry."""
        decision = self.decision
        decision.say(f"{decision.outcome_line()}; not run again for this event")
        self.record("fallback", "ok", outcome="restated",
                    earlier=decision.earlier[-1].get("outcome"))
        escalation = (decision.entry.data.get("escalation") or {}) if decision.entry is not None else {}
        if escalation.get("reason"):
            decision.escalation = escalation["reason"]
            decision.warn(f"ESCALATION {self.event.describe()}: {escalation['reason']} (as before)")

    def _choose(self):
        """(class, target) for this event: the first matching route, else the event's
        autoremedy_class / autoremedy_target labels. None when nothing may run here
        (the reason is escalated, or the node hook is left to act)."""
        event = self.event
        try:
            route = match(self.config, event)
        except RouteError as exc:
            self._escalate(f"routing table: {exc}", config_error=True)
            return None
        if route is None:
            cls, target = from_labels(event)
            if cls is None:
                self._escalate(f"no route matches this event and it names no {CLASS_LABEL}: "
                               "no local remediation while StackStorm is unreachable")
                return None
            return cls, target
        if not route.enabled:
            self._escalate(f"{route} matches but is disabled")
            return None
        if route.fallback == ESCALATE:
            self._escalate(f"{route} says escalate, never remediate here")
            return None
        if route.fallback == NODE_HOOK and self.path == BACKEND:
            self.decision.say(f"{route}: the node hook on {printable(event.host)} remediates; "
                              "nothing to do on the backend")
            self.record("fallback", "ok", outcome="deferred-to-node", route=route.index)
            return None
        return route.cls, route.target

    def _remediate(self, cls, target):
        from autoremedy.contract.registry import load
        from autoremedy.config import ConfigError
        from autoremedy.contract.remediation import Trigger, perform
        from autoremedy.contract.runtime import UsageError
        config, event, decision = self.config, self.event, self.decision
        try:
            module = load("remediations", cls)
            remediation = module.REMEDIATION(config, audit=self.audit)
        except (UsageError, ConfigError) as exc:
            self._escalate(f"remediation {cls}: {exc}", config_error=True)
            return
        scope = remediation.settings.get("scope") or remediation.scope
        if scope == "node" and not same_host(event.host, config.hostname):
            self._not_here(cls)
            return
        trigger = Trigger(source=event.source, event_id=event.id, status=event.status,
                          host=event.host, occurrences=event.occurrences,
                          silenced=event.silenced, history=event.history)
        gate = gate_for(config)
        if gate is None:
            outcome = perform(remediation, target, trigger, dry_run=self.dry_run or None)
        else:
            # Not root: the remediation runs as root through the packaged sudo gate,
            # with the class and target decided above (configuration, never event text).
            admitted = _admit_event(config, remediation, target, trigger)
            outcome = admitted or through_gate(gate, cls, target, event.id, self.dry_run)
            self.record("fallback", "ok" if not outcome.escalate else outcome.status,
                        via="sudo-gate", gate=gate, gate_ran=admitted is None, cls=cls,
                        target=str(target), outcome=outcome.status, reason=outcome.reason,
                        guard=outcome.guard)
        decision.outcome = outcome
        if decision.entry is not None:
            decision.entry.mark_local(outcome, config.hostname)
        line = f"local {outcome.line()}"
        if outcome.verify:
            line += f" [verify: {outcome.verify['status']}: {outcome.verify['summary']}]"
        decision.say(line)
        if outcome.escalate:
            self._escalate(f"{cls} {target}: {outcome.status}: {outcome.reason}")

    def _drain(self):
        """A handler run that reached StackStorm delivers what waits in the spool, so
        a node without the replay timer (no systemd, no cron) is not left with it.
        Bounded (``spool.drain_max_events`` / ``drain_max_time``: an alert never becomes
        slow; one request may add up to stackstorm.read_timeout), oldest first, and
        through replay's own Replayer under its lock: a running replay or forwarder
        keeps the spool (never the same entry twice at once), entries a running
        handler holds are left to it, and the first failure stops the drain so one
        incident's events keep their order."""
        config, spool, decision = self.config, self.spool, self.decision
        limit = int(config.get("spool.drain_max_events", 10) or 0)
        budget = float(config.get("spool.drain_max_time", 2.0) or 0)
        if limit <= 0 or budget <= 0:
            return
        try:
            if not spool.names():
                return                       # the usual case costs one directory listing
        except OSError:
            return
        from autoremedy import statefile
        from autoremedy.pipeline.breaker import Breaker
        from autoremedy.pipeline.replayer import Replayer
        from autoremedy.pipeline.stackstorm import Client, SettingsError
        from autoremedy.config import ConfigError
        try:
            client = Client.from_config(config)
        except (SettingsError, ConfigError):
            return
        if client is None:
            return
        try:
            with statefile.locked(spool.replay_lock_path, timeout=0):
                replayer = Replayer(spool, client, Breaker.for_config(config), self.audit,
                                    config.hostname, max_time=budget, limit=limit,
                                    backoff_max=budget).run()
        except TimeoutError:
            return                           # a replay (or the forwarder) is at it
        except OSError as exc:
            decision.warn(f"spool not drained: {exc.strerror or exc}")
            return
        finally:
            client.close()
        if replayer.delivered or replayer.stopped in ("unreachable", "config"):
            left = spool.stats()["depth"]
            text = f"drained {replayer.delivered} earlier event(s) from the spool, {left} left"
            if replayer.stopped in ("unreachable", "config"):
                text += f" (stopped: {replayer.last_error})"
            decision.say(text)

    def _not_here(self, cls):
        """A node-scoped class for another node: only that node may act. A Sensu Go
        event carries the results of the check hooks the agent ran on the node
        (``check.hooks``), so the backend can tell whether the node hook handled it."""
        event = self.event
        ours = [h for h in event.extra.get("hooks") or [] if "autoremedy handle hook" in h["command"]]
        if ours:
            hook = ours[-1]
            said = next((line for line in hook["output"].splitlines() if "autoremedy: local " in line),
                        hook["output"].strip().splitlines()[-1] if hook["output"].strip() else "")
            if hook["status"] == 0:
                self.decision.say(f"the node hook on {printable(event.host)} handled it: "
                                  f"{printable(said)}")
                self.record("fallback", "ok", outcome="handled-by-node-hook", hook=hook["name"])
                return
            self._escalate(f"the node hook on {printable(event.host)} exited "
                           f"{hook['status']}: {printable(said)}")
            return
        where = "the node hook" if self.path == BACKEND else "that node"
        self._escalate(f"{cls} is node-scoped: it runs only on {printable(event.host)} "
                       f"(this is {self.config.hostname}); use {where}")

    def _escalate(self, reason, config_error=False):
        """Escalation: non-zero exit, an audit record, the spool entry marked (so the
        StackStorm workflow pages a human on replay), and the hook point for the
        incident bundle."""
        decision = self.decision
        bundle = incident_bundle(self.config, self.event, reason)
        decision.escalation = reason
        if config_error:
            decision.config_error = decision.config_error or reason
        if decision.entry is not None:
            decision.entry.mark_escalated(reason, bundle)
        elif decision.spool_error and "could not be spooled" not in reason:
            reason = f"{reason}; and the event could not be spooled"
        self.record("escalation", "escalated", reason=reason, bundle=bundle)
        decision.warn(f"ESCALATION {self.event.describe()}: {reason}")


# --- the sudo gate ------------------------------------------------------------------------
#
# The handlers run as the monitor's user (sensu, zabbix): without root a restart,
# a clean-up of root's files or a signal to a root-owned process fails. The
# packages install one command that user may run as root (sudoers drop-in
# packaging/sudoers/autoremedy): ``remediate CLASS TARGET [EVENT_ID] [--dry-run]``,
# which runs ``autoremedy remediate ... --json`` with root's configuration and all
# of perform()'s guards. docs/security.md, "The alert path's fallback".

GATE_TIMEOUT = 900.0        # longer than any settle + lock wait: a hung gate is a failure
SUDO_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def gate_for(config, euid=None):
    """The gate command the local fallback runs through, or None (perform() here).
    ``fallback.gate``: never; always; auto (default) = when not root and the
    gate is installed."""
    import os
    mode = config.get("fallback.gate", "auto")
    command = config.get("fallback.gate_command", "/usr/libexec/autoremedy/remediate")
    if mode == "never":
        return None
    euid = os.geteuid() if euid is None else euid
    if mode == "auto" and (euid == 0 or not os.path.isfile(command)):
        return None
    return command


def _admit_event(config, remediation, target, trigger):
    """The guards that need the event itself (silenced, maintenance naming the
    event's host, occurrences, flapping), judged here: the gate takes only class,
    target and event id. Returns the skip/refusal Outcome, or None to go on (the
    gate applies every guard again as root)."""
    from autoremedy.contract.guard import Guard, Refused, Skip
    from autoremedy.contract.remediation import REFUSED, SKIPPED, Outcome
    guard = Guard(config.state_dir, remediation.name, config.guards(remediation.name),
                  maintenance_file=config.get("maintenance_file"), hostname=config.hostname,
                  scope=remediation.settings.get("scope") or remediation.scope)
    try:
        guard.admit(remediation.resolve(target), trigger)
    except Skip as exc:
        return Outcome(remediation.name, target, SKIPPED, exc.reason, guard=exc.guard,
                       event_id=trigger.event_id)
    except Refused as exc:
        return Outcome(remediation.name, target, REFUSED, exc.reason, guard=exc.guard,
                       event_id=trigger.event_id)
    except OSError as exc:
        return Outcome(remediation.name, target, REFUSED, f"guard state cannot be kept in "
                       f"{config.state_dir}: {exc.strerror or exc}", guard="state",
                       event_id=trigger.event_id)
    return None


def _gate_word(text):
    """An event id the gate accepts (its own shape check), else None: the gate
    then runs without one rather than refusing the remediation."""
    import re
    return text if text and re.fullmatch(r"[A-Za-z0-9_.:][A-Za-z0-9_.:-]*", text) else None


def through_gate(gate, cls, target, event_id=None, dry_run=False, run=None):
    """``sudo -n GATE CLASS TARGET [EVENT_ID] [--dry-run]`` (an argument list, no
    shell); its JSON outcome as an Outcome, exactly as perform() would return it.
    Anything else — sudo refusing (no rule, a password asked), the gate refusing
    its input, no JSON — is a refusal with that one line as the reason."""
    import json
    import shutil
    import subprocess
    from autoremedy.contract.remediation import REFUSED, Outcome
    sudo = shutil.which("sudo", path=SUDO_PATH)

    def refused(reason):
        return Outcome(cls, target, REFUSED, reason, guard="gate", event_id=event_id)
    if sudo is None:
        return refused(f"sudo is not installed: cannot run the gate {gate}")
    import os
    if not os.path.isfile(gate):
        return refused(f"the sudo gate {gate} is not installed (fallback.gate_command)")
    argv = [sudo, "-n", gate, cls, str(target)]
    if _gate_word(event_id):
        argv.append(event_id)
    if dry_run:
        argv.append("--dry-run")
    try:
        ran = (run or subprocess.run)(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                      timeout=GATE_TIMEOUT, cwd="/", env={"PATH": SUDO_PATH,
                                                                           "LANG": "C.UTF-8"})
    except subprocess.TimeoutExpired:
        return Outcome(cls, target, "failed", f"the sudo gate did not answer within "
                       f"{GATE_TIMEOUT:g}s", guard="gate", event_id=event_id)
    except OSError as exc:
        return refused(f"cannot run sudo: {exc.strerror or exc}")
    out = ran.stdout.decode("utf-8", "replace") if isinstance(ran.stdout, bytes) else ran.stdout
    err = ran.stderr.decode("utf-8", "replace") if isinstance(ran.stderr, bytes) else ran.stderr
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                break
            if isinstance(data, dict) and isinstance(data.get("outcome"), str):
                return Outcome(data.get("class") or cls, data.get("target") or target,
                               data["outcome"], data.get("reason") or "",
                               notes=data.get("notes") or (), verify=data.get("verify"),
                               guard=data.get("guard"), duration=data.get("duration_s") or 0.0,
                               event_id=data.get("event_id") or event_id)
            break
    said = next((ln.strip() for ln in reversed(err.splitlines()) if ln.strip()), "")
    said = printable(said[:300]) or f"exit status {ran.returncode}, nothing said"
    # sudo's own refusals: "sudo: a password is required" (-n), "Sorry, user X is
    # not allowed to execute ..." / "Sorry, user X may not run sudo on H.".
    if said.startswith(("sudo:", "Sorry, user")) or "password" in said:
        return refused(f"sudo refused the gate (sudo -n {gate}): {said}")
    return refused(f"the sudo gate exited {ran.returncode}: {said}")


def incident_bundle(config, event, reason):
    """HOOK POINT for the incident bundle (``autoremedy collect``) on an escalation.

    Called once per escalation, before the spool entry is marked; whatever it
    returns (a small JSON-able dict: the bundle's location and summary) travels to
    StackStorm in ``autoremedy.escalation.bundle`` and into the audit record.

    It calls ``autoremedy.collection.collect.for_event(config, host, check, when, ids)`` (the
    log window around the event centred on its ids and errors, the new error
    signatures, the records that disagree with the logs) when the configuration asks
    for it with ``stackstorm.attach_bundle: true``: collecting logs takes time in
    the monitor's handler path, so it is opt-in. A failure here never stops the
    escalation itself.
    """
    if not config.get("stackstorm.attach_bundle"):
        return None
    import importlib
    try:
        collect = importlib.import_module("autoremedy.collection.collect")
    except ImportError:
        return None
    build = getattr(collect, "for_event", None)
    if build is None:
        return None
    try:
        ids_of = getattr(collect, "event_ids", None)
        ids = ids_of(event.labels, event.output, event.labels.get("autoremedy_target")) if ids_of else ()
        return build(config, event.host, event.check, event.timestamp, ids=ids)
    except Exception as exc:   # the escalation must go out even if collecting fails
        return {"error": describe(exc)}

