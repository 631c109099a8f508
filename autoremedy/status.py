"""``autoremedy status``: what the robot has been doing on this host.

Spool depth and age (and the oldest waiting events with what was done about
them), the StackStorm circuit breaker, the recent remediation decisions and the
recent event traffic (deliveries, replays, escalations, dead letters) from the
audit log.
"""
import os
import time

from autoremedy.contract.exitcodes import EXIT_CONFIG
from autoremedy.contract.runtime import ArgumentParser, UsageError, fail


def sections(config, limit):
    from autoremedy import audit
    out = {}
    for name, provider in PROVIDERS:
        try:
            out[name] = provider(config)
        except ImportError:
            continue
    log = os.path.join(config.state_dir, "audit.log")
    out["recent"] = audit.tail(log, limit, lambda e: e.get("what") == "remediation")
    out["events"] = audit.tail(log, limit, lambda e: e.get("what") in EVENT_RECORDS)
    return out


EVENT_RECORDS = ("forward", "replay", "escalation", "deadletter", "spool")


def _spool(config):
    from autoremedy.pipeline.spool import Spool
    return Spool(config.state_dir).stats()


def _waiting(config, limit=5):
    """The oldest spooled events and what happened to them so far."""
    from autoremedy.pipeline.spool import CorruptEntry, Spool
    spool, out = Spool(config.state_dir), []
    for name in spool.names()[:limit]:
        try:
            entry = spool.load(name)
        except CorruptEntry as exc:
            out.append({"name": name, "corrupt": str(exc)})
            continue
        if entry is None:
            continue
        event = entry.data["event"]
        out.append({"name": name, "id": entry.id, "source": event.get("source"),
                    "host": event.get("host"), "check": event.get("check"),
                    "state": event.get("state"), "spooled_at": entry.spooled_at,
                    "attempts": entry.attempts, "last_error": entry.data.get("last_error"),
                    "local": [f"{m['class']} {m['target']} {m['outcome']}" for m in entry.local],
                    "escalated": bool(entry.data.get("escalation"))})
    return out


def _breaker(config):
    from autoremedy.pipeline.breaker import Breaker
    return Breaker.for_config(config).describe()


PROVIDERS = [("spool", _spool), ("waiting", _waiting), ("breaker", _breaker)]


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
        return fail(str(exc), EXIT_CONFIG)
    try:
        report = sections(config, args.limit)
    except OSError as exc:      # unreadable, or something planted in it (safefs)
        return fail(f"status: cannot read {config.state_dir}: {exc.strerror or exc}", EXIT_CONFIG)
    if args.json:
        import json
        print(json.dumps(report, sort_keys=True, default=str))
        return 0
    print(f"state dir: {config.state_dir}")
    if "spool" in report:
        s = report["spool"]
        age = f", oldest {s['oldest_age']:.0f}s" if s.get("oldest_age") is not None else ""
        print(f"spool: {s['depth']} event(s) waiting{age}, {s.get('deadletter', 0)} dead-lettered")
    for w in report.get("waiting", []):
        if w.get("corrupt"):
            print(f"  {w['name']}: unreadable ({w['corrupt']})")
            continue
        when = time.strftime("%H:%M:%S", time.localtime(w["spooled_at"]))
        marks = "; ".join(w["local"]) or "no local action"
        esc = ", ESCALATED" if w["escalated"] else ""
        err = f", last error: {w['last_error']}" if w.get("last_error") else ""
        print(f"  {when} {w['source']} {w['host']}/{w['check']} {w['state']} (id {w['id']}): "
              f"{marks}{esc}, {w['attempts']} attempt(s){err}")
    if "breaker" in report:
        print(f"stackstorm: {report['breaker']}")
    recent = report["recent"]
    print(f"recent remediations ({len(recent)}):" if recent else "recent remediations: none")
    for e in recent:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["ts"]))
        reason = f": {e['reason']}" if e.get("reason") else ""
        dry = " (dry-run)" if e.get("dry_run") else ""
        print(f"  {when} {e.get('cls')} {e.get('target')} -> {e.get('outcome')}{dry}{reason}")
    events = report.get("events") or []
    print(f"recent events ({len(events)}):" if events else "recent events: none")
    for e in events:
        print("  " + _event_line(e))
    return 0


def _event_line(e):
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["ts"]))
    what = e.get("what")
    subject = f"{e.get('source', '')} {e.get('event_host', '')}/{e.get('check', '')}".strip()
    if what == "forward":
        tail = f"HTTP {e['code']}" if e.get("code") else e.get("reason", "")
        return f"{when} forward {subject} (id {e.get('event_id')}): {e.get('outcome')}: {tail}"
    if what == "replay":
        marks = " remediated locally" if e.get("remediated_locally") else ""
        tail = f"HTTP {e['code']}" if e.get("code") else e.get("reason", "")
        return f"{when} replay {subject} (id {e.get('event_id')}): {e.get('result')}{marks}: {tail}"
    if what == "escalation":
        return f"{when} ESCALATION {subject} (id {e.get('event_id')}): {e.get('reason')}"
    return f"{when} {what} {e.get('source', '')}: {e.get('result')}: {e.get('reason', '')}"
