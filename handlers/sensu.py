"""``autoremedy handle sensu``: Sensu Go or Sensu Classic pipe handler.

    $ autoremedy handle sensu < event.json
    autoremedy: sensu-go web-01/proc-nova-compute CRITICAL (id 3c3e68f6-...): delivered to StackStorm (HTTP 202, request 9f..., 8 ms)

The event JSON arrives on stdin (reference/sensu.md §1, §2); the flavour is told
apart by its shape (``entity`` = Go, ``client`` = Classic). Sensu handlers run on
the backend, so local fallback here is limited to API-scoped classes (and
node-scoped ones only when the event is about this very host); node-scoped
remediation happens through ``autoremedy handle hook`` on the node.

sensu-plugin 0.8.0 is deliberately not on this path: importing it costs the
requests import on every event, its handler replaces ``sys.exit`` process-wide,
exits 2 (CRITICAL) on its own errors and crashes on Sensu Go events
(reference/sensu.md §8). The tests use its Classic reader as an oracle instead.

Options: ``--config FILE``, ``--dry-run`` (plan local remediations, change nothing).
Exit: 0 delivered or handled locally, 1 escalation, 2 malformed event (dead-lettered),
3 configuration error. The event is in the spool whenever it was not delivered.
"""
from autoremedy.runtime import ArgumentParser, UsageError, fail

from autoremedy.handlers._common import (EXIT_BAD_INPUT, Setup, config_failure, read_input,
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
    from autoremedy.event import MalformedEvent, decode_json, from_sensu
    from autoremedy.route import BACKEND
    try:
        args = parser().parse_args(argv)
    except UsageError as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    setup = Setup(args.config)
    raw, total = read_input(stdin)
    try:
        if total > len(raw):
            raise MalformedEvent(f"input is {total} bytes, larger than the limit of "
                                 f"{setup.max_event_size} (spool.max_event_size)")
        event = from_sensu(decode_json(raw, setup.max_event_size, "Sensu event"))
    except MalformedEvent as exc:
        return reject(setup, raw, str(exc), SOURCE, total)
    if setup.error:
        return config_failure(setup, event)
    _, code = run_dispatch(setup, event, BACKEND, raw, SOURCE, dry_run=args.dry_run)
    return code
