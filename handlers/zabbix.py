"""``autoremedy handle zabbix``: Zabbix alert-script media type (and webhook parameters).

    $ autoremedy handle zabbix -- ops@example.com "PROBLEM: nova-compute down" "$MESSAGE"

Alert script: the media type's parameters are ``{ALERT.SENDTO}``, ``{ALERT.SUBJECT}``,
``{ALERT.MESSAGE}`` (one per line in ``exec_params``), and the action's message is
a JSON body built from macros (the template is in docs/handlers.md). Zabbix
substitutes macros without JSON escaping, so a body made invalid by a quote in a
trigger name is read line by line; ``key=value`` pairs are accepted too. Recovery
messages (``"event_value": "0"`` / ``RESOLVED``) are forwarded.

Webhook style: ``autoremedy handle zabbix --webhook`` reads a webhook media
type's parameter object as JSON on stdin; the parameter names of Zabbix's own
media types are understood (autoremedy.pipeline.sources.zabbix).

Options come first (a subject may start with '-'); ``--`` ends them, and the
packaged alert script passes it, so a SENDTO such as ``--dry-run`` is an
argument, never an option: ``--config FILE``, ``--dry-run``, ``--webhook``. A
command line that is not SENDTO SUBJECT MESSAGE is dead-lettered with its argv
(exit 2): Zabbix shows the alert as failed, and nothing it passed is lost.
Exit status, designed for Zabbix (it marks an alert *sent* on 0, else *failed*
and retries it up to the media type's attempts). The last line on stdout says
what became of the event and why — ``delivered to StackStorm``, ``kept for
delivery`` (StackStorm not reached: the spool holds it for the next handler run
or ``replay``), ``remediated locally: ...``, ``escalated: ...``:

- 0 (sent): the event is in autoremedy's hands — delivered, or kept in the spool
  for delivery, whatever the local fallback did (its outcome travels with the
  event: StackStorm's workflow pages a human for an escalation);
- 1 (failed, retried): neither delivered nor kept (the spool could not be
  written): only Zabbix's retry can still bring it to StackStorm;
- 2: bad input, dead-lettered (the action's message is wrong);
- 3: configuration error (StackStorm refused the key, or the configuration
  cannot be read); the event is kept, the line says so.

A retry of the same event is the same spool entry: the local remediation is not
run again, and the retry gives the first run's answer (same status, same line).

Zabbix runs alert scripts as ``zabbix``: the local remediation runs as root
through the packaged sudo gate (``fallback.gate``, autoremedy.pipeline.route.through_gate;
docs/security.md), and sudo refusing is an escalation with sudo's reason. A run
whose event StackStorm accepted also delivers a few spooled events (the drain:
``spool.drain_max_events`` / ``drain_max_time``), so a node without the replay
timer is not left with its backlog.
"""
import os

from autoremedy.contract.runtime import UsageError

from autoremedy.handlers._common import (EXIT_BAD_INPUT, EXIT_CONFIG, EXIT_ESCALATED, Setup, config_failure, parse_or_reject,
                                         read_input, reject, run_dispatch, split_options)

SOURCE = "zabbix"
USAGE = ("usage: autoremedy handle zabbix [--config FILE] [--dry-run] [--] SENDTO SUBJECT MESSAGE\n"
         "       autoremedy handle zabbix [--config FILE] [--dry-run] --webhook < params.json")


def _argv_bytes(argv):
    """The exact bytes Zabbix passed, NUL-separated, for the dead letter
    (``xargs -0 -a X.raw autoremedy handle zabbix --`` re-feeds it)."""
    return b"\0".join(os.fsencode(a) for a in argv)


def main(argv, stdin=None):
    from autoremedy.pipeline.event import MalformedEvent, decode_json
    from autoremedy.pipeline.route import BACKEND
    from autoremedy.pipeline.sources.zabbix import from_zabbix, from_zabbix_params
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)              # nothing was passed: nothing to keep
        return 0 if argv else EXIT_BAD_INPUT
    options = {}
    try:
        options, rest = split_options(argv, flags=("--dry-run", "--webhook"), valued=("--config",))
        if options.get("--webhook") and rest:
            raise UsageError("--webhook reads the parameters from stdin and takes no arguments")
        if not options.get("--webhook") and len(rest) != 3:
            raise UsageError(f"expected SENDTO SUBJECT MESSAGE, got {len(rest)} argument(s)"
                             + (" (a SENDTO starting with '-' needs '--' before it)"
                                if any(a.startswith("-") for a in argv) else ""))
    except UsageError as exc:
        # What Zabbix passed is the alert: keep it, with the argv and the reason.
        setup = Setup(options.get("--config") if isinstance(options.get("--config"), str) else None)
        if options.get("--webhook"):
            raw, total = read_input(stdin, setup.read_cap)
        else:
            raw, total = _argv_bytes(argv), None
        return reject(setup, raw, f"bad command line: {exc}", SOURCE, total, argv=argv)
    setup = Setup(options.get("--config"))
    if options.get("--webhook"):
        raw, total = read_input(stdin, setup.read_cap)
    else:
        raw, total = _argv_bytes(rest), None

    def parse():
        if options.get("--webhook"):
            if total > len(raw) or total > setup.max_event_size:
                raise MalformedEvent(f"input is {total} bytes, larger than the limit of "
                                     f"{setup.max_event_size} (spool.max_event_size)")
            return from_zabbix_params(decode_json(raw, setup.max_event_size, "webhook parameters"))
        return from_zabbix(*rest, max_size=setup.max_event_size)
    event, code = parse_or_reject(setup, raw, SOURCE, parse, total)
    if event is None:
        return code
    if setup.error:
        return config_failure(setup, event)
    decision, code = run_dispatch(setup, event, BACKEND, raw, SOURCE,
                                  dry_run=bool(options.get("--dry-run")))
    return alert_status(decision, code)


def alert_status(decision, code):
    """The exit status Zabbix records for the alert (module docstring), after
    printing the verdict line its action log and the operator read."""
    import sys
    if decision is None:
        return code                      # an internal error: the raw alert is dead-lettered
    verdict = decision.verdict()
    print(f"autoremedy: zabbix alert: {verdict}", flush=True)
    if decision.config_error:
        print(f"autoremedy: zabbix alert: configuration error: {decision.config_error}",
              file=sys.stderr, flush=True)
        return EXIT_CONFIG
    if (decision.delivery is not None and decision.delivery.ok) or decision.kept:
        return 0
    return EXIT_ESCALATED
