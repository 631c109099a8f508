"""``autoremedy handle zabbix``: Zabbix alert-script media type (and webhook parameters).

    $ autoremedy handle zabbix ops@example.com "PROBLEM: nova-compute down" "$MESSAGE"

Alert script: the media type's parameters are ``{ALERT.SENDTO}``, ``{ALERT.SUBJECT}``,
``{ALERT.MESSAGE}`` (one per line in ``exec_params``, reference/zabbix.md §3-§4), and the
action's message is a JSON body built from macros (the template is in
docs/handlers.md). Zabbix substitutes macros without JSON escaping, so a body made
invalid by a quote in a trigger name is read line by line; ``key=value`` pairs are
accepted too. Recovery messages (``"event_value": "0"`` / ``RESOLVED``) are forwarded.

Webhook style: ``autoremedy handle zabbix --webhook`` reads the webhook media
type's parameter object (``{"EventID": ..., "Subject": ..., "Message": ...}``) as
JSON on stdin.

Options come first (a subject may start with '-'): ``--config FILE``,
``--dry-run``, ``--webhook``. Exit codes as for ``handle sensu``: Zabbix marks the
alert failed on non-zero and retries; a retry of the same event is the same spool
entry and, by its id, never a second remediation.
"""
import os

from autoremedy.runtime import UsageError, fail

from autoremedy.handlers._common import (EXIT_BAD_INPUT, Setup, config_failure, read_input,
                                         reject, run_dispatch, split_options)

SOURCE = "zabbix"
USAGE = ("usage: autoremedy handle zabbix [--config FILE] [--dry-run] SENDTO SUBJECT MESSAGE\n"
         "       autoremedy handle zabbix [--config FILE] [--dry-run] --webhook < params.json")


def main(argv, stdin=None):
    from autoremedy.event import MalformedEvent, decode_json, from_zabbix, from_zabbix_params
    from autoremedy.route import BACKEND
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    try:
        options, rest = split_options(argv, flags=("--dry-run", "--webhook"), valued=("--config",))
        if options.get("--webhook") and rest:
            raise UsageError("--webhook reads the parameters from stdin and takes no arguments")
        if not options.get("--webhook") and len(rest) != 3:
            raise UsageError(f"expected SENDTO SUBJECT MESSAGE, got {len(rest)} argument(s)")
    except UsageError as exc:
        return fail(f"{exc}\n{USAGE}", EXIT_BAD_INPUT)
    setup = Setup(options.get("--config"))
    if options.get("--webhook"):
        raw, total = read_input(stdin)
    else:
        # The exact bytes Zabbix passed, NUL-separated, for the dead letter.
        raw, total = b"\0".join(os.fsencode(a) for a in rest), None
    try:
        if options.get("--webhook"):
            if total > len(raw):
                raise MalformedEvent(f"input is {total} bytes, larger than the limit of "
                                     f"{setup.max_event_size} (spool.max_event_size)")
            event = from_zabbix_params(decode_json(raw, setup.max_event_size, "webhook parameters"))
        else:
            event = from_zabbix(*rest, max_size=setup.max_event_size)
    except MalformedEvent as exc:
        return reject(setup, raw, str(exc), SOURCE, total)
    if setup.error:
        return config_failure(setup, event)
    _, code = run_dispatch(setup, event, BACKEND, raw, SOURCE,
                           dry_run=bool(options.get("--dry-run")))
    return code
