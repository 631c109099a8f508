"""Spool depth and age: is StackStorm still hearing about events?

    $ autoremedy check spool
    SPOOL WARNING: 152 event(s) waiting (warn >100), oldest 20.5m (warn >15.0m); no dead letters | 'depth'=152;100;1000;0 'oldest_age'=1230s;900;3600;0 'deadletter'=0;0;;0
    breaker: open: StackStorm unreachable for 20.5m (...)

Events stay in the spool until StackStorm answers 2xx (``autoremedy replay``
delivers them); a growing or ageing spool means StackStorm is down, refuses the
events (4xx) or replay is not running. Dead letters are inputs no handler could
parse: someone should read them (``<state_dir>/deadletter/``) and delete them.

Thresholds: ``-w``/``-c`` on the depth (default ``spool.warning_depth`` /
``spool.critical_depth``: 100 / 1000), ``--age-warning``/``--age-critical`` on the
oldest event's age (default ``spool.warning_age`` / ``spool.critical_age``: 15m /
1h), ``--deadletter-warning N`` (default 0: any dead letter is a WARNING). The
state directory is ``$AUTOREMEDY_STATE_DIR`` or the configuration's ``state_dir``.
"""
from autoremedy.contract import units
from autoremedy.contract.result import CheckError, Metric, Result

MANIFEST = {
    "name": "spool",
    "summary": "events waiting for StackStorm: is it still hearing about them? (no remediation)",
    "check": "autoremedy.checks.spool:probe",
    "remediation": None,
    "scope": "node",
    "thresholds": (None, None),        # None: taken from the configuration's spool section
    "timeout": 10.0,
    "order": 60,
    "sensu": [
        {"name": "autoremedy-spool", "args": "", "subscriptions": ["autoremedy"], "hooks": []},
    ],
    "zabbix": {
        "items": [
            {"template": "autoremedy node", "key": "autoremedy.spool", "severity": "HIGH", "kind": "ZABBIX_PASSIVE",
             "description": "Events waiting in the spool for StackStorm"},
        ],
        "no_target": "no remediation: undelivered events are replayed (autoremedy replay), nothing is repaired",
        "userparameters": [
            ("autoremedy.spool", "/usr/bin/autoremedy check spool --format zabbix --timeout 2.5"),
        ],
    },
}
NAME = MANIFEST["name"]


def add_arguments(parser):
    parser.add_argument("--age-warning", type=units.duration, metavar="DURATION",
                        help="WARNING when the oldest event is older (default spool.warning_age)")
    parser.add_argument("--age-critical", type=units.duration, metavar="DURATION",
                        help="CRITICAL when the oldest event is older (default spool.critical_age)")
    parser.add_argument("--deadletter-warning", type=int, default=0, metavar="N",
                        help="WARNING when more than N inputs were dead-lettered (default 0)")


def probe(config, args):
    """The seam (autoremedy/contract/checkrun.py). No file: defaults and environment, no YAML import."""
    from autoremedy.config import ConfigError
    from autoremedy.lazyconfig import loaded
    from autoremedy.pipeline.spool import Spool
    try:
        config = loaded(config)
    except ConfigError as exc:
        raise CheckError(str(exc)) from None
    spool = config.get("spool")
    depth_warn = args.warning if args.warning is not None else f"{spool['warning_depth']}"
    depth_crit = args.critical if args.critical is not None else f"{spool['critical_depth']}"
    age_warn = args.age_warning if args.age_warning is not None else spool["warning_age"]
    age_crit = args.age_critical if args.age_critical is not None else spool["critical_age"]
    try:
        stats = Spool(config.state_dir).stats()
    except OSError as exc:      # unreadable, or something planted at spool/ (safefs)
        raise CheckError(f"cannot read the spool: {exc.strerror or exc}") from None
    depth = Metric("depth", stats["depth"], "", depth_warn, depth_crit, min=0)
    age = Metric("oldest_age", round(stats["oldest_age"] or 0), "s",
                 f"{age_warn:g}", f"{age_crit:g}", min=0)
    dead = Metric("deadletter", stats["deadletter"], "", f"{args.deadletter_warning}", min=0)
    parts = []
    if stats["depth"]:
        parts.append(f"{stats['depth']} event(s) waiting{_why(depth)}, oldest "
                     f"{units.human_duration(stats['oldest_age'] or 0)}{_why(age, units.human_duration)}")
    else:
        parts.append("spool empty")
    parts.append(f"{stats['deadletter']} dead letter(s) in {config.state_dir}/deadletter"
                 if stats["deadletter"] else "no dead letters")
    details = []
    try:
        from autoremedy.pipeline.breaker import Breaker
        details.append(f"breaker: {Breaker.for_config(config).describe()}")
    except OSError:
        pass
    return Result(NAME, "; ".join(parts), metrics=[depth, age, dead], details=details,
                  data=stats)


def _why(metric, fmt=None):
    bad = metric.violated()
    if bad is None:
        return ""
    word = "crit" if bad is metric.crit else "warn"
    limit = fmt(bad.end) if fmt else f"{bad.end:g}"
    return f" ({word} >{limit})"
