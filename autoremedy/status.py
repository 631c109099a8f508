"""``autoremedy status``: what the robot has been doing on this host.

Spool depth and age, the StackStorm circuit breaker, and the recent
remediation decisions from the audit log.
"""
import os
import time

from autoremedy.runtime import ArgumentParser, UsageError, fail


def sections(config, limit):
    from autoremedy import audit
    out = {}
    for name, provider in PROVIDERS:
        try:
            out[name] = provider(config)
        except ImportError:
            continue
    out["recent"] = audit.tail(os.path.join(config.state_dir, "audit.log"), limit,
                               lambda e: e.get("what") == "remediation")
    return out


def _spool(config):
    from autoremedy.spool import Spool
    return Spool(config.state_dir).stats()


def _breaker(config):
    from autoremedy.breaker import Breaker
    return Breaker.for_config(config).describe()


PROVIDERS = [("spool", _spool), ("breaker", _breaker)]


def main(argv):
    from autoremedy.config import Config, ConfigError
    parser = ArgumentParser(prog="autoremedy status")
    parser.add_argument("--config", metavar="FILE")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("-n", "--limit", type=int, default=10, help="recent remediations to show")
    try:
        args = parser.parse_args(argv)
        config = Config.load(args.config)
    except (UsageError, ConfigError) as exc:
        return fail(str(exc), 3)
    report = sections(config, args.limit)
    if args.json:
        import json
        print(json.dumps(report, sort_keys=True, default=str))
        return 0
    print(f"state dir: {config.state_dir}")
    if "spool" in report:
        s = report["spool"]
        age = f", oldest {s['oldest_age']:.0f}s" if s.get("oldest_age") is not None else ""
        print(f"spool: {s['depth']} event(s) waiting{age}, {s.get('deadletter', 0)} dead-lettered")
    if "breaker" in report:
        print(f"stackstorm: {report['breaker']}")
    recent = report["recent"]
    print(f"recent remediations ({len(recent)}):" if recent else "recent remediations: none")
    for e in recent:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["ts"]))
        reason = f": {e['reason']}" if e.get("reason") else ""
        dry = " (dry-run)" if e.get("dry_run") else ""
        print(f"  {when} {e.get('cls')} {e.get('target')} -> {e.get('outcome')}{dry}{reason}")
    return 0
