"""What the rabbitmq-node remediation learns from the cluster before it acts.

Nothing here comes from the configuration alone: membership, who runs and the
partition map are what the members answer (``rabbitmqctl cluster_status``), the
queues at risk are what a running member lists (``GET /api/queues``, which —
unlike ``/api/overview``'s totals — includes queues whose home node is down,
``state: down``), and a node that cannot be asked is known by its own record
(``<mnesia>/cluster_nodes.config``) and by the check's last readings.

Measured on 3.10.8 (three throwaway disc nodes): ``forget_cluster_node`` on a
peer deletes every classic queue homed on the forgotten node cluster-wide and
removes it from the members of quorum queues; a fresh node re-added with
``rabbitmq-queues add_member`` gets the quorum queue's log from the others.
"""
import json
import os
import re
import time

from autoremedy.contract.guard import Refused

QUEUE_COLUMNS = ("vhost", "name", "type", "node", "members", "online", "leader", "messages",
                 "durable", "state")
REPLICATED = ("quorum", "stream")


def own_record(mnesia_path):
    """The node's own record of its cluster, ``{[All],[Disc]}.`` in
    ``cluster_nodes.config`` (rabbit writes it on every membership change):
    (all nodes, disc nodes), or None when there is none (a fresh node) or it
    cannot be parsed."""
    try:
        with open(os.path.join(mnesia_path, "cluster_nodes.config"), encoding="utf-8",
                  errors="replace") as handle:
            text = handle.read(65536)
    except OSError:
        return None
    match = re.fullmatch(r"\s*\{\s*\[(.*?)\]\s*,\s*\[(.*?)\]\s*\}\s*\.\s*", text, re.S)
    if not match:
        return None

    def atoms(part):
        return [a.strip().strip("'") for a in part.split(",") if a.strip()]
    return atoms(match.group(1)), atoms(match.group(2))


class Membership:
    """The cluster as its running members describe it."""

    def __init__(self, answers):
        self.answers = answers            # {asked node: cluster_status}
        first = next(iter(answers.values()))
        self.disc = set(first.get("disk_nodes") or [])
        self.ram = set(first.get("ram_nodes") or [])
        self.members = self.disc | self.ram
        self.running = set()
        self.partitions = {}
        self.listeners = {}
        for status in answers.values():
            self.running |= set(status.get("running_nodes") or [])
            for name, peers in (status.get("partitions") or {}).items():
                if peers:
                    self.partitions[name] = sorted(set(self.partitions.get(name, [])) | set(peers))
            self.listeners.update(status.get("listeners") or {})

    @property
    def source(self):
        return ", ".join(sorted(self.answers))

    def describe(self):
        return (f"members {', '.join(sorted(self.members))} (disc: {', '.join(sorted(self.disc))}); "
                f"running {', '.join(sorted(self.running)) or 'none'} — as {self.source} report")


def ask(ctl, node):
    """``cluster_status`` of one node, or (None, why)."""
    try:
        done = ctl("rabbitmqctl", "cluster_status", "--formatter", "json", node=node, timeout=30)
    except Exception as exc:                       # the CLI itself failed: not an answer
        return None, str(exc)
    if done.returncode != 0:
        return None, done.brief(120) or f"exit {done.returncode}"
    try:
        status = json.loads(done.stdout)
    except ValueError:
        return None, "no JSON"
    if not isinstance(status, dict) or not status.get("running_nodes"):
        return None, "no running_nodes"
    return status, None


def learn(ctl, target, candidates, include_target=False):
    """Ask the candidates (then every running member they name) for the
    cluster's state. Returns (Membership or None, {node: why it did not answer}).
    Members that disagree on who is a member refuse: one of them is wrong, and
    acting on either view could forget a live node."""
    answers, silent = {}, {}
    queue = [c for c in dict.fromkeys(candidates) if include_target or c != target]
    while queue:
        node = queue.pop(0)
        if node in answers or node in silent:
            continue
        status, why = ask(ctl, node)
        if status is None:
            silent[node] = why
            continue
        answers[node] = status
        for other in status.get("running_nodes") or []:
            if other not in answers and other not in silent and (include_target or other != target):
                queue.append(other)
    if not answers:
        return None, silent
    views = {node: tuple(sorted(set(s.get("disk_nodes") or []) | set(s.get("ram_nodes") or [])))
             for node, s in answers.items()}
    if len(set(views.values())) > 1:
        raise Refused("membership", "the members disagree on who is a member: " + "; ".join(
            f"{node} says {', '.join(view)}" for node, view in sorted(views.items())))
    return Membership(answers), silent


def api_of(membership, settings, exclude, make_api):
    """A management API of a running member other than ``exclude``, from the
    HTTP listeners the members report (``cluster_status`` lists them). The
    configured ``api_url`` is tried first when it is one of them. Returns
    (Api, node) or (None, why)."""
    from autoremedy.clients.rabbitmq import ApiError
    tried = []
    configured = make_api(settings.api_url)
    try:
        node = (configured.get("overview", columns="node") or {}).get("node")
        if node in membership.running and node != exclude:
            return configured, node
        tried.append(f"{settings.api_url} runs on {node}")
    except (ApiError, AttributeError) as exc:
        tried.append(f"{settings.api_url}: {exc}")
    for node in sorted(membership.running - {exclude}):
        for listener in membership.listeners.get(node, []):
            if listener.get("protocol") not in ("http", "https"):
                continue
            host = listener.get("interface") or ""
            if host in ("[::]", "::", "0.0.0.0", ""):
                host = node.split("@", 1)[-1]
            url = f"{listener['protocol']}://{host}:{listener.get('port')}"
            api = make_api(url)
            try:
                api.get("overview", columns="node")
                return api, node
            except ApiError as exc:
                tried.append(f"{url}: {exc}")
    return None, "; ".join(tried) or "no running member has an HTTP listener"


def list_queues(api, settle=10.0, sleep=time.sleep):
    """Every queue of the cluster: one listing, completed by the durable queues
    of ``GET /api/definitions`` it leaves out — measured: a quorum queue
    without a majority online (2-node cluster, one down) is missing from
    ``/api/queues``, and a reading without it could neither protect nor name
    it. Those come back as ``state: unlisted`` with no count. A quorum queue
    that has just lost its leader can read as 0 messages for a moment
    (measured twice right after a kill), so a listing where a replicated queue
    has no leader or no count is read again, for at most ``settle`` seconds."""
    deadline = time.monotonic() + settle
    while True:
        rows = [r for r in api.queues(columns=QUEUE_COLUMNS, totals_only=True) if isinstance(r, dict)]
        unsettled = [r for r in rows if r.get("type") in REPLICATED
                     and (not r.get("leader") or r.get("messages") is None)]
        if not unsettled or time.monotonic() >= deadline:
            break
        sleep(0.5)
    listed = {(r.get("vhost"), r.get("name")) for r in rows}
    for q in (api.definitions() or {}).get("queues", []):
        if (q.get("vhost"), q.get("name")) not in listed:
            kind = (q.get("arguments") or {}).get("x-queue-type") or "classic"
            rows.append({"vhost": q.get("vhost"), "name": q.get("name"), "type": kind,
                         "durable": q.get("durable", True), "state": "unlisted"})
    return rows


def key(vhost, name):
    """One queue's key in readings and outcomes."""
    return f"{vhost}/{name}" if vhost != "/" else f"/{name}"


def assess(rows, target, ledger, accepted, clock=time.time):
    """What a reset of ``target`` (its database moved aside, the node forgotten)
    would lose, queue by queue. Returns (at_risk, allowed, regrow): queues whose
    only copy is on the target and that are neither empty nor accepted; queues
    the run may change (empty or accepted ones homed on the target); replicated
    queues with a majority online elsewhere, whose replica on the target the
    run removes and adds back."""
    last = {(q.get("vhost"), q.get("name")): q for q in (ledger or {}).get("queues", [])}
    accepted = {(a.get("vhost", "/"), a["name"]) for a in accepted}
    at_risk, allowed, regrow = [], [], []
    for row in rows:
        ident = (row.get("vhost"), row.get("name"))
        kind = row.get("type") or "classic"
        entry = {"vhost": ident[0], "name": ident[1], "type": kind, "messages": row.get("messages")}
        if row.get("state") == "unlisted":
            # Not in the listing (no leader): whether the target holds it and how
            # many messages it has come from the last reading, else unknown.
            seen = last.get(ident)
            entry.update(messages=(seen or {}).get("messages"),
                         replicas="not listed: no majority online" if kind in REPLICATED else "not listed")
            if seen:
                at = seen.get("at") or (ledger or {}).get("at")
                entry["reading"] = "last reading" + (f" {max(0, clock() - at):.0f}s ago" if at else "")
            if ident in accepted:
                entry["why"] = "accepted in accept_queue_loss"
                allowed.append(entry)
            else:
                at_risk.append(entry)
            continue
        if kind in REPLICATED:
            members = row.get("members") or []
            if target not in members:
                continue
            elsewhere = [m for m in row.get("online") or [] if m != target]
            entry["replicas"] = f"{len(elsewhere)} of {len(members)} replicas online elsewhere"
            if len(elsewhere) * 2 > len(members):
                regrow.append(entry)
                continue
        else:
            if row.get("node") != target:
                continue
            if row.get("state") == "down" or entry["messages"] is None:
                seen = last.get(ident)
                entry["messages"] = seen.get("messages") if seen else None
                at = (seen or {}).get("at") or (ledger or {}).get("at")
                entry["reading"] = ("no reading" if not seen else "last reading"
                                    + (f" {max(0, clock() - at):.0f}s ago" if at else ""))
            if entry["messages"] == 0:
                entry["why"] = "empty"
                allowed.append(entry)
                continue
        if ident in accepted:
            entry["why"] = "accepted in accept_queue_loss"
            allowed.append(entry)
        else:
            at_risk.append(entry)
    return at_risk, allowed, regrow


def describe(entry):
    count = entry.get("messages")
    text = f"{entry['type']} queue {entry['name']!r} in vhost {entry['vhost']!r} ("
    text += "messages unknown" if count is None else f"{count} messages"
    if entry.get("reading"):
        text += f" at the {entry['reading']}" if count is not None else f", {entry['reading']}"
    if entry.get("replicas"):
        text += f"; {entry['replicas']}"
    return text + ")"


def standalone_rows(baseline, ledger, target):
    """The queues of a single node that cannot be asked: the baseline's
    definitions and the check's last readings (every queue is homed on it)."""
    rows = {}
    for q in (baseline or {}).get("queues", []):
        kind = ((q.get("arguments") or {}).get("x-queue-type") or "classic")
        rows[(q.get("vhost"), q.get("name"))] = {
            "vhost": q.get("vhost"), "name": q.get("name"), "type": kind, "node": target,
            "members": [target] if kind in REPLICATED else [], "online": [], "state": "down"}
    for q in (ledger or {}).get("queues", []):
        ident = (q.get("vhost"), q.get("name"))
        rows.setdefault(ident, {"vhost": ident[0], "name": ident[1], "type": q.get("type"),
                                "node": target, "members": q.get("members") or [], "online": [],
                                "state": "down"})
    return list(rows.values())


# --- definitions: what vanished, restored without touching what did not ------------------

KINDS = {
    "vhosts": ("name",),
    "users": ("name",),
    "permissions": ("user", "vhost"),
    "topic_permissions": ("user", "vhost", "exchange"),
    "policies": ("vhost", "name"),
    "parameters": ("vhost", "component", "name"),
    "queues": ("vhost", "name"),
    "exchanges": ("vhost", "name"),
    "bindings": ("vhost", "source", "destination", "destination_type", "routing_key", "arguments"),
}


def definition_keys(definitions):
    """{"<kind> <identity>": object} for every object of a definitions export."""
    out = {}
    for kind, fields in KINDS.items():
        for obj in (definitions or {}).get(kind, []) or []:
            if isinstance(obj, dict):
                ident = [obj.get(f) for f in fields]
                out[f"{kind[:-1]} {json.dumps(ident, sort_keys=True)}"] = obj
    return out


def missing_definitions(baseline, live):
    """The baseline's objects that are not live, as an importable document, and
    their keys. Only these are imported: a whole-baseline import would also
    overwrite what changed since the baseline (a policy, a password)."""
    have = definition_keys(live)
    doc, names = {}, []
    for kind, fields in KINDS.items():
        for obj in (baseline or {}).get(kind, []) or []:
            if not isinstance(obj, dict):
                continue
            ident = f"{kind[:-1]} {json.dumps([obj.get(f) for f in fields], sort_keys=True)}"
            if ident not in have:
                doc.setdefault(kind, []).append(obj)
                names.append(ident)
    return doc, names
