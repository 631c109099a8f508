"""``autoremedy collect``: an incident bundle for failures with no registered remediation.

    $ autoremedy collect --at "2026-11-25 03:12:45" --window 15m --check compute-node
    /var/lib/autoremedy/incidents/20261125T031245Z-cmp1-compute-node: 3 services on 1 host,
    41 error lines, 6 requests, 4 resources, 2 shared ids: medium

For the event's time it reads the related services' logs in a window around it
(autoremedy.collection.logwindow), extracts request ids and instance/port/volume UUIDs,
links the lines that share them across services (autoremedy.collection.loggraph) and
writes a bundle a human can open at 3 a.m.:

    summary.json   the event, the effort estimate, the links, what was read
    summary.txt    the same in plain words, the links and the first error lines
    graph.json     nodes (services, hosts, requests, resources) and edges with counts, first/last
    graph.dot      the graph for Graphviz; graph.svg and graph.png when ``dot`` is installed
    logs/<source>.log   the excerpts (at most ``max_lines`` per source)

Configuration (``collect:``; without ``sources`` the usual OpenStack and RabbitMQ log
paths are read)::

    collect:
      out_dir: /var/lib/autoremedy/incidents      # default <state_dir>/incidents
      window: 15m                                 # before and after the event
      max_lines: 20000                            # per source, in the excerpt
      keep: 50                                    # bundles kept (oldest removed)
      sources:
        - {name: nova-compute, path: "/var/log/nova/nova-compute.log*", format: oslo}
        - {name: rabbitmq, path: "/var/log/rabbitmq/rabbit@*.log", format: rabbitmq, utc: true}
        - {name: ovs-agent, unit: neutron-openvswitch-agent}       # journald
      checks:                                     # the sources related to a check
        compute-node: [nova-compute, rabbitmq]

Handlers call ``for_event(config, host, check, when)`` on an escalation and
attach the returned ``path`` and ``summary`` to the StackStorm payload.
"""
import os
import time

from autoremedy.contract.exitcodes import EXIT_BAD_INPUT, EXIT_CONFIG, EXIT_FAILED
from autoremedy.contract.runtime import ArgumentParser, UsageError, fail

DEFAULT_SOURCES = [
    {"name": "nova-compute", "path": "/var/log/nova/nova-compute.log*", "format": "oslo"},
    {"name": "nova-api", "path": "/var/log/nova/nova-api.log*", "format": "oslo"},
    {"name": "nova-conductor", "path": "/var/log/nova/nova-conductor.log*", "format": "oslo"},
    {"name": "nova-scheduler", "path": "/var/log/nova/nova-scheduler.log*", "format": "oslo"},
    {"name": "neutron-server", "path": "/var/log/neutron/server.log*", "format": "oslo"},
    {"name": "neutron-openvswitch-agent", "path": "/var/log/neutron/neutron-openvswitch-agent.log*",
     "format": "oslo"},
    {"name": "neutron-l3-agent", "path": "/var/log/neutron/l3-agent.log*", "format": "oslo"},
    {"name": "neutron-dhcp-agent", "path": "/var/log/neutron/dhcp-agent.log*", "format": "oslo"},
    {"name": "cinder-volume", "path": "/var/log/cinder/cinder-volume.log*", "format": "oslo"},
    {"name": "cinder-api", "path": "/var/log/cinder/cinder-api.log*", "format": "oslo"},
    {"name": "rabbitmq", "path": "/var/log/rabbitmq/rabbit@*.log*", "format": "rabbitmq"},
]


_SOURCE = {"name": str, "path": str, "unit": str, "format": (str, dict), "utc": bool, "host": str}


def settings(config):
    """The validated ``collect:`` section over the defaults (sources: the usual ones)."""
    from autoremedy import config as configmod
    schema = {"out_dir": str, "window": configmod.Duration, "max_lines": int, "keep": int,
              "sources": configmod.List(_SOURCE), "checks": configmod.Map(configmod.List(str)),
              "baseline": configmod.Duration, "hops": int, "warnings": bool,
              "records": (bool, str), "max_records": int}
    defaults = {"out_dir": os.path.join(config.state_dir, "incidents"), "window": 900.0,
                "max_lines": 20000, "keep": 50, "sources": DEFAULT_SOURCES, "checks": {},
                "baseline": 3600.0, "hops": 2, "warnings": False, "records": "auto",
                "max_records": 50}
    return configmod.section(config, "collect", schema, defaults, rules=_check)


def _check(conf):
    """The rules across keys: records' three values, unique source names, one of
    path or unit, a known log format, checks naming configured sources."""
    from autoremedy.config import ConfigError
    if conf["records"] not in (True, False, "auto"):
        raise ConfigError("collect.records: true, false or auto")
    names = set()
    for i, src in enumerate(conf["sources"]):
        where = f"collect.sources[{i}]"
        if not src.get("name"):
            raise ConfigError(f"{where}.name: required")
        if src["name"] in names:
            raise ConfigError(f"{where}.name: {src['name']!r} is used twice")
        names.add(src["name"])
        if bool(src.get("path")) == bool(src.get("unit")):
            raise ConfigError(f"{where}: give exactly one of path (a file or glob) or unit (journald)")
        if src.get("path"):
            from autoremedy.collection.logwindow import SourceError, Stamper
            try:
                Stamper(src.get("format", "oslo"))
            except SourceError as exc:
                raise ConfigError(f"{where}.format: {exc}") from None
    for check, wanted in conf["checks"].items():
        unknown = [w for w in wanted if w not in names]
        if unknown:
            raise ConfigError(f"collect.checks.{check}: unknown source(s) {', '.join(unknown)}")


# --- collecting -----------------------------------------------------------------------

class Row:
    """One log line of a source: where, when, how bad, and the ids it prints."""
    __slots__ = ("service", "host", "ts", "line", "level", "ids", "fmt")

    def __init__(self, service, host, ts, line, level, fmt, ids=None):
        self.service, self.host, self.ts, self.line = service, host, ts, line
        self.level, self.fmt, self.ids = level, fmt, ids or {}


def gather(conf, start, end, host, names=None, runner=None):
    """{source name: [(ts, line, host, priority, fmt)]} and notes about what could not be read."""
    from autoremedy.contract import execute
    from autoremedy.collection.logwindow import SourceError, Stamper, files_for, read_file, read_journal
    runner = runner or execute.run
    year = time.localtime(end).tm_year
    lines, notes = {}, []
    for src in conf["sources"]:
        if names and src["name"] not in names:
            continue
        src_host = src.get("host") or host
        fmt = src.get("format", "oslo") if not src.get("unit") else None
        try:
            if src.get("unit"):
                rows = [(ts, line, h, prio, None)
                        for ts, line, h, prio in read_journal(src["unit"], start, end, runner, src_host)]
            else:
                stamp = Stamper(fmt, src.get("utc", False), year)
                rows = []
                for path in files_for(src["path"], start):
                    rows.extend((ts, line, src_host, None, fmt)
                                for ts, line in read_file(path, stamp, start, end))
        except (SourceError, OSError) as exc:
            notes.append(f"{src['name']}: {exc}")
            continue
        if rows:
            rows.sort(key=lambda r: r[0])
            lines[src["name"]] = rows
    return lines, notes


def build(lines, event_ids=()):
    """The full graph and the rows: every line with its level and ids. Event ids
    that are not UUIDs or request ids (a queue, a replica, a host) are found by
    their literal mention."""
    import re
    from autoremedy.collection.loggraph import Graph, level_of
    literal = [i for i in event_ids if not re.fullmatch(r"(req-)?[0-9a-f-]{36}", str(i))]
    mention = re.compile("|".join(rf"(?<![\w.-]){re.escape(i)}(?![\w-])" for i in literal)) \
        if literal else None
    graph = Graph()
    rows = []
    for name, source_rows in lines.items():
        for ts, line, host, priority, fmt in source_rows:
            level = level_of(line, priority)
            extra = {m: "event-id" for m in mention.findall(line)} if mention else None
            ids = graph.add_line(name, host, ts, line, level, extra)
            rows.append(Row(name, host, ts, line, level, fmt, ids))
    rows.sort(key=lambda r: r.ts)
    return graph, rows


def event_ids(labels=None, output="", target=None):
    """The ids an event names: its target, id-looking label values, and the
    UUIDs and request ids in its output."""
    import re
    from autoremedy.collection.loggraph import REQ, UUID
    found = []
    for value in [target, *((labels or {}).values())]:
        if value and isinstance(value, str) and 2 < len(value) <= 200 and " " not in value \
                and not value.startswith("/") and value not in found:
            found.append(value)
    for match in REQ.findall(output or "") + re.findall(UUID, output or ""):
        if match not in found:
            found.append(match)
    return found


def analyse(conf, lines, baseline_lines, event_ids_=(), records_for=None):
    """Everything the bundle says: the focused graph, signatures, records,
    disagreements and the effort, from the window's and the baseline's lines."""
    from autoremedy.collection import effort as effortmod
    from autoremedy.collection import logfocus, logtemplates
    graph, rows = build(lines, event_ids_)
    focus = logfocus.focus(graph, rows, event_ids_, conf["hops"], conf["warnings"])
    base_rows = [(name, ts, line, None, fmt) for name, rs in baseline_lines.items()
                 for ts, line, _, _, fmt in rs]
    from autoremedy.collection.loggraph import level_of
    base_rows = [(n, ts, line, level_of(line), fmt) for n, ts, line, _, fmt in base_rows]
    sigs = logtemplates.signatures([(r.service, r.ts, r.line, r.level, r.fmt) for r in rows],
                                   base_rows, conf["warnings"])
    error_sigs = [s for s in sigs if s["errors"]]
    records, disagree, notes = {}, [], []
    if records_for is not None and not focus["nothing"]:
        wanted = {i: graph.nodes[i]["kind"] for i in focus["ids"]}
        try:
            records, disagree = records_for(wanted, rows)
        except Exception as exc:   # the bundle goes out without records, saying why
            from autoremedy.contract.runtime import describe
            notes.append(f"records not fetched: {describe(exc)}")
    for item in disagree:
        node = graph.nodes.get(item["id"])
        if node is not None:
            node.setdefault("disagree", []).append(item["text"])
    linked = [i for i in focus["ids"] if graph.nodes[i]["kind"] not in ("service", "host")]
    est = effortmod.estimate(
        new_error_signatures=sum(1 for s in error_sigs if s["new"]),
        known_error_signatures=sum(1 for s in error_sigs if not s["new"]),
        services=len(focus["services"]), hosts=len(focus["hosts"]), linked_ids=len(linked),
        disagreements=len(disagree), nothing=focus["nothing"])
    return {"graph": graph, "rows": rows, "focus": focus, "signatures": sigs,
            "records": records, "disagreements": disagree, "effort": est, "notes": notes}


def headline(result):
    """One line that leads with what a human reads first."""
    est = result["effort"]
    if est["size"] == "none":
        return "nothing to look at: no error, no id of the event in the window; effort none"
    parts = []
    new = [s for s in result["signatures"] if s["errors"] and s["new"]]
    if new:
        shown = "; ".join(f"{s['service']} \"{s['template'][:80]}\" x{s['count']}" for s in new[:3])
        parts.append(f"{len(new)} new error signature(s): {shown}")
    known = sum(1 for s in result["signatures"] if s["errors"] and not s["new"])
    if known:
        parts.append(f"{known} known error signature(s)")
    if result["disagreements"]:
        parts.append(f"{len(result['disagreements'])} record(s) disagree with the logs: "
                     f"{result['disagreements'][0]['text']}")
    parts.append(f"effort {est['size']} (~{est['minutes']} min, {est['range_minutes'][0]}-"
                 f"{est['range_minutes'][1]}: {est['why']})")
    return "; ".join(parts)


def write_bundle(conf, when, host, check, window, lines, notes, analysis, runner=None):
    import json
    from autoremedy.contract import execute
    from autoremedy import safefs, statefile
    from autoremedy.collection.logfocus import describe_unlinked
    from autoremedy.collection.loggraph import to_dot
    from autoremedy.collection.logwindow import iso
    runner = runner or execute.run
    graph, focus = analysis["graph"], analysis["focus"]
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
    safe = lambda s: "".join(c if c.isalnum() or c in "._-" else "_" for c in str(s))[:60]
    path = os.path.join(conf["out_dir"], f"{stamp}-{safe(host)}-{safe(check or 'event')}")
    suffix = 1
    while os.path.exists(path):
        suffix += 1
        path = os.path.join(conf["out_dir"], f"{stamp}-{safe(host)}-{safe(check or 'event')}-{suffix}")
    safefs.makedirs(os.path.join(path, "logs"))
    excerpts = {}
    for name, rows in lines.items():
        kept = rows[:conf["max_lines"]]
        text = "\n".join(row[1] for row in kept) + "\n"
        statefile.write_atomic(os.path.join(path, "logs", f"{safe(name)}.log"), text.encode())
        excerpts[name] = {"lines": len(rows), "kept": len(kept), "file": f"logs/{safe(name)}.log"}
    if analysis["records"]:
        safefs.makedirs(os.path.join(path, "records"))
        for ident, entry in analysis["records"].items():
            statefile.write_atomic(os.path.join(path, "records", f"{entry['kind']}-{safe(ident)}.json"),
                                   json.dumps(entry, indent=1, sort_keys=True, default=str).encode())
    title = f"{check or 'event'} on {host} at {iso(when)} (±{window / 60:g} min)"
    shown = set(focus["ids"])
    statefile.write_atomic(os.path.join(path, "graph.json"), json.dumps(
        dict(graph.to_dict(iso, only=shown), seeds=focus["seeds"],
             unlinked=focus["unlinked"]), indent=1, sort_keys=True).encode())
    dot_path = os.path.join(path, "graph.dot")
    dot_text = to_dot(graph, title, only=shown, seeds=focus["seeds"],
                      unlinked=describe_unlinked(focus["unlinked"])).encode()
    statefile.write_atomic(dot_path, dot_text)
    drawn, draw_note = _draw(dot_text, path, runner)
    if draw_note:
        notes.append(f"graph {draw_note}")
    notes.extend(analysis["notes"])
    links = [{"id": n["id"], "kind": n["kind"], "services": sorted(n["services"]), "count": n["count"],
              "errors": n["errors"], "first": iso(n["first"]), "last": iso(n["last"]),
              "seed": focus["seeds"].get(n["id"])}
             for n in graph.links() if n["id"] in shown][:50]
    sigs = [dict(s, first=iso(s["first"]), last=iso(s["last"])) for s in analysis["signatures"]]
    serious = [s for s in sigs if s["errors"]]
    line = f"{path}: {headline(analysis)}"
    summary = {"event": {"host": host, "check": check, "at": iso(when), "window_s": window,
                         "baseline_s": conf["baseline"]},
               "summary": line,
               "new_signatures": [s for s in serious if s["new"]],
               "disagreements": analysis["disagreements"],
               "effort": analysis["effort"],
               "error_signatures": serious,
               "seeds": focus["seeds"], "unlinked": describe_unlinked(focus["unlinked"]),
               "services": sorted(focus["services"]), "hosts": sorted(focus["hosts"]),
               "links": links, "sources": excerpts, "notes": notes,
               "records": {i: {"kind": e["kind"], "file": f"records/{e['kind']}-{safe(i)}.json"}
                           for i, e in analysis["records"].items()},
               "files": ["summary.txt", "graph.json", "graph.dot"] + [os.path.basename(d) for d in drawn]
               + [e["file"] for e in excerpts.values()],
               "signatures": sigs[:200]}
    statefile.write_atomic(os.path.join(path, "summary.json"),
                           json.dumps(summary, indent=1, sort_keys=True, default=str).encode())
    statefile.write_atomic(os.path.join(path, "summary.txt"), _text(summary, title).encode())
    _prune(conf["out_dir"], conf["keep"])
    return {"path": path, "summary": line, "new_signatures": summary["new_signatures"][:10],
            "disagreements": analysis["disagreements"][:10], "effort": analysis["effort"],
            "error_signatures": serious[:20], "links": links[:10], "seeds": focus["seeds"],
            "unlinked": summary["unlinked"],
            "graph": {"json": os.path.join(path, "graph.json"), "dot": dot_path, "drawn": drawn},
            "notes": notes}


def _draw(dot_text, path, runner):
    """Graphviz's drawings of ``dot_text`` put in the bundle ``path``. dot reads and
    writes by name, following links, and may run as root: it works in a private
    folder of ours (mkdtemp, 0700), and what it drew is copied into the bundle
    through safefs (a temp name, then a rename over the name). A link a group
    member planted in the bundle (graph.svg -> a file of root's) is replaced,
    never written through, and dot never reads a graph.dot swapped meanwhile."""
    import shutil
    import tempfile
    from autoremedy import statefile
    from autoremedy.collection.loggraph import render
    private = tempfile.mkdtemp(prefix="autoremedy-dot-")
    try:
        source = os.path.join(private, "graph.dot")
        with open(source, "wb") as handle:
            handle.write(dot_text)
        made, note = render(source, runner)
        drawn = []
        for out in made:
            with open(out, "rb") as handle:
                target = os.path.join(path, os.path.basename(out))
                statefile.write_atomic(target, handle.read())
            drawn.append(target)
        return drawn, note
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _text(summary, title):
    e = summary["effort"]
    out = [f"Incident bundle: {title}", "", summary["summary"].split(": ", 1)[1], ""]
    if summary["new_signatures"]:
        out.append("New error signatures (not seen in the baseline before the incident):")
        out.extend(_sig_line(s) for s in summary["new_signatures"][:20])
        out.append("")
    if summary["disagreements"]:
        out.append("Where the cloud's records and the logs disagree:")
        out.extend(f"  [{d['rule']}] {d['text']}" for d in summary["disagreements"][:20])
        out.append("")
    known = [s for s in summary["error_signatures"] if not s["new"]]
    if known:
        out.append("Known error signatures (also in the baseline):")
        out.extend(_sig_line(s) for s in known[:20])
        out.append("")
    if summary["links"]:
        out.append("Ids linked to the error, shared across services:")
        for link in summary["links"][:20]:
            out.append(f"  {link['id']} [{link['kind']}] in {', '.join(link['services'])}: "
                       f"{link['count']} line(s), {link['errors']} error(s), {link['first']} .. {link['last']}")
        out.append("")
    if summary["unlinked"]:
        out.append(f"Not drawn: {summary['unlinked']}.")
        out.append("")
    out.append(f"Effort: {e['size']}, ~{e['minutes']} min ({e['range_minutes'][0]}-"
               f"{e['range_minutes'][1]}); inputs: {e['why']}; formula: {e['formula']}")
    for note in summary["notes"]:
        out.append(f"Note: {note}")
    out.append("Open graph.svg (or render graph.dot) for the picture; logs/ holds the excerpts"
               + ("; records/ what the cloud's APIs said." if summary["records"] else "."))
    return "\n".join(out) + "\n"


def _sig_line(sig):
    return (f"  {sig['service']}: {_brief(sig['template'])[:200]}  x{sig['count']} "
            f"({sig['errors']} {sig['level'] or ''}), {sig['first']} .. {sig['last']}")


_CONTEXT = None


def _brief(line):
    """A log line without oslo.log's long context block (the ids are in the graph)."""
    global _CONTEXT
    if _CONTEXT is None:
        import re
        _CONTEXT = re.compile(r"\[(?:req-[0-9a-f-]{36}|None|-) req-[0-9a-f-]{36}[^\]]*\] ")
    return _CONTEXT.sub("", line, count=1)


def _prune(out_dir, keep):
    """Keep the newest ``keep`` bundles. The folder is in the state directory the
    monitoring users' group can write: it is opened and emptied relative to
    checked fds (safefs), so a link planted there never steers root's removal."""
    import stat
    from autoremedy import safefs
    try:
        folder = safefs.open_dir(out_dir)
    except OSError:
        return
    with folder:
        entries = []
        for name in folder.listdir():
            try:
                if stat.S_ISDIR(folder.lstat(name).st_mode):
                    entries.append(name)
            except OSError:
                continue
        for old in sorted(entries)[:-keep] if keep > 0 else []:
            try:
                folder.rmtree(old)
            except OSError:
                pass


def records_fetcher(config, conf):
    """A ``records_for(ids, rows)`` that asks the cloud, or None when records are
    off (``collect.records: false``, or ``auto`` without an ``openstack:`` section)."""
    wanted = conf["records"]
    if wanted is False or (wanted == "auto" and not config.get("openstack")):
        return None

    def fetch(ids, rows):
        from autoremedy.clients import cloud
        from autoremedy.collection import records
        fetcher = records.Fetcher(cloud.connect(config))
        got = records.fetch(fetcher, ids, conf["max_records"])
        return got, records.disagreements(got, rows)
    return fetch


def collect(config, when, window=None, host=None, check=None, sources=None, out_dir=None, runner=None,
            ids=(), records_for="config"):
    conf = settings(config)
    if out_dir:
        conf["out_dir"] = out_dir
    window = conf["window"] if window is None else window
    host = host or config.hostname
    names = sources or conf["checks"].get(check or "") or None
    if sources:
        known = {s["name"] for s in conf["sources"]}
        unknown = [s for s in sources if s not in known]
        if unknown:
            from autoremedy.config import ConfigError
            raise ConfigError(f"--source {', '.join(unknown)}: not a collect source "
                              f"(known: {', '.join(sorted(known))})")
    lines, notes = gather(conf, when - window, when + window, host, names, runner)
    baseline = {}
    if conf["baseline"] > 0:
        baseline, base_notes = gather(conf, when - window - conf["baseline"], when - window, host,
                                      names, runner)
    if not lines:
        notes.append("no log line in the window from: " + ", ".join(
            s["name"] for s in conf["sources"] if not names or s["name"] in names))
    if records_for == "config":
        records_for = records_fetcher(config, conf)
    analysis = analyse(conf, lines, baseline, list(ids), records_for)
    return write_bundle(conf, when, host, check, window, lines, notes, analysis, runner)


def for_event(config, host, check, when, ids=()):
    """For the handlers: build the bundle of an escalated event; never raises.
    ``when`` is the event's time (epoch seconds, or any form ``--at`` takes);
    ``ids`` the event's own ids (``event_ids``). Returns {"path", "summary",
    "new_signatures", "disagreements", "effort", ...}, or {"path": None,
    "summary", "error"}."""
    try:
        from autoremedy.collection.logwindow import parse_when
        result = collect(config, parse_when(str(when)), host=host, check=check, ids=ids)
    except Exception as exc:   # an escalation must go out even when collecting fails
        from autoremedy.contract.runtime import describe
        return {"path": None, "summary": f"no incident bundle: {describe(exc)}", "error": describe(exc)}
    # What travels with the escalation (spool, StackStorm, audit): small, and
    # leading with what a human reads first.
    keep = ("service", "template", "count", "first", "last", "example")
    return {"summary": result["summary"],
            "new_signatures": [{k: s[k] for k in keep} for s in result["new_signatures"][:5]],
            "disagreements": result["disagreements"][:5],
            "effort": {k: result["effort"][k] for k in ("size", "minutes", "range_minutes", "why")},
            "path": result["path"], "unlinked": result["unlinked"]}


def _joined_values(argv, options):
    """'--at -10m' -> '--at=-10m': argparse takes a value starting with '-' for
    an option, and '-10m' (ten minutes ago) is what the help suggests."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] in options and i + 1 < len(argv):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def main(argv):
    from autoremedy.contract import units
    from autoremedy.config import Config, ConfigError
    from autoremedy.collection.logwindow import parse_when
    parser = ArgumentParser(prog="autoremedy collect",
                            description="incident bundle with a relationship graph of the logs")
    parser.add_argument("--at", required=True, metavar="TIME",
                        help="the event's time: ISO 8601, epoch seconds, 'now' or '-10m'")
    parser.add_argument("--window", metavar="DURATION", help="before and after the event (default 15m)")
    parser.add_argument("--check", help="the failed check (selects collect.checks.<check> sources)")
    parser.add_argument("--host", help="the host the event is about (default: this host)")
    parser.add_argument("--source", action="append", metavar="NAME", help="only this source (repeatable)")
    parser.add_argument("--id", action="append", default=[], metavar="ID",
                        help="an id of the event (instance, queue, replica...): a seed (repeatable)")
    parser.add_argument("--no-records", action="store_true",
                        help="do not ask the cloud's APIs for the records of the ids")
    parser.add_argument("--out", metavar="DIR", help="bundle parent directory (default collect.out_dir)")
    parser.add_argument("--config", metavar="FILE")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    try:
        args = parser.parse_args(_joined_values(argv, ("--at", "--window")))
        when = parse_when(args.at)
        window = units.duration(args.window) if args.window else None
    except (UsageError, ValueError) as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    try:
        config = Config.load(args.config)
        if args.source:
            known = [s["name"] for s in settings(config)["sources"]]
            unknown = [name for name in args.source if name not in known]
            if unknown:
                return fail(f"collect: no source named {', '.join(map(repr, unknown))} "
                            f"(collect.sources has: {', '.join(known) or 'none'})", EXIT_BAD_INPUT)
        result = collect(config, when, window, args.host, args.check, args.source, args.out,
                         ids=args.id, records_for=None if args.no_records else "config")
    except ConfigError as exc:
        return fail(str(exc), EXIT_CONFIG)
    except OSError as exc:
        return fail(f"cannot write the bundle: {exc.strerror}: {exc.filename}", EXIT_FAILED)
    if args.json:
        import json
        print(json.dumps(result, sort_keys=True))
    else:
        print(result["summary"])
        for note in result["notes"]:
            print(f"  note: {note}")
    return 0
