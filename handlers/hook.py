"""``autoremedy handle hook <class>``: the node side. Run the check here, then
forward the result to StackStorm or fall back to the guarded local remediation.

    $ autoremedy handle hook process --target nova-compute --unit nova-compute
    PROCESS CRITICAL: 0 processes matching unit nova-compute (crit 1:) | 'count'=0;;1:;0 ...
    autoremedy: hook cmp-07/process CRITICAL (id hook-5f1c...): StackStorm not reached: connection refused by st2:443
    autoremedy: local process nova-compute: remediated: verified OK [verify: OK: 1 process matching unit nova-compute]
    autoremedy: event kept in the spool for replay (...)

This is what a Sensu check hook, a Zabbix action's remote command or a timer
runs on the failing node (Sensu handlers run on the backend:
https://docs.sensu.io/sensu-go/latest/plugins/assets/). Hook options come first;
every other option goes to ``autoremedy check
<class>``:

    --target NAME       key of remediations.<class>.targets to remediate (else the
                        routing table decides, from the check name)
    --check-name NAME   the event's check name (default: the class)
    --config FILE       configuration (also passed to the check)
    --dry-run           plan the remediation, change nothing
    --silenced          the monitor has this check silenced (or the problem is
                        suppressed): forward the event, never remediate it
                        here (also AUTOREMEDY_SILENCED=1)

The hook remembers the incident (``<state_dir>/hook/incidents.json``): its start
makes the event id stable across runs of the same incident (one remediation,
however many hooks fire), and its consecutive failures are the event's
occurrences (the ``min_occurrences`` guard). An OK result closes the incident and
is forwarded only if an incident was open, so a healthy node costs one check run.

Exit: 0 OK, delivered or handled locally; 1 escalation; 2 bad command line;
3 configuration error.
"""
import hashlib
import os

from autoremedy.contract.runtime import ArgumentParser, UsageError, fail

from autoremedy.handlers._common import EXIT_BAD_INPUT, EXIT_CONFIG, Setup, run_dispatch

SOURCE = "hook"
INCIDENT_TTL = 7 * 86400.0      # an incident not seen for a week is forgotten
USAGE = "usage: autoremedy handle hook <class> [--target NAME] [--check-name NAME] " \
        "[--config FILE] [--dry-run] [--silenced] [check options]"


def parser():
    p = ArgumentParser(prog="autoremedy handle hook", add_help=False, allow_abbrev=False)
    p.add_argument("--target")
    p.add_argument("--check-name")
    p.add_argument("--config")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--silenced", action="store_true")
    return p


def _silenced(own, environ=None):
    """The hook's silence input: ``--silenced`` or AUTOREMEDY_SILENCED (a Sensu
    check hook inherits the agent's environment; a Zabbix action for suppressed
    problems passes the flag). Same effect as Sensu's ``is_silenced``: the event
    is forwarded and never remediated locally."""
    value = (environ if environ is not None else os.environ).get("AUTOREMEDY_SILENCED", "")
    return bool(own.silenced) or value.strip().lower() in ("1", "true", "yes", "on")


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE + "\n\n" + (__doc__ or "").split("\n\n", 2)[2])
        return 0 if argv else EXIT_BAD_INPUT
    from autoremedy.contract.checkrun import run
    from autoremedy.lazyconfig import Deferred
    from autoremedy.pipeline.event import MalformedEvent, from_check
    from autoremedy.contract.render import render
    from autoremedy.contract.result import Status
    from autoremedy.pipeline.route import NODE
    cls, rest = argv[0], argv[1:]
    try:
        own, check_argv = parser().parse_known_args(rest)
    except UsageError as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    setup = Setup(own.config)
    if setup.error:
        return fail(f"configuration error: {setup.error}", EXIT_CONFIG)
    refusal = _not_allowlisted(setup.config, cls, own.target)
    if refusal:
        return fail(f"hook: {refusal} (nothing was run)", EXIT_BAD_INPUT)
    if own.config:   # part of the incident key, as it always was
        check_argv = check_argv + ["--config", own.config]
    # The check probes under the configuration loaded above; Deferred keeps what
    # "a file was named" means to the checks that ask (checks/_mysql_server.py).
    result, args = run(cls, check_argv, Deferred(own.config, loaded=setup.config))
    rendered, _ = render(result, "nagios")
    print(rendered)
    if args is None:                 # unknown class or bad check option
        return fail(f"hook: {result.summary}", EXIT_BAD_INPUT)
    config = setup.config
    check_name = own.check_name or cls
    key = _incident_key(cls, check_name, own.target, check_argv)
    try:
        incident, was_open = track(config.state_dir, key, result.status)
    except OSError as exc:
        # No incident memory (state directory unwritable, full, read-only): the
        # event still goes out — a failure now, or an OK that may close one.
        print(f"autoremedy: hook: incident state not kept in {config.state_dir} "
              f"({exc.strerror or exc}): forwarding without it")
        incident, was_open = {"start": None}, True
    if result.status is Status.OK and not was_open:
        print(f"autoremedy: {check_name} OK on {config.hostname}: nothing to do")
        return 0
    # The label names the Sensu checks and Zabbix triggers use (packaging/).
    labels = {"autoremedy_class": cls}
    if own.target:
        labels["autoremedy_target"] = own.target
    try:
        event = from_check(result, check_name, config.hostname, rendered,
                           started=incident["start"], occurrences=incident.get("occurrences"),
                           labels=labels, silenced=_silenced(own))
    except MalformedEvent as exc:          # e.g. an unusable --check-name
        return fail(f"hook: {exc}", EXIT_BAD_INPUT)
    raw = rendered.encode("utf-8", "replace")
    decision, code = run_dispatch(setup, event, NODE, raw, SOURCE, dry_run=own.dry_run,
                                  cls=cls if own.target else None, target=own.target)
    if decision is not None and decision.outcome is not None \
            and decision.outcome.status == "remediated":
        close(config.state_dir, key)   # verified OK: the next failure is a new incident
    return code


def _not_allowlisted(config, cls, target):
    """Why ``--target`` may not be used, or None. Decided before the check runs:
    through the sudo gate the check runs as root with options of the caller's
    choosing, so a class or target outside root's allowlist must not get as
    far as a probe."""
    if target is None:
        return None
    from autoremedy.contract.registry import available, load
    from autoremedy.contract.runtime import UsageError
    if cls not in available("remediations"):
        try:
            load("remediations", cls)           # a plugin's class (entry point)
        except UsageError:
            return f"no remediation class {cls!r}"
    from autoremedy.config import ConfigError
    from autoremedy.contract.remediation import Remediation
    try:
        remediation = load("remediations", cls).REMEDIATION(config)
        if remediation.listed(target):
            return None
    except ConfigError as exc:
        return f"configuration error: {exc}"
    if type(remediation).allowlist is Remediation.allowlist:
        return f"target {target!r} is not in remediations.{cls}.targets"
    return f"target {target!r} is not an allowlisted target of {cls}"


def _incident_key(cls, check_name, target, check_argv):
    text = "\0".join([cls, check_name, target or ""] + list(check_argv))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def _path(state_dir):
    return os.path.join(state_dir, "hook", "incidents.json")


def track(state_dir, key, status, now=None):
    """Record this run; return (incident, was_open) (autoremedy.pipeline.incidents)."""
    from autoremedy.pipeline import incidents
    return incidents.track(_path(state_dir), key, status, now, INCIDENT_TTL)


def close(state_dir, key):
    from autoremedy.pipeline import incidents
    incidents.close(_path(state_dir), key)
