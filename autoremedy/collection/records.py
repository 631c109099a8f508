"""What the cloud's database says about the ids in an incident, and where it
disagrees with the logs.

For each instance, port, volume and request id the focused graph holds, the
cloud's APIs (openstacksdk; never the database directly) are asked:

- server: status, vm/task/power state, host, fault; its instance actions with
  their events (each action carries the request id that ties it to the log
  lines) and its migrations;
- port: status, binding host, device;
- volume: status and attachments.

Then the records are compared with the logs, one rule per disagreement (each
names both sides so a human can judge):

- **host**: nova-compute lines on host A mention the instance, Nova says its
  host is B;
- **error hidden**: Nova says ERROR (with its fault) and no error line in the
  window mentions the instance — or the reverse: error lines for the instance,
  Nova says ACTIVE with no task and no fault;
- **action**: an instance action failed (an event's result is Error) for a
  request whose lines show no error — or the request's lines show errors and
  every event of its action succeeded;
- **port**: the port is DOWN while its instance is ACTIVE, or bound to another
  host than the instance's;
- **volume**: the volume is in an error state, or attached to a server the
  records do not show it on.

Bounded: at most ``max_records`` ids are fetched (instances first), a few
calls each, one connection.
"""
import time

KINDS = ("instance", "port", "volume", "resource")
ACTIVE = "ACTIVE"


def _plain(resource, fields):
    out = {}
    for field in fields:
        value = getattr(resource, field, None)
        if value is not None:
            out[field] = value if isinstance(value, (str, int, float, bool, list, dict)) else str(value)
    return out


def _not_found(exc):
    return type(exc).__name__ in ("NotFoundException", "ResourceNotFound") or \
        getattr(exc, "status_code", None) == 404


class Fetcher:
    """The API calls, through one openstacksdk connection (``conn``)."""

    def __init__(self, conn):
        self.conn = conn
        self.calls = 0

    def _call(self, fn, *args, **kw):
        self.calls += 1
        return fn(*args, **kw)

    def server(self, ident):
        try:
            srv = self._call(self.conn.compute.get_server, ident)
        except Exception as exc:
            if _not_found(exc):
                return None
            raise
        record = _plain(srv, ("id", "name", "status", "vm_state", "task_state", "power_state",
                              "compute_host", "updated_at", "fault"))
        actions = []
        for action in self._call(self.conn.compute.server_actions, ident):
            row = _plain(action, ("action", "request_id", "start_time", "message", "user_id"))
            try:
                detail = self._call(self.conn.compute.get_server_action, action.request_id, ident)
                row["events"] = [e if isinstance(e, dict) else _plain(e, ("event", "start_time",
                                 "finish_time", "result", "host"))
                                 for e in (getattr(detail, "events", None) or [])]
            except Exception as exc:           # one action's detail missing: keep the rest
                row["events_error"] = str(exc)[:200]
            actions.append(row)
        record["actions"] = actions
        try:
            migrations = self._call(self.conn.compute.migrations, instance_uuid=ident)
            record["migrations"] = [_plain(m, ("id", "migration_type", "status", "source_compute",
                                               "dest_compute", "created_at", "updated_at"))
                                    for m in migrations]
        except Exception as exc:
            record["migrations_error"] = str(exc)[:200]
        return record

    def port(self, ident):
        try:
            port = self._call(self.conn.network.get_port, ident)
        except Exception as exc:
            if _not_found(exc):
                return None
            raise
        return _plain(port, ("id", "status", "binding_host_id", "device_id", "device_owner",
                             "network_id"))

    def volume(self, ident):
        try:
            vol = self._call(self.conn.block_storage.get_volume, ident)
        except Exception as exc:
            if _not_found(exc):
                return None
            raise
        record = _plain(vol, ("id", "status", "attachments"))
        record["attachments"] = [a if isinstance(a, dict) else dict(a)
                                 for a in record.get("attachments") or []]
        return record


def fetch(fetcher, ids, max_records=50):
    """{id: {"kind", "record"} | {"kind", "error"}} for the ids of the graph
    ({id: kind}); an untyped UUID is tried as a server, a port, then a volume."""
    order = sorted(ids.items(), key=lambda kv: (KINDS.index(kv[1]) if kv[1] in KINDS else 9, kv[0]))
    out = {}
    tried = 0
    for ident, kind in order:
        if kind not in KINDS:
            continue
        if tried >= max_records:
            break
        tried += 1
        tries = {"instance": ("server",), "port": ("port",), "volume": ("volume",),
                 "resource": ("server", "port", "volume")}[kind]
        for what in tries:
            try:
                record = getattr(fetcher, what)(ident)
            except Exception as exc:
                out[ident] = {"kind": what, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
                break
            if record is not None:
                out[ident] = {"kind": what, "record": record}
                break
    return out


def disagreements(records, lines, compute_services=("nova-compute",)):
    """[{"id", "rule", "text"}]: where the records and the log lines disagree.
    ``lines``: rows with .service, .host, .ts, .level and .ids."""
    mentions = {}
    for row in lines:
        for ident in row.ids:
            mentions.setdefault(ident, []).append(row)
    out = []
    servers = {i: r["record"] for i, r in records.items() if r.get("kind") == "server" and "record" in r}
    for ident, rec in servers.items():
        rows = mentions.get(ident, [])
        compute_hosts = sorted({r.host for r in rows if _service(r.service) in compute_services and r.host})
        host = rec.get("compute_host")
        if compute_hosts and host and host not in compute_hosts:
            out.append({"id": ident, "rule": "host", "text":
                        f"nova-compute on {', '.join(compute_hosts)} logs about instance {ident}; "
                        f"Nova says its host is {host}"})
        errors = [r for r in rows if _is_error(r)]
        status = rec.get("status")
        if status == "ERROR" and not errors:
            fault = (rec.get("fault") or {}).get("message") if isinstance(rec.get("fault"), dict) else None
            out.append({"id": ident, "rule": "error hidden", "text":
                        f"Nova says instance {ident} is ERROR"
                        + (f" ({fault})" if fault else "") + "; no error line in the window mentions it"})
        if errors and status == ACTIVE and not rec.get("task_state") and not rec.get("fault"):
            out.append({"id": ident, "rule": "error hidden", "text":
                        f"{len(errors)} error line(s) mention instance {ident}; Nova says ACTIVE "
                        "with no task and no fault"})
        for action in rec.get("actions") or []:
            req = action.get("request_id")
            if not req or req not in mentions:
                continue
            failed = [e for e in action.get("events") or [] if str(e.get("result", "")).lower() == "error"]
            req_errors = [r for r in mentions[req] if _is_error(r)]
            if failed and not req_errors:
                out.append({"id": req, "rule": "action", "text":
                            f"Nova's {action.get('action')} action of {ident} ({req}) failed "
                            f"({failed[0].get('event')}); its log lines show no error"})
            elif req_errors and action.get("events") and not failed:
                out.append({"id": req, "rule": "action", "text":
                            f"{len(req_errors)} error line(s) of {req}; Nova's {action.get('action')} "
                            f"action of {ident} shows every event succeeded"})
    for ident, entry in records.items():
        rec = entry.get("record") or {}
        if entry.get("kind") == "port":
            owner = servers.get(rec.get("device_id"))
            if owner and owner.get("status") == ACTIVE and rec.get("status") == "DOWN":
                out.append({"id": ident, "rule": "port", "text":
                            f"port {ident} is DOWN while its instance {rec['device_id']} is ACTIVE"})
            if owner and rec.get("binding_host_id") and owner.get("compute_host") and \
                    rec["binding_host_id"] != owner["compute_host"]:
                out.append({"id": ident, "rule": "port", "text":
                            f"port {ident} is bound to {rec['binding_host_id']}; its instance "
                            f"runs on {owner['compute_host']}"})
        if entry.get("kind") == "volume":
            if str(rec.get("status", "")).startswith("error"):
                out.append({"id": ident, "rule": "volume", "text":
                            f"volume {ident} is {rec['status']}"})
            for attachment in rec.get("attachments") or []:
                server = attachment.get("server_id")
                if server in servers and servers[server].get("status") == "DELETED":
                    out.append({"id": ident, "rule": "volume", "text":
                                f"volume {ident} is attached to deleted server {server}"})
    return out


def _service(name):
    """The service of a source: logs of one service shipped from several hosts to one
    place are sources named ``service@host`` (``nova-compute@cmp1``)."""
    return name.split("@", 1)[0]


def _is_error(row):
    return (row.level or "").upper() in ("ERROR", "CRITICAL", "FATAL", "TRACE")


def stamp():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
