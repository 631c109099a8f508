"""``autoremedy handle sensu``: Sensu Go or Sensu Classic pipe handler.

    $ autoremedy handle sensu < event.json
    autoremedy: sensu-go web-01/proc-nova-compute CRITICAL (id 3c3e68f6-...): delivered to StackStorm (HTTP 202, request 9f..., 8 ms)

The event JSON arrives on stdin (Sensu Go events reference; Sensu Core 1.8
events reference); the flavour is told apart by its shape (``entity`` = Go,
``client`` = Classic; autoremedy.pipeline.sources.sensu). Sensu handlers run on the
backend, so local fallback here is limited to API-scoped classes (and
node-scoped ones only when the event is about this very host); node-scoped
remediation happens through ``autoremedy handle hook`` on the node.

A Sensu Go event without ``id`` gets an id derived from its incident start;
when the event cannot tell that start (no ``last_ok`` and a history of nothing
but failures), the first failing time seen is kept in
``<state_dir>/sensu/incidents.json`` (autoremedy.pipeline.incidents) until the check is
OK again.

sensu-plugin 0.8.0 is deliberately not on this path: importing it costs the
requests import on every event, its handler replaces ``sys.exit`` process-wide,
exits 2 (CRITICAL) on its own errors and crashes on Sensu Go events with
``KeyError: 'id'``. The tests use its Classic reader as an oracle instead.

Options: ``--config FILE``, ``--dry-run`` (plan local remediations, change nothing).
Exit: 0 delivered or handled locally, 1 escalation, 2 malformed event or bad
command line (the input is kept as a dead letter either way), 3 configuration
error. The event is in the spool whenever it was not delivered.
"""
import hashlib
import os

from autoremedy.contract.runtime import ArgumentParser, UsageError

from autoremedy.handlers._common import (Setup, config_failure, parse_or_reject, read_input,
                                         reject, run_dispatch)

SOURCE = "sensu"


def parser():
    p = ArgumentParser(prog="autoremedy handle sensu",
                       description="Forward a Sensu Go / Classic event (stdin) to StackStorm; "
                                   "fall back to a guarded local remediation")
    p.add_argument("--config", metavar="FILE", help="configuration file")
    p.add_argument("--dry-run", action="store_true", help="plan local remediations, change nothing")
    return p


def main(argv, stdin=None):
    from autoremedy.pipeline.event import MalformedEvent, decode_json
    from autoremedy.pipeline.route import BACKEND
    from autoremedy.pipeline.sources.sensu import from_sensu
    try:
        args = parser().parse_args(argv)
    except UsageError as exc:
        # The event is on stdin all the same: keep it rather than lose it.
        setup = Setup(None)
        raw, total = read_input(stdin, setup.read_cap)
        return reject(setup, raw, f"bad command line ({exc}); the event on stdin was not handled",
                      SOURCE, total, argv=argv)
    setup = Setup(args.config)
    raw, total = read_input(stdin, setup.read_cap)

    def parse():
        if total > len(raw) or total > setup.max_event_size:
            raise MalformedEvent(f"input is {total} bytes, larger than the limit of "
                                 f"{setup.max_event_size} (spool.max_event_size)")
        return from_sensu(decode_json(raw, setup.max_event_size, "Sensu event"))
    event, code = parse_or_reject(setup, raw, SOURCE, parse, total)
    if event is None:
        return code
    if event.source == "sensu-go" and event.derived_id:
        _incident_start(setup.config.state_dir, event)
    if setup.error:
        return config_failure(setup, event)
    _, code = run_dispatch(setup, event, BACKEND, raw, SOURCE, dry_run=args.dry_run)
    return code


def _incident_start(state_dir, event):
    """An id derived from the incident start must not move while the incident
    lasts: the start each failing event tells is kept, and an event that cannot
    tell it (its last OK run slid out of the history, no last_ok) gets the kept
    one, or its own time when the incident is new here. An OK event closes the
    record. The state is advisory: if it cannot be written, the event goes on
    with what it has."""
    from autoremedy.pipeline import incidents
    from autoremedy.contract.result import Status
    key = hashlib.sha256("\0".join((event.namespace or "", event.host, event.check))
                         .encode("utf-8", "surrogatepass")).hexdigest()[:24]
    path = os.path.join(state_dir, "sensu", "incidents.json")
    try:
        if event.status is Status.OK:
            incidents.close(path, key)
        else:
            begun = incidents.start(path, key, event.started, event.timestamp or None)
            if event.started is None:
                event.restart(begun)
    except OSError:
        pass
