"""``autoremedy``: one command, sub-commands that import only what they need.

    autoremedy check <class> [options]          checks/<class>.py
    autoremedy remediate <class> [--dry-run] TARGET
    autoremedy handle sensu|zabbix|hook ...     handlers/<kind>.py
    autoremedy replay | status | collect | config

Which classes exist, and how a name becomes a module, is autoremedy/contract/registry.py
(the names are checked before anything is imported).
"""
import os
import sys

# A usage error exits EXIT_USAGE, UNKNOWN (3) to a monitor: autoremedy/contract/exitcodes.py.
from autoremedy.contract.exitcodes import EXIT_BAD_INPUT, EXIT_CONFIG, EXIT_ESCALATED, EXIT_USAGE
from autoremedy.contract.registry import available, load
from autoremedy.contract.runtime import ArgumentParser, UsageError, describe, fail
from autoremedy.contract.result import Status

USAGE = """usage: autoremedy <command> [args]

commands:
  check <class> [options]        run a check (process, disk, rabbitmq-queues, ...)
  remediate <class> [--dry-run] TARGET
                                 run a guarded remediation on an allowlisted target
  handle sensu|zabbix|hook ...   forward an event to StackStorm, fall back locally
  replay                         deliver the spool to StackStorm
  status                         spool, breaker and recent remediations
  collect --at TIME              incident bundle with a relationship graph
  config check                   validate the configuration file
  zabbix-setup                   create the Zabbix template, media types and action (API)

'autoremedy check --list' lists the check classes; '<command> --help' shows options.
A command line that cannot be used exits 3 (UNKNOWN to a monitor, never OK).
"""

def _usage(text, asked):
    """Usage on stdout: exit 0 when it was asked for (--help), 3 when the command
    line was simply incomplete."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0 if asked else EXIT_USAGE


def classes_help():
    """The failure classes, one line each, from their manifests (parsed, not imported)."""
    from autoremedy.contract.registry import manifests
    rows = [(name, m.get("summary", "")) for name, m in manifests().items() if m.get("failure_class", True)]
    width = max((len(name) for name, _ in rows), default=0)
    return "\nfailure classes:\n" + "".join(f"  {name:<{width}}  {summary}\n" for name, summary in rows)


def _asked(argv):
    return bool(argv) and argv[0] in ("-h", "--help", "help")


# --- checks --------------------------------------------------------------------

def check_parser(module, cls_name):
    """The check's command line (autoremedy/contract/checkrun.py declares the common options)."""
    from autoremedy.contract.checkrun import parser
    return parser(module, cls_name)


def run_check(cls_name, argv, config=None):
    """Run check ``cls_name`` with ``argv`` in this process; return (Result, args)
    (autoremedy/contract/checkrun.py: the seam; ``config`` default: argv's ``--config``)."""
    from autoremedy.contract.checkrun import run
    return run(cls_name, argv, config)


def cmd_check(argv):
    if not argv or argv[0] in ("-h", "--help"):
        return _usage("usage: autoremedy check <class> [options]\nclasses: "
                      + ", ".join(available("checks")), _asked(argv))
    if argv[0] == "--list":
        print("\n".join(available("checks")))
        return 0
    cls_name, rest = argv[0], argv[1:]
    if "--discover" in rest:
        return _discover(cls_name, rest)
    result, args = run_check(cls_name, rest)
    from autoremedy.contract.render import render
    fmt = getattr(args, "format", "nagios") if args else _peek_format(rest)
    field = getattr(args, "field", None) if args else None
    text, code = render(result, fmt, field)
    sys.stdout.write(text + "\n")
    return code


def _peek_format(argv):
    """The --format asked for, even when the rest of the command line was bad, so a
    usage error still reaches Zabbix as a value rather than a Nagios line."""
    for i, arg in enumerate(argv):
        if arg == "--format" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--format="):
            return arg.split("=", 1)[1]
    return "nagios"


def _discover(cls_name, argv):
    import json
    from autoremedy.contract import checkrun
    from autoremedy.lazyconfig import Deferred
    try:
        module = load("checks", cls_name)
        args = checkrun.options(cls_name, argv, module)
        if not hasattr(module, "discover"):
            raise UsageError(f"check {cls_name} has no discovery")
        rows = checkrun.discover(module, Deferred(args.config), args)
    except Exception as exc:  # Zabbix shows the value; keep it one clear line
        print(f"ZBX_NOTSUPPORTED: {describe(exc)}")
        return 0
    print(json.dumps(rows, sort_keys=True))
    return 0


# --- remediations -------------------------------------------------------------

def cmd_remediate(argv):
    if not argv or argv[0] in ("-h", "--help"):
        return _usage("usage: autoremedy remediate <class> [--dry-run] [--config FILE] TARGET\n"
                      "classes: " + ", ".join(available("remediations")), _asked(argv))
    from autoremedy.config import Config, ConfigError
    from autoremedy.contract.remediation import Trigger, perform
    cls_name = argv[0]
    try:
        module = load("remediations", cls_name)
        parser = ArgumentParser(prog=f"autoremedy remediate {cls_name}")
        parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
        parser.add_argument("--config", metavar="FILE")
        parser.add_argument("--event-id", help="the event this run answers (StackStorm passes it)")
        parser.add_argument("--json", action="store_true", help="print the outcome as JSON")
        module.REMEDIATION.add_arguments(parser)
        args = parser.parse_args(argv[1:])
        config = Config.load(args.config)
        from autoremedy.audit import audit_for
        remediation = module.REMEDIATION(config, audit=audit_for(config))
        target = remediation.target_from_args(args)
    except UsageError as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    except ConfigError as exc:
        return fail(str(exc), EXIT_CONFIG)
    trigger = Trigger(source="cli", event_id=args.event_id)
    outcome = perform(remediation, target, trigger, dry_run=args.dry_run)
    print_outcome(outcome, args.json)
    return EXIT_ESCALATED if outcome.escalate else 0


def print_outcome(outcome, as_json=False):
    if as_json:
        import json
        print(json.dumps(outcome.to_dict(), sort_keys=True, default=str))
        return
    print(outcome.line())
    for step in outcome.plan:
        prefix = "would" if outcome.status == "dry-run" else "plan"
        argv = f"  [{' '.join(step.argv)}]" if step.argv else ""
        print(f"  {prefix}: {step.description}{argv}")
        if outcome.status == "dry-run":
            for detail in step.details:
                print(f"      {detail}")
    for note in outcome.notes:
        print(f"  done: {note}")
    if outcome.verify:
        print(f"  verify: {outcome.verify['status']}: {outcome.verify['summary']}")
    if outcome.evidence is not None:
        shown = outcome.evidence.to_dict()
        for reach in shown["reach"]:
            names = ", ".join(reach["names"]) or "nothing"
            print(f"  reach: {reach['kind']}: {names}"
                  + (f" (of {reach['watched']} watched: {reach['how']})" if reach["how"] else ""))
        for inv in shown["invariants"]:
            after = f" -> {inv['after']}" if "after" in inv else ""
            print(f"  invariant: {inv['name']} [{inv['rule']}; {inv['how']}]: {inv['before']}{after}")
        for problem in outcome.harm:
            print(f"  HARM: {problem}")


# --- the rest -------------------------------------------------------------------

def cmd_module(module_path):
    def run(argv):
        import importlib
        return importlib.import_module(module_path).main(argv)
    return run


def cmd_handle(argv):
    if not argv or argv[0] in ("-h", "--help"):
        return _usage("usage: autoremedy handle sensu|zabbix|hook ...", _asked(argv))
    try:
        module = load("handlers", argv[0])
    except UsageError as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    return module.main(argv[1:])


COMMANDS = {
    "check": cmd_check,
    "remediate": cmd_remediate,
    "handle": cmd_handle,
    "replay": cmd_module("autoremedy.handlers.replay"),
    "status": cmd_module("autoremedy.status"),
    "collect": cmd_module("autoremedy.collection.collect"),
    "config": cmd_module("autoremedy.configcheck"),
    "zabbix-setup": cmd_module("autoremedy.zabbix_setup"),
}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        return _usage(USAGE + classes_help(), _asked(argv))
    if argv[0] == "--version":
        from autoremedy import __version__
        print(__version__)
        return 0
    command = COMMANDS.get(argv[0])
    if command is None:
        return fail(f"unknown command {argv[0]!r}; see 'autoremedy --help'", EXIT_USAGE)
    try:
        return command(argv[1:])
    except KeyboardInterrupt:
        return fail("interrupted", EXIT_ESCALATED)
    except BrokenPipeError:
        return EXIT_ESCALATED
    except Exception as exc:  # last line of defence: one line, never a traceback
        if os.environ.get("AUTOREMEDY_DEBUG"):
            raise
        code = Status.UNKNOWN if argv[0] == "check" else EXIT_ESCALATED
        return fail(f"internal error: {describe(exc)}", code)


if __name__ == "__main__":
    sys.exit(main())
