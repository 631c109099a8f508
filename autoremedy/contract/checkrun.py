"""Run a check in this process: the one seam every caller of a check goes through.

A check module exposes ``probe(config, options) -> Result`` (and names it in its
MANIFEST: ``"check": "autoremedy.checks.<class>:probe"``). ``config`` is the
configuration the caller already holds: a ``Config``, or a ``lazyconfig.Deferred``
that reads the file on first use. ``options`` is the check's parsed command
line, thresholds already ``Range`` objects. Who calls it:

- ``autoremedy check <class>`` (cli.py), with a Deferred of ``--config``;
- ``autoremedy check batch``, with one Deferred shared by every check it runs;
- ``autoremedy handle hook``, with the configuration the hook loaded;
- a remediation's plan and verify steps, with the remediation's own configuration.

Each option is declared once, by the check's ``add_arguments`` plus the common
ones here; :func:`options` builds them from an argument list (validated, with
the check's defaults), so no caller mirrors a check's options by hand.

A check written before the seam (a third-party plugin; the canary fixture of
tests/packaging) has ``check(args)`` and reads its own configuration: it runs
unchanged, without the caller's configuration.
"""
from autoremedy.contract.registry import check_defaults, load
from autoremedy.contract.result import Result
from autoremedy.contract.runtime import ArgumentParser, UsageError, fixed_width_help, guarded_result


def parser(module, cls_name):
    """The check's command line: the common options, then the class's own."""
    parser = ArgumentParser(prog=f"autoremedy check {cls_name}",
                            description=(module.__doc__ or "").strip().split("\n")[0],
                            formatter_class=fixed_width_help)
    warning, critical, timeout = check_defaults(module)
    parser.add_argument("-w", "--warning", default=warning, metavar="RANGE",
                        help=f"warning threshold, Nagios range (default: {warning})")
    parser.add_argument("-c", "--critical", default=critical, metavar="RANGE",
                        help=f"critical threshold, Nagios range (default: {critical})")
    parser.add_argument("--format", choices=("nagios", "zabbix", "json"), default="nagios",
                        help="output for Sensu/Nagios (default), Zabbix or JSON")
    parser.add_argument("--field", metavar="NAME",
                        help="with --format zabbix: print one value (status, summary or a metric)")
    parser.add_argument("--timeout", type=float, default=timeout,
                        metavar="SECONDS", help="give up with UNKNOWN after this long")
    parser.add_argument("--config", metavar="FILE", help="configuration file")
    if hasattr(module, "discover"):
        parser.add_argument("--discover", action="store_true",
                            help="print Zabbix low-level discovery JSON and exit")
    module.add_arguments(parser)
    return parser


def options(cls_name, argv, module=None):
    """The parsed options of check ``cls_name`` (thresholds still text; UsageError
    for a bad class or option). For a remediation: the check's own defaults for
    everything its argument list leaves out."""
    module = module or load("checks", cls_name)
    return parser(module, cls_name).parse_args(list(argv))


def thresholds(options):
    """-w / -c as Range objects (a bad range is a RangeError: UNKNOWN)."""
    from autoremedy.contract.ranges import Range
    options.warning, options.critical = Range.parse(options.warning), Range.parse(options.critical)
    return options


def on_seam(module):
    """Whether the check module exposes ``probe(config, options)`` (its MANIFEST names it)."""
    return (getattr(module, "MANIFEST", None) or {}).get("check", "").endswith(":probe")


def seam(module):
    """``probe(config, options)`` of a check module; for a check without one,
    its ``check(args)`` (which reads its own configuration)."""
    if on_seam(module):
        return module.probe
    return lambda config, options: module.check(options)


def discover(module, config, parsed):
    """Zabbix LLD rows: ``discover(config, options)`` on the seam, else ``discover(args)``."""
    if on_seam(module):
        return module.discover(config, parsed)
    return module.discover(parsed)


def run(cls_name, argv, config=None, **extra):
    """Run check ``cls_name`` with ``argv`` in this process under ``config``
    (default: the ``--config`` of argv, read on first use); return (Result,
    options). Every failure (bad class, bad option, exception, timeout) is an
    UNKNOWN Result; options is None when the command line was bad. ``extra``:
    keywords for the probe (see call)."""
    try:
        module = load("checks", cls_name)
        name = getattr(module, "NAME", cls_name)
        parsed = options(cls_name, argv, module)
    except UsageError as exc:
        return Result.unknown(cls_name, str(exc)), None
    if config is None:
        from autoremedy.lazyconfig import Deferred
        config = Deferred(parsed.config)
    return call(module, config, parsed, name, **extra), parsed


def call(module, config, parsed, name=None, **extra):
    """The check's probe on parsed options, guarded: UNKNOWN on any failure or
    after the options' --timeout. ``extra``: keywords the probe takes besides
    the seam's two (a remediation's ``runner``, settings it validated already)."""
    name = name or getattr(module, "NAME", "check")
    probe = seam(module)
    return guarded_result(name, lambda: probe(config, thresholds(parsed), **extra), parsed.timeout)
