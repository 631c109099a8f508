"""Link log lines across services by the ids they share, and draw the result.

Each line is scanned for the identifiers OpenStack services print:

- request ids ``req-<uuid>``; in oslo.log's context block
  ``[<global_request_id> <request_id> <user identity>]`` the first is the global
  request id that follows one API call through every service, the second the
  local one;
- resource UUIDs, typed by the words before them (``[instance: <uuid>]``,
  "port", "volume", "network" ...);
- AMQP connections by client port: oslo.messaging's "Reconnected to AMQP server
  on <host>:5672 via [amqp] client with port 54321" and RabbitMQ's
  "accepting AMQP connection <0.1.0> (10.0.0.9:54321 -> 10.0.0.5:5672)" name the
  same TCP connection.

The graph has services, hosts, requests and resources as nodes; an edge joins
a service to every id its lines mention, and a request to the resources on its
lines, each with a count and the first/last time. An id mentioned by two or
more services is a *link*: that is where an incident crosses services, and
``service_links`` are the service-to-service edges those shared ids make.
"""
import re

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
REQ = re.compile(rf"\breq-{UUID}\b")
CONTEXT = re.compile(rf"\[(req-{UUID}|None|-) (req-{UUID})\b")
TYPED = re.compile(rf"(?i)\b(instance|server|port|vif|volume|attachment|network|subnet|router|image|"
                   rf"snapshot|device|migration)[ :_=-]{{1,3}}[\"']?({UUID})\b")
BARE_UUID = re.compile(rf"(?<![-\w])({UUID})(?![-\w])")
AMQP_CLIENT = re.compile(r"AMQP server on (\S+?):(\d+) via \[\w+\] client with port (\d+)")
AMQP_RABBIT = re.compile(r"\(([\w.:\[\]-]+?):(\d+) -> ([\w.:\[\]-]+?):(\d+)")
LEVEL = re.compile(r"\b(CRITICAL|ERROR|WARNING|INFO|DEBUG|TRACE|FATAL)\b|\[(error|warning|info|debug|critical|notice)\]")
ERRORS = {"CRITICAL", "ERROR", "FATAL", "TRACE", "error", "critical"}

KIND_OF = {"instance": "instance", "server": "instance", "port": "port", "vif": "port",
           "device": "port", "volume": "volume", "attachment": "volume", "network": "network",
           "subnet": "network", "router": "router", "image": "image", "snapshot": "volume",
           "migration": "migration"}


def level_of(line, priority=None):
    """The log level word, or from a journald priority (0-3 are errors)."""
    if priority is not None:
        return "ERROR" if priority <= 3 else "WARNING" if priority == 4 else "INFO"
    match = LEVEL.search(line, 0, 200)
    if not match:
        return None
    return (match.group(1) or match.group(2)).upper()


def extract(line):
    """{node id: kind} for every identifier on the line."""
    found = {}
    match = CONTEXT.search(line)
    if match:
        if match.group(1).startswith("req-"):
            found[match.group(1)] = "global-request"
        found[match.group(2)] = "request"
    for req in REQ.findall(line):
        found.setdefault(req, "request")
    # A resource is its UUID; the words before it say what it is ("port", "[instance: ").
    for word, uuid in TYPED.findall(line):
        found.setdefault(uuid, KIND_OF[word.lower()])
    for uuid in BARE_UUID.findall(line):
        if f"req-{uuid}" not in found:
            found.setdefault(uuid, "resource")
    match = AMQP_CLIENT.search(line)
    if match:
        found[f"amqp:{match.group(3)}"] = "connection"
    else:
        match = AMQP_RABBIT.search(line)
        if match and match.group(4) in ("5672", "5671"):     # the client's side is the link
            found[f"amqp:{match.group(2)}"] = "connection"
    return found


class Graph:
    """Nodes and edges with counts and first/last times."""

    def __init__(self):
        self.nodes = {}
        self.edges = {}

    def node(self, ident, kind, ts, error=False, **attrs):
        node = self.nodes.get(ident)
        if node is not None and node["kind"] == "resource" and kind != "resource":
            node["kind"] = kind     # typed on another line ("port <uuid>"): now we know
            node["label"] = attrs.get("label", node.get("label"))
        if node is None:
            node = self.nodes[ident] = {"id": ident, "kind": kind, "count": 0, "errors": 0,
                                        "first": ts, "last": ts, "services": set()}
            node.update(attrs)
        node["count"] += 1
        node["errors"] += 1 if error else 0
        node["first"] = min(node["first"], ts)
        node["last"] = max(node["last"], ts)
        return node

    def edge(self, a, b, ts, error=False):
        key = (a, b)
        edge = self.edges.get(key)
        if edge is None:
            edge = self.edges[key] = {"source": a, "target": b, "count": 0, "errors": 0,
                                      "first": ts, "last": ts}
        edge["count"] += 1
        edge["errors"] += 1 if error else 0
        edge["first"] = min(edge["first"], ts)
        edge["last"] = max(edge["last"], ts)

    def add_line(self, service, host, ts, line, level=None, extra=None):
        """Add one line; ``extra`` adds ids found otherwise ({id: kind}, e.g. an
        event's queue name). Returns the line's {id: kind}."""
        error = level in ERRORS or (level or "").upper() in ERRORS
        svc = f"service:{service}"
        self.node(svc, "service", ts, error, label=service, host=host)
        if host:
            self.node(f"host:{host}", "host", ts, error, label=host)
            if (svc, f"host:{host}") not in self.edges:
                self.edge(svc, f"host:{host}", ts)
        ids = extract(line)
        for ident, kind in (extra or {}).items():
            ids.setdefault(ident, kind)
        for ident, kind in ids.items():
            node = self.node(ident, kind, ts, error, label=_label(ident, kind))
            node["services"].add(service)
            self.edge(svc, ident, ts, error)
        requests = [i for i, k in ids.items() if k in ("request", "global-request")]
        for req in requests:
            for ident, kind in ids.items():
                if kind not in ("request", "global-request"):
                    self.edge(req, ident, ts, error)
        if len(requests) == 2:      # global -> local request id
            glob = [i for i in requests if ids[i] == "global-request"]
            local = [i for i in requests if ids[i] == "request"]
            if glob and local:
                self.edge(glob[0], local[0], ts, error)
        return ids

    def links(self):
        """Ids shared by two or more services, most-shared and most-erroneous first."""
        shared = [n for n in self.nodes.values() if len(n["services"]) >= 2]
        return sorted(shared, key=lambda n: (-len(n["services"]), -n["errors"], -n["count"], n["id"]))

    def service_links(self):
        """Service-to-service edges: the ids two services share, with the first and last
        time either of them mentioned one (the "link the lines" view of the graph)."""
        pairs = {}
        for node in self.links():
            names = sorted(node["services"])
            for i, a in enumerate(names):
                for b in names[i + 1:]:
                    ea, eb = self.edges[(f"service:{a}", node["id"])], self.edges[(f"service:{b}", node["id"])]
                    link = pairs.setdefault((a, b), {"source": f"service:{a}", "target": f"service:{b}",
                                                     "via": [], "first": ea["first"], "last": ea["last"]})
                    link["via"].append(node["id"])
                    link["first"] = min(link["first"], ea["first"], eb["first"])
                    link["last"] = max(link["last"], ea["last"], eb["last"])
        return [pairs[k] for k in sorted(pairs)]

    def visible(self, only=None):
        """Node ids to show: every node, or the ids in ``only`` with the services
        that mention them and those services' hosts."""
        if only is None:
            return set(self.nodes)
        shown = set(only) & set(self.nodes)
        for ident in list(shown):
            for service in self.nodes[ident]["services"]:
                shown.add(f"service:{service}")
        for (a, b) in self.edges:
            if a in shown and a.startswith("service:") and b.startswith("host:"):
                shown.add(b)
        return shown

    def to_dict(self, iso, only=None):
        shown = self.visible(only)
        nodes = []
        for n in sorted(self.nodes.values(), key=lambda n: (n["kind"], n["id"])):
            if n["id"] in shown:
                nodes.append(dict(n, first=iso(n["first"]), last=iso(n["last"]),
                                  services=sorted(n["services"])))
        edges = [dict(e, first=iso(e["first"]), last=iso(e["last"]))
                 for e in sorted(self.edges.values(), key=lambda e: (e["source"], e["target"]))
                 if e["source"] in shown and e["target"] in shown]
        links = [dict(l, first=iso(l["first"]), last=iso(l["last"]),
                      via=[v for v in l["via"] if v in shown])
                 for l in self.service_links() if any(v in shown for v in l["via"])]
        return {"nodes": nodes, "edges": edges, "service_links": links}


def _label(ident, kind):
    if ident.startswith("req-"):
        return ident[:12] + "…"
    if len(ident) == 36:
        return f"{kind} {ident[:8]}"
    return ident


# --- drawing -----------------------------------------------------------------------------

STYLE = {"service": 'shape=box style="rounded,filled" fillcolor="#dbe9f6"',
         "host": 'shape=box3d style=filled fillcolor="#eeeeee"',
         "request": 'shape=ellipse style=filled fillcolor="#fff4cc"',
         "global-request": 'shape=doubleoctagon style=filled fillcolor="#ffe08a"',
         "connection": 'shape=cds style=filled fillcolor="#e3d7f4"'}
RESOURCE_STYLE = 'shape=component style=filled fillcolor="#dff0d8"'


def _q(text):
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(graph, title, max_ids=60, only=None, seeds=None, unlinked=""):
    """Graphviz DOT of the ids worth seeing — those in ``only`` (the focus on the
    error), else those shared by services or seen on error lines — with the
    services and hosts that print them. Seeds are drawn bold; a node whose
    record disagrees with the logs gets an orange dashed border and the reason."""
    seeds = seeds or {}
    ids = [n for n in graph.nodes.values() if n["kind"] not in ("service", "host")]
    if only is None:
        worth = [n for n in ids if len(n["services"]) >= 2 or n["errors"]]
    else:
        worth = [n for n in ids if n["id"] in only]
    worth.sort(key=lambda n: (n["id"] not in seeds, -len(n["services"]), -n["errors"], -n["count"], n["id"]))
    shown = graph.visible({n["id"] for n in worth[:max_ids]})
    if only is None:
        shown |= {n["id"] for n in graph.nodes.values() if n["kind"] in ("service", "host")}
    lines = ["digraph incident {", f"  label={_q(title)}; labelloc=t; fontsize=16;",
             "  rankdir=LR; node [fontname=Helvetica fontsize=10]; edge [fontname=Helvetica fontsize=8];"]
    for ident in sorted(shown):
        n = graph.nodes[ident]
        style = STYLE.get(n["kind"], RESOURCE_STYLE)
        label = n.get("label") or ident
        if n["kind"] == "service":
            label = f"{label}\n{n['count']} lines, {n['errors']} errors"
        elif n["kind"] != "host":
            label = f"{label}\n×{n['count']}"
        extra = ' color=red penwidth=2' if n["errors"] else ""
        if ident in seeds:
            extra += " peripheries=2"
        if n.get("disagree"):
            label += "\n≠ record: " + n["disagree"][0][:60]
            extra += ' color=orange penwidth=3 style="dashed,filled"'
        lines.append(f"  {_q(ident)} [label={_q(label)} {style}{extra}];")
    for (a, b), e in sorted(graph.edges.items()):
        if a in shown and b in shown:
            color = " color=red" if e["errors"] else ""
            lines.append(f"  {_q(a)} -> {_q(b)} [label={_q(e['count'])}{color}];")
    for link in graph.service_links():
        via = [v for v in link["via"] if v in shown]
        if via and link["source"] in shown and link["target"] in shown:
            lines.append(f"  {_q(link['source'])} -> {_q(link['target'])} [dir=none style=dashed color=blue "
                         f"constraint=false label={_q(str(len(via)) + ' shared')}];")
    hidden = len(ids) - len(shown & {n['id'] for n in ids})
    note = unlinked or (f"{hidden} more ids in graph.json" if hidden else "")
    if note:
        lines.append(f"  note [shape=note label={_q(note)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(dot_path, runner, formats=("svg", "png")):
    """Draw with Graphviz when ``dot`` is installed; return the files made and a note."""
    from autoremedy.contract import execute
    made = []
    for fmt in formats:
        out = dot_path[:-4] + "." + fmt
        try:
            done = runner(["dot", f"-T{fmt}", dot_path, "-o", out], timeout=60)
        except execute.CommandError as exc:
            return made, f"not drawn: {exc}"
        if done.returncode != 0:
            return made, f"dot -T{fmt} failed: {done.brief()}"
        made.append(out)
    return made, None
