"""Every node check configured for this host, in one process, each result reported on its own.

    $ autoremedy check batch
    BATCH CRITICAL: 1 of 4 checks failing: nova-compute CRITICAL | 'disk'=0;;;0;3 'nova-compute'=2;;;0;3 ...
    DISK OK: 1 mount(s) OK, fullest / 23.65% used
    NOVA-COMPUTE CRITICAL: 0 processes matching unit nova-compute (crit <1)
    MARIADB OK: 1 process matching cmdline mariadbd
    SPOOL OK: spool empty; no dead letters
    $ autoremedy check batch --format zabbix     # the JSON master item of the Zabbix template
    {"data":{"checks":{"disk":{"class":"disk","status":0,...},"nova-compute":{...,"status":2,...}}},...}
    $ autoremedy check batch --sensu             # each result POSTed to the agent's events API
    BATCH OK: posted 4 result(s) to http://127.0.0.1:3031/events (1 not OK: nova-compute CRITICAL)

On a compute node sold to tenants the monitor's CPU is the operator's cost: one
interpreter start, one set of imports and one configuration load serve every
check, where separate checks pay each of them N times (bench/bench_packaging.py).

Configuration (``checks.batch``; every key optional)::

    checks:
      batch:
        checks:                                   # default: see below
          - {name: disk, class: disk, args: [-w, "85", -c, "95"]}
          - {name: nova-compute, class: process, args: [--watch, nova-compute]}
          - {name: cinder-tmp, class: disk, args: [-p, /var/lib/cinder/tmp]}
          - {name: db, class: mysql-replication, args: [--server, db2], target: db2}
        agent_api: http://127.0.0.1:3031/events   # Sensu agent events API (--sensu)
        handlers: [autoremedy]                    # handlers of the posted events
        ttl: 0                                    # seconds; >0 lets Sensu alert when results stop

``target`` (optional) is the key of ``remediations.<class>.targets`` a failure of
the entry is remediated on: the Zabbix batch discovery gives it to the trigger
tags as ``{#AR.TARGET}``. Without it the target is what the arguments name when
they name exactly one (``--watch X`` of a process check, one ``-p X`` of a disk
check, ``--server X``); an entry naming none (a disk check of every mount) has no
target, and its problems carry none (never a guessed one).

Without ``checks`` the batch runs disk (every real filesystem), one process check
per ``checks.process.watch`` entry, and the spool check where that class exists.
"""
import re
import time

from autoremedy.contract.result import CheckError, Metric, Result, Status

MANIFEST = {
    "name": "batch",
    "summary": "every node check of checks.batch in one process (not a failure class)",
    "failure_class": False,
    "check": "autoremedy.checks.batch:probe",
    "remediation": None,
    "thresholds": (None, None),
    "timeout": 20.0,
}
NAME = MANIFEST["name"]
AGENT_API = "http://127.0.0.1:3031/events"
# Sensu Go object names: letters, digits, '_', '.', '-' (the same rule keeps them
# usable as Zabbix LLD values and JSONPath keys).
_ENTRY_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,63}$")
# A remediation target: an allowlist key (a name, a mount point, a host).
_TARGET = re.compile(r"^[^\s\x00-\x1f\x7f]{1,255}$")
# The budget one result needs after its check: render and (with --sensu) one POST.
_RESERVE = 0.3


def add_arguments(parser):
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="run only this configured check (repeatable)")
    parser.add_argument("--sensu", action="store_true",
                        help="POST each result to the Sensu agent's events API as its own event")
    parser.add_argument("--agent-api", metavar="URL",
                        help=f"events API for --sensu (default: checks.batch.agent_api or {AGENT_API})")


# --- what to run -----------------------------------------------------------------

def settings(config):
    """(the loaded configuration, its checks.batch section). The batch loads it
    here, once, and every check it runs probes under that same one."""
    from autoremedy.config import ConfigError
    from autoremedy.lazyconfig import loaded
    try:
        config = loaded(config)
    except ConfigError as exc:
        raise CheckError(str(exc)) from None
    section = config.get("checks.batch") or {}
    if not isinstance(section, dict):
        raise CheckError("checks.batch: expected a mapping")
    return config, section


def is_check_class(cls):
    """Whether ``cls`` names a check module here. find_spec, not registry.available():
    listing the package imports pkgutil and inspect, a tenth of the batch's start-up."""
    import importlib.util
    if not isinstance(cls, str) or cls == NAME or not re.match(r"^[a-z][a-z0-9-]{0,62}$", cls):
        return False
    return importlib.util.find_spec(f"autoremedy.checks.{cls.replace('-', '_')}") is not None


def entries(config, section):
    """[(name, class, argv)] from checks.batch.checks, or the defaults for this host."""
    raw = section.get("checks")
    if raw is None:
        return default_entries(config)
    if not isinstance(raw, list) or not raw:
        raise CheckError("checks.batch.checks: expected a non-empty list")
    out, seen = [], set()
    for i, item in enumerate(raw):
        where = f"checks.batch.checks[{i}]"
        if not isinstance(item, dict):
            raise CheckError(f"{where}: expected a mapping with name, class, args")
        name, cls, args = item.get("name"), item.get("class"), item.get("args", [])
        if not isinstance(name, str) or not _ENTRY_NAME.match(name):
            raise CheckError(f"{where}.name: {name!r} is not a name of letters, digits, '_', '.', '-'")
        if name in seen:
            raise CheckError(f"{where}.name: {name!r} is used twice")
        if not is_check_class(cls):
            from autoremedy.contract.registry import available
            known = sorted(set(available("checks")) - {NAME})
            raise CheckError(f"{where}.class: {cls!r} is not a check class here (known: {', '.join(known)})")
        if not isinstance(args, list) or not all(isinstance(a, (str, int, float)) for a in args):
            raise CheckError(f"{where}.args: expected a list of strings")
        target = item.get("target")
        if target is not None and not (isinstance(target, str) and _TARGET.match(target)):
            raise CheckError(f"{where}.target: {target!r} is not a target name (no spaces or control characters)")
        seen.add(name)
        out.append((name, cls, [str(a) for a in args]))
    return out


def default_entries(config):
    out = [("disk", "disk", [])]
    for entry in config.get("checks.process.watch") or []:
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str) and _ENTRY_NAME.match(name) and name not in ("disk", "spool"):
            out.append((name, "process", ["--watch", name]))
    if is_check_class("spool"):
        out.append(("spool", "spool", []))
    return out


def selected(all_entries, only):
    if not only:
        return all_entries
    names = {name for name, _, _ in all_entries}
    missing = [n for n in only if n not in names]
    if missing:
        raise CheckError(f"--only {', '.join(missing)}: not a configured check "
                         f"(configured: {', '.join(sorted(names))})")
    return [e for e in all_entries if e[0] in only]


# --- run and report ------------------------------------------------------------------

def run_all(todo, budget, config, clock=time.monotonic):
    """[(name, class, Result)]; each check gets what is left of the budget and
    probes under the batch's configuration (autoremedy/contract/checkrun.py)."""
    from autoremedy.contract.checkrun import run
    deadline = clock() + budget
    results, shared = [], {}
    for name, cls, argv in todo:
        left = deadline - clock() - _RESERVE
        if left <= 0:
            results.append((name, cls, Result.unknown(name, f"not run: the batch's {budget:g}s budget was spent")))
            continue
        result, _ = run(cls, argv + ["--timeout", f"{_sub_timeout(argv, left):.3f}"], config,
                        **_shared(cls, shared))
        result.name = name
        results.append((name, cls, result))
    return results


def _shared(cls, cache):
    """What the checks of one class share within the batch: the process checks
    one reading of the process table (checks/process.py ProcTable)."""
    if cls != "process":
        return {}
    if cls not in cache:
        from autoremedy.checks.process import ProcTable
        cache[cls] = {"table": ProcTable()}
    return cache[cls]


def _sub_timeout(argv, left):
    """The entry's own --timeout if it set a shorter one (argparse keeps the last)."""
    own = None
    for i, arg in enumerate(argv):
        value = argv[i + 1] if arg == "--timeout" and i + 1 < len(argv) else (
            arg.split("=", 1)[1] if arg.startswith("--timeout=") else None)
        if value is not None:
            try:
                own = float(value)
            except ValueError:
                pass
    return min(own, left) if own else left


def summarise(results):
    bad = [(n, r) for n, _, r in results if r.status is not Status.OK]
    worst = Status.OK
    for _, _, result in results:
        worst = worst.worse(result.status)
    order = {Status.CRITICAL: 0, Status.UNKNOWN: 1, Status.WARNING: 2}
    bad.sort(key=lambda item: order[item[1].status])
    if bad:
        text = ", ".join(f"{n} {r.status.name}" for n, r in bad)
        summary = f"{len(bad)} of {len(results)} checks failing: {text}"
    else:
        summary = f"{len(results)} checks OK"
    # One metric per check: its status, so Nagios perfdata graphs a state history.
    metrics = [Metric(n, int(r.status), "", None, None, 0, 3) for n, _, r in results]
    details = [status_line(r) for _, _, r in results]
    data = {"checks": {n: dict(r.to_dict(), **{"class": c}) for n, c, r in results}}
    return Result(NAME, summary, status=worst, metrics=metrics, details=details, data=data)


def probe(config, args, post=None):
    """The seam (autoremedy/contract/checkrun.py)."""
    config, section = settings(config)
    todo = selected(entries(config, section), args.only)
    results = run_all(todo, args.timeout - (1.0 if args.sensu else 0.2), config)
    summary = summarise(results)
    if not args.sensu:
        return summary
    url = args.agent_api or section.get("agent_api") or AGENT_API
    handlers = section.get("handlers", ["autoremedy"])
    ttl = section.get("ttl", 0)
    targets = entry_targets(section, todo)
    events = [(name, sensu_event(name, cls, result, handlers, ttl, targets.get(name)))
              for name, cls, result in results]
    failures = (post or post_events)(url, events, timeout=2.0)
    return _posted(summary, results, url, failures)


def _posted(summary, results, url, failures):
    """The batch's own Sensu result: OK when the agent took every event. The
    checks' states travel in their own events, so they must not alert twice."""
    posted = len(results) - len(failures)
    bad = [f"{n} {r.status.name}" for n, _, r in results if r.status is not Status.OK]
    text = f"posted {posted} result(s) to {url}"
    if bad:
        text += f" ({len(bad)} not OK: {', '.join(bad)})"
    if failures:
        # The agent did not take them: print every result so nothing is lost.
        reasons = "; ".join(f"{n}: {why}" for n, why in failures[:3])
        return Result(NAME, f"{len(failures)} of {len(results)} result(s) not posted to {url}: "
                            f"{reasons}", status=Status.UNKNOWN, details=summary.details,
                      data=summary.data)
    return Result(NAME, text, status=Status.OK, details=summary.details, data=summary.data)


def status_line(result):
    """A result's Nagios status line without perfdata (the batch's long output)."""
    from autoremedy.contract.render import nagios
    return nagios(result)[0].split("\n")[0].split(" | ")[0]


# --- Sensu: each result is its own event --------------------------------------------

def sensu_event(name, cls, result, handlers, ttl, target=None):
    """The body of ``POST /events`` on the agent API (Sensu Go agent reference, "Events API": https://docs.sensu.io/sensu-go/latest/observability-pipeline/observe-schedule/agent/#events-api): the
    agent adds its entity, so the event is the check part only."""
    from autoremedy.contract.render import nagios
    labels = {"autoremedy_class": cls}
    if target:
        labels["autoremedy_target"] = target
    check = {
        "metadata": {"name": name, "labels": labels},
        "status": int(result.status),
        "output": nagios(result)[0] + "\n",
        "output_metric_format": "nagios_perfdata",
        "handlers": list(handlers),
    }
    if ttl:
        check["ttl"] = int(ttl)
    return {"check": check}


def post_events(url, events, timeout=2.0):
    """POST each event over one keep-alive connection; [(name, reason)] of those
    the agent did not accept (anything but 2xx, or no connection at all). An agent
    that refuses or does not answer fails the rest at once: N events must not
    wait N timeouts inside a check that has a time budget."""
    import http.client
    import json
    import socket
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [(name, f"bad agent API URL {url!r}") for name, _ in events]
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname, parts.port, timeout=timeout)
    failures = []
    try:
        for i, (name, event) in enumerate(events):
            try:
                conn.request("POST", parts.path or "/events", body=json.dumps(event),
                             headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                text = response.read(300).decode("utf-8", "replace").strip()
            except (ConnectionRefusedError, socket.timeout) as exc:
                reason = f"{type(exc).__name__}: {exc}"
                failures += [(n, reason) for n, _ in events[i:]]
                break
            except (OSError, http.client.HTTPException) as exc:
                conn.close()  # a broken keep-alive connection: the next request reconnects
                failures.append((name, f"{type(exc).__name__}: {exc}"))
                continue
            if not 200 <= response.status < 300:
                failures.append((name, f"HTTP {response.status} {text}"[:200]))
    finally:
        conn.close()
    return failures


def target_options(cls):
    """The options that name a check's one target (the remediation's allowlist key):
    its MANIFEST's "target_options". The check's module is loaded already when
    the batch ran it; discovery loads it here."""
    from autoremedy.contract.registry import load
    from autoremedy.contract.runtime import UsageError
    try:
        manifest = getattr(load("checks", cls), "MANIFEST", None) or {}
    except UsageError:
        return ()
    return tuple(manifest.get("target_options", ()))


def target_of(cls, argv, explicit=None):
    """The remediation target of one entry: its ``target``, else the one value the
    class's target option has in its arguments; "" when there is none or several
    (a disk check of every mount): never a guess."""
    if explicit:
        return explicit
    options = target_options(cls)
    values = []
    for i, arg in enumerate(argv):
        for option in options:
            if arg == option and i + 1 < len(argv):
                values.append(argv[i + 1])
            elif option.startswith("--") and arg.startswith(option + "="):
                values.append(arg.split("=", 1)[1])
    return values[0] if len(values) == 1 and _TARGET.match(values[0]) else ""


def discover(config, args):
    """Zabbix LLD: one row per check of the batch ({#AR.CHECK}, {#AR.CLASS} and
    {#AR.TARGET}, "" when the entry names no single target: the template then
    leaves the problem's autoremedy_target tag out)."""
    config, section = settings(config)
    todo = selected(entries(config, section), args.only)
    targets = entry_targets(section, todo)
    return [{"{#AR.CHECK}": name, "{#AR.CLASS}": cls, "{#AR.TARGET}": targets[name]} for name, cls, _ in todo]


def entry_targets(section, todo):
    """{entry name: its target, "" when none} for the entries to run."""
    raw = section.get("checks")
    explicit = {item.get("name"): item.get("target") for item in raw if isinstance(item, dict)} \
        if isinstance(raw, list) else {}
    return {name: target_of(cls, argv, explicit.get(name)) for name, cls, argv in todo}
