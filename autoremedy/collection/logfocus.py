"""Centre an incident graph on the error: seeds, then a bounded walk along shared ids.

A window of logs around an event holds everything that happened nearby: on a
busy cloud hundreds of requests that have nothing to do with the failure. What a
human needs is the part connected to the trouble:

- **seeds**: the event's own ids (an instance, a host, a queue, a replica: the
  check's target and any UUID in its output), and every id printed on an error
  line (ERROR, CRITICAL, FATAL, TRACE; WARNING when configured);
- **the walk**: from the seeds along the ids that share a line — a request to
  its global request and its resources, a resource to the other requests that
  touched it, an AMQP connection from the client to the broker — at most
  ``hops`` steps (default 2);
- everything else is **summarised**, not drawn ("37 other requests, nothing
  linked").

A window with no error line and no id of the event says so and needs nobody.
"""
from autoremedy.collection.loggraph import ERRORS

REQUESTS = ("request", "global-request")
INFRA = ("service", "host")


def seeds(graph, lines, event_ids=(), warnings=False):
    """{id: why} — the event's ids found in the window, and ids on error lines."""
    serious = {e.upper() for e in ERRORS} | ({"WARNING"} if warnings else set())
    found = {}
    for ident in event_ids:
        if ident in graph.nodes:
            found[ident] = "event"
    for row in lines:
        if (row.level or "").upper() in serious:
            for ident in row.ids:
                found.setdefault(ident, "error line")
    return found


def neighbours(graph):
    """id -> ids that share a line with it (services and hosts excluded)."""
    out = {}
    for (a, b) in graph.edges:
        if a.startswith(("service:", "host:")) or b.startswith(("service:", "host:")):
            continue
        out.setdefault(a, set()).add(b)
        out.setdefault(b, set()).add(a)
    return out


def walk(graph, start, hops=2):
    """{id: distance} of the ids within ``hops`` of ``start``."""
    near = neighbours(graph)
    reached = {ident: 0 for ident in start}
    frontier = list(start)
    for step in range(1, hops + 1):
        nxt = []
        for ident in frontier:
            for other in near.get(ident, ()):
                if other not in reached:
                    reached[other] = step
                    nxt.append(other)
        frontier = nxt
    return reached


def focus(graph, lines, event_ids=(), hops=2, warnings=False):
    """What to draw and what to summarise.

    Returns {"seeds": {id: why}, "ids": {id: distance}, "services": set,
    "hosts": set, "error_services": set, "unlinked": {kind: count},
    "nothing": bool}."""
    chosen = seeds(graph, lines, event_ids, warnings)
    reached = walk(graph, chosen, hops) if chosen else {}
    serious = {e.upper() for e in ERRORS} | ({"WARNING"} if warnings else set())
    services, hosts, error_services = set(), set(), set()
    for row in lines:
        error = (row.level or "").upper() in serious
        if error:
            error_services.add(row.service)
        if error or any(i in reached for i in row.ids):
            services.add(row.service)
            if row.host:
                hosts.add(row.host)
    unlinked = {}
    for ident, node in graph.nodes.items():
        if node["kind"] in INFRA or ident in reached:
            continue
        kind = "requests" if node["kind"] in REQUESTS else "ids"
        unlinked[kind] = unlinked.get(kind, 0) + 1
    return {"seeds": chosen, "ids": reached, "services": services, "hosts": hosts,
            "error_services": error_services, "unlinked": unlinked,
            "nothing": not chosen and not error_services}


def describe_unlinked(unlinked):
    parts = [f"{n} other {kind}" for kind, n in sorted(unlinked.items()) if n]
    return (", ".join(parts) + ", nothing linked") if parts else ""
