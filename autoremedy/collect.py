"""``autoremedy collect``: an incident bundle for failures with no registered remediation.

    $ autoremedy collect --at "2026-11-25 03:12:45" --window 15m --check compute-node
    /var/lib/autoremedy/incidents/20261125T031245Z-cmp1-compute-node: 3 services on 1 host,
    41 error lines, 6 requests, 4 resources, 2 shared ids: medium

For the event's time it reads the related services' logs in a window around it
(autoremedy.logwindow), extracts request ids and instance/port/volume UUIDs,
links the lines that share them across services (autoremedy.loggraph) and
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
import shutil
import time

from autoremedy.runtime import ArgumentParser, UsageError, fail

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


def settings(config):
    from autoremedy import config as configmod
    source = {"name": str, "path": str, "unit": str, "format": (str, dict), "utc": bool, "host": str}
    schema = {"out_dir": str, "window": configmod.Duration, "max_lines": int, "keep": int,
              "sources": configmod.List(source), "checks": configmod.Map(configmod.List(str))}
    try:
        own = configmod.validate(config.get("collect") or {}, schema, "collect")
    except configmod.ConfigError as exc:
        raise configmod.ConfigError(f"{config.path or 'configuration'}: {exc}") from None
    out = {"out_dir": os.path.join(config.state_dir, "incidents"), "window": 900.0,
           "max_lines": 20000, "keep": 50, "sources": DEFAULT_SOURCES, "checks": {}}
    out.update(own)
    names = set()
    for i, src in enumerate(out["sources"]):
        where = f"collect.sources[{i}]"
        if not src.get("name"):
            raise configmod.ConfigError(f"{where}.name: required")
        if src["name"] in names:
            raise configmod.ConfigError(f"{where}.name: {src['name']!r} is used twice")
        names.add(src["name"])
        if bool(src.get("path")) == bool(src.get("unit")):
            raise configmod.ConfigError(f"{where}: give exactly one of path (a file or glob) or unit (journald)")
        if src.get("path"):
            from autoremedy.logwindow import SourceError, Stamper
            try:
                Stamper(src.get("format", "oslo"))
            except SourceError as exc:
                raise configmod.ConfigError(f"{where}.format: {exc}") from None
    for check, wanted in out["checks"].items():
        unknown = [w for w in wanted if w not in names]
        if unknown:
            raise configmod.ConfigError(f"collect.checks.{check}: unknown source(s) {', '.join(unknown)}")
    return out


# --- collecting -----------------------------------------------------------------------

def gather(conf, start, end, host, names=None, runner=None):
    """{source name: [(ts, line, host, priority)]} and notes about what could not be read."""
    from autoremedy import execute
    from autoremedy.logwindow import SourceError, Stamper, files_for, read_file, read_journal
    runner = runner or execute.run
    year = time.localtime(end).tm_year
    lines, notes = {}, []
    for src in conf["sources"]:
        if names and src["name"] not in names:
            continue
        src_host = src.get("host") or host
        try:
            if src.get("unit"):
                rows = read_journal(src["unit"], start, end, runner, src_host)
            else:
                stamp = Stamper(src.get("format", "oslo"), src.get("utc", False), year)
                rows = []
                for path in files_for(src["path"], start):
                    rows.extend((ts, line, src_host, None) for ts, line in read_file(path, stamp, start, end))
        except (SourceError, OSError) as exc:
            notes.append(f"{src['name']}: {exc}")
            continue
        if rows:
            rows.sort(key=lambda r: r[0])
            lines[src["name"]] = rows
    return lines, notes


def build(lines):
    from autoremedy.loggraph import Graph, level_of
    graph = Graph()
    errors = []
    for name, rows in lines.items():
        for ts, line, host, priority in rows:
            level = level_of(line, priority)
            graph.add_line(name, host, ts, line, level)
            if level in ("ERROR", "CRITICAL", "FATAL", "TRACE"):
                errors.append((ts, name, line))
    errors.sort()
    return graph, errors


def effort(graph, errors, lines):
    """How big the problem looks: services, hosts, error lines, distinct requests."""
    kinds = {}
    for node in graph.nodes.values():
        kinds[node["kind"]] = kinds.get(node["kind"], 0) + 1
    requests = kinds.get("request", 0) + kinds.get("global-request", 0)
    resources = sum(v for k, v in kinds.items() if k not in ("service", "host", "request",
                                                               "global-request", "connection"))
    services = kinds.get("service", 0)
    hosts = kinds.get("host", 0)
    error_services = len({name for _, name, _ in errors})
    # A rough size so a human knows at a glance: each service/host to look at
    # counts most, then distinct requests and error volume.
    score = services + hosts + error_services + requests / 5 + len(errors) / 20
    size = "none" if not lines else "small" if score < 6 else "medium" if score < 15 else "large"
    return {"services": services, "hosts": hosts, "error_lines": len(errors),
            "services_with_errors": error_services, "requests": requests, "resources": resources,
            "shared_ids": len(graph.links()), "lines": sum(len(r) for r in lines.values()),
            "size": size}


def describe_effort(e):
    return (f"{e['services']} service(s) on {e['hosts']} host(s), {e['error_lines']} error line(s), "
            f"{e['requests']} request(s), {e['resources']} resource(s), {e['shared_ids']} shared id(s): "
            f"{e['size']}")


def write_bundle(conf, when, host, check, window, lines, notes, runner=None):
    import json
    from autoremedy import execute, statefile
    from autoremedy.loggraph import render, to_dot
    from autoremedy.logwindow import iso
    runner = runner or execute.run
    graph, errors = build(lines)
    est = effort(graph, errors, lines)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
    safe = lambda s: "".join(c if c.isalnum() or c in "._-" else "_" for c in str(s))[:60]
    path = os.path.join(conf["out_dir"], f"{stamp}-{safe(host)}-{safe(check or 'event')}")
    suffix = 1
    while os.path.exists(path):
        suffix += 1
        path = os.path.join(conf["out_dir"], f"{stamp}-{safe(host)}-{safe(check or 'event')}-{suffix}")
    os.makedirs(os.path.join(path, "logs"), mode=0o750)
    excerpts = {}
    for name, rows in lines.items():
        kept = rows[:conf["max_lines"]]
        text = "\n".join(line for _, line, _, _ in kept) + "\n"
        statefile.write_atomic(os.path.join(path, "logs", f"{safe(name)}.log"), text.encode())
        excerpts[name] = {"lines": len(rows), "kept": len(kept), "file": f"logs/{safe(name)}.log"}
    title = f"{check or 'event'} on {host} at {iso(when)} (±{window / 60:g} min)"
    statefile.write_atomic(os.path.join(path, "graph.json"),
                           json.dumps(graph.to_dict(iso), indent=1, sort_keys=True).encode())
    dot_path = os.path.join(path, "graph.dot")
    statefile.write_atomic(dot_path, to_dot(graph, title).encode())
    drawn, draw_note = render(dot_path, runner)
    if draw_note:
        notes.append(f"graph {draw_note}")
    links = [{"id": n["id"], "kind": n["kind"], "services": sorted(n["services"]), "count": n["count"],
              "errors": n["errors"], "first": iso(n["first"]), "last": iso(n["last"])}
             for n in graph.links()[:50]]
    line = f"{path}: {describe_effort(est)}"
    summary = {"event": {"host": host, "check": check, "at": iso(when), "window_s": window},
               "effort": est, "summary": line, "links": links, "sources": excerpts, "notes": notes,
               "files": ["summary.txt", "graph.json", "graph.dot"] + [os.path.basename(d) for d in drawn]
               + [e["file"] for e in excerpts.values()],
               "first_errors": [{"at": iso(ts), "source": name, "line": text[:500]}
                                for ts, name, text in errors[:20]]}
    statefile.write_atomic(os.path.join(path, "summary.json"),
                           json.dumps(summary, indent=1, sort_keys=True).encode())
    statefile.write_atomic(os.path.join(path, "summary.txt"), _text(summary, title).encode())
    _prune(conf["out_dir"], conf["keep"])
    return {"path": path, "summary": line, "effort": est, "links": links[:10],
            "graph": {"json": os.path.join(path, "graph.json"), "dot": dot_path, "drawn": drawn},
            "notes": notes}


def _text(summary, title):
    e = summary["effort"]
    out = [f"Incident bundle: {title}", "", f"Size: {describe_effort(e)}", ""]
    if summary["links"]:
        out.append("Ids shared across services (where the incident crosses them):")
        for link in summary["links"][:20]:
            out.append(f"  {link['id']} [{link['kind']}] in {', '.join(link['services'])}: "
                       f"{link['count']} line(s), {link['errors']} error(s), {link['first']} .. {link['last']}")
        out.append("")
    if summary["first_errors"]:
        out.append("First error lines:")
        out.extend(f"  {err['at']} {err['source']}: {_brief(err['line'])[:240]}" for err in summary["first_errors"])
        out.append("")
    for note in summary["notes"]:
        out.append(f"Note: {note}")
    out.append("Open graph.svg (or render graph.dot) for the picture; logs/ holds the excerpts.")
    return "\n".join(out) + "\n"


_CONTEXT = None


def _brief(line):
    """A log line without oslo.log's long context block (the ids are in the graph)."""
    global _CONTEXT
    if _CONTEXT is None:
        import re
        _CONTEXT = re.compile(r"\[(?:req-[0-9a-f-]{36}|None|-) req-[0-9a-f-]{36}[^\]]*\] ")
    return _CONTEXT.sub("", line, count=1)


def _prune(out_dir, keep):
    try:
        entries = sorted(e for e in os.listdir(out_dir) if os.path.isdir(os.path.join(out_dir, e)))
    except OSError:
        return
    for old in entries[:-keep] if keep > 0 else []:
        shutil.rmtree(os.path.join(out_dir, old), ignore_errors=True)


def collect(config, when, window=None, host=None, check=None, sources=None, out_dir=None, runner=None):
    conf = settings(config)
    if out_dir:
        conf["out_dir"] = out_dir
    window = conf["window"] if window is None else window
    host = host or config.hostname
    names = sources or conf["checks"].get(check or "") or None
    lines, notes = gather(conf, when - window, when + window, host, names, runner)
    if not lines:
        notes.append("no log line in the window from: " + ", ".join(
            s["name"] for s in conf["sources"] if not names or s["name"] in names))
    return write_bundle(conf, when, host, check, window, lines, notes, runner)


def for_event(config, host, check, when):
    """For the handlers: build the bundle of an escalated event; never raises.
    ``when`` is the event's time (epoch seconds, or any form ``--at`` takes).
    Returns {"path", "summary", "effort", ...}, or {"path": None, "summary", "error"}."""
    try:
        from autoremedy.logwindow import parse_when
        return collect(config, parse_when(str(when)), host=host, check=check)
    except Exception as exc:   # an escalation must go out even when collecting fails
        from autoremedy.runtime import describe
        return {"path": None, "summary": f"no incident bundle: {describe(exc)}", "error": describe(exc)}


def main(argv):
    from autoremedy import units
    from autoremedy.config import Config, ConfigError
    from autoremedy.logwindow import parse_when
    parser = ArgumentParser(prog="autoremedy collect",
                            description="incident bundle with a relationship graph of the logs")
    parser.add_argument("--at", required=True, metavar="TIME",
                        help="the event's time: ISO 8601, epoch seconds, 'now' or '-10m'")
    parser.add_argument("--window", metavar="DURATION", help="before and after the event (default 15m)")
    parser.add_argument("--check", help="the failed check (selects collect.checks.<check> sources)")
    parser.add_argument("--host", help="the host the event is about (default: this host)")
    parser.add_argument("--source", action="append", metavar="NAME", help="only this source (repeatable)")
    parser.add_argument("--out", metavar="DIR", help="bundle parent directory (default collect.out_dir)")
    parser.add_argument("--config", metavar="FILE")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    try:
        args = parser.parse_args(argv)
        when = parse_when(args.at)
        window = units.duration(args.window) if args.window else None
    except (UsageError, ValueError) as exc:
        return fail(str(exc), 2)
    try:
        config = Config.load(args.config)
        result = collect(config, when, window, args.host, args.check, args.source, args.out)
    except ConfigError as exc:
        return fail(str(exc), 3)
    except OSError as exc:
        return fail(f"cannot write the bundle: {exc.strerror}: {exc.filename}", 1)
    if args.json:
        import json
        print(json.dumps(result, sort_keys=True))
    else:
        print(result["summary"])
        for note in result["notes"]:
            print(f"  note: {note}")
    return 0
