"""The services a real Nova needs around it, as one tiny loopback stub.

Run by tests/openstack/realnova.py as a process of its own::

    python novastub.py PORT STATE.json

- **Identity v3** (``POST /v3/auth/tokens``): a token and a catalog pointing at
  the real Nova and Placement of the harness and at this stub's image and
  network endpoints, so that openstacksdk reaches Nova through ``clouds.yaml``
  the documented way (auth_type v3password). The real-Keystone mode of the
  harness replaces this part by keystone itself.
- **Image v2**: one image, the only one the tests boot (Nova reads
  ``GET /v2/images/<id>`` and ``/v2/schemas/image`` at boot and rebuild).
- **Network v2.0**: empty lists (servers are booted with ``networks: none``;
  Nova still asks for ports, networks and extensions during an evacuation),
  except ``GET /v2.0/agents``: a **stub of Neutron's agents API** (there is no
  real Neutron here) for openstack-consistency's dead-agent finding. The agents
  are read from ``AGENTS.json`` at every request, so the harness changes them by
  rewriting that file (``RealNova.agents``); the fields and the ``alive``
  rule follow Neutron's API reference and server: ``alive`` is computed by the
  server, true while the agent's last ``heartbeat_timestamp`` is less than
  ``agent_down_time`` (Neutron's default 75 s) old. A ``running`` agent reports
  at every request (its heartbeat is "now"); a stopped one keeps its last.
  Filters: any field given as a query parameter (``?host=host-a``), as Neutron.
- **Stub-only control** (no OpenStack API): ``POST /_stub/agents/restart?host=H&binary=B``
  marks that agent running again, as a ``systemctl restart`` of it would
  (tests/openstack/fakebin.py's ``restart_hook`` POSTs there).

STATE.json: {"token": ..., "catalog": [...], "image_id": ..., "agents_file": ...}.
AGENTS.json: {"agent_down_time": 75, "agents": [{"id", "host", "binary", "agent_type",
"admin_state_up", "running", "heartbeat": epoch seconds}]}.
"""
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from realnova_wsgi import listening

STATE = {}
AGENTS_LOCK = threading.Lock()


def _stamp(epoch):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


def _read_agents():
    path = STATE.get("agents_file")
    if not path or not os.path.exists(path):
        return {"agents": []}
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _write_agents(data):
    path = STATE["agents_file"]
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    os.replace(path + ".tmp", path)


def agents(query):
    """Neutron's ``GET /v2.0/agents`` body for these query filters."""
    now = time.time()
    with AGENTS_LOCK:
        data = _read_agents()
    down_time = data.get("agent_down_time", 75)
    out = []
    for a in data["agents"]:
        beat = now if a.get("running", True) else a["heartbeat"]
        row = {"id": a["id"], "agent_type": a["agent_type"], "binary": a["binary"], "host": a["host"],
               "topic": "N/A", "admin_state_up": a.get("admin_state_up", True),
               "alive": now - beat < down_time, "availability_zone": None, "configurations": {},
               "created_at": _stamp(a.get("created", now - 3600)),
               "started_at": _stamp(a.get("started", now - 3600)),
               "heartbeat_timestamp": _stamp(beat), "description": None, "resources_synced": None}
        if all(str(row.get(key)).lower() == value.lower() for key, value in query.items()
               if key in row):
            out.append(row)
    return {"agents": out}


def restart_agent(query):
    with AGENTS_LOCK:
        data = _read_agents()
        hit = [a for a in data["agents"] if a["host"] == query.get("host") and a["binary"] == query.get("binary")]
        for a in hit:
            a.update(running=True, heartbeat=time.time(), started=time.time())
        _write_agents(data)
    return {"restarted": [a["id"] for a in hit], "resumed": []}


def image():
    return {"id": STATE["image_id"], "name": "cirros-stub", "status": "active",
            "visibility": "public", "protected": False, "disk_format": "raw",
            "container_format": "bare", "min_ram": 0, "min_disk": 0, "size": 1024,
            "virtual_size": 1024, "checksum": None, "os_hidden": False,
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "owner": "admin", "tags": [], "file": f"/v2/images/{STATE['image_id']}/file",
            "self": f"/v2/images/{STATE['image_id']}", "schema": "/v2/schemas/image"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):       # quiet: Nova logs its own calls
        pass

    def send(self, code, body=None, headers=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(code)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        url = urlsplit(self.path)
        if url.path.rstrip("/") == "/_stub/agents/restart":
            return self.send(200, restart_agent(dict(parse_qsl(url.query))))
        if urlsplit(self.path).path.rstrip("/") == "/identity/v3/auth/tokens":
            token = {"expires_at": "2099-01-01T00:00:00.000000Z",
                     "issued_at": "2026-01-01T00:00:00.000000Z",
                     "methods": ["password"],
                     "user": {"id": "admin", "name": "admin", "domain": {"id": "default", "name": "Default"}},
                     "project": {"id": "admin", "name": "admin", "domain": {"id": "default", "name": "Default"}},
                     "roles": [{"id": "admin", "name": "admin"}, {"id": "member", "name": "member"},
                               {"id": "reader", "name": "reader"}],
                     "catalog": STATE["catalog"]}
            return self.send(201, {"token": token}, {"X-Subject-Token": STATE["token"]})
        self.send(404, {"error": f"POST {self.path} not stubbed"})

    def do_GET(self):
        path = urlsplit(self.path).path.rstrip("/")
        if path in ("/identity", "/identity/v3"):
            url = f"http://{self.headers.get('Host')}/identity/v3/"
            return self.send(200, {"version": {"id": "v3.14", "status": "stable",
                                               "links": [{"rel": "self", "href": url}]}})
        if path.startswith("/image"):
            rest = path[len("/image"):]
            if rest == "/v2/schemas/image":
                # glanceclient keeps only the attributes its schema names
                return self.send(200, {"name": "image", "properties": {k: {} for k in image()},
                                       "additionalProperties": {"type": "string"}, "links": []})
            if rest == f"/v2/images/{STATE['image_id']}":
                return self.send(200, image())
            if rest == "/v2/images":
                return self.send(200, {"images": [image()]})
            return self.send(404, {"message": f"no image at {rest}"})
        if path.startswith("/network"):
            rest = path[len("/network"):]
            name = rest.rsplit("/", 1)[-1]
            if rest == "/v2.0/agents":
                return self.send(200, agents(dict(parse_qsl(urlsplit(self.path).query))))
            if rest in ("", "/v2.0"):
                return self.send(200, {"resources": []})
            return self.send(200, {name.replace("-", "_"): []})
        self.send(404, {"error": f"GET {self.path} not stubbed"})

    def do_PUT(self):
        self.send(404, {"error": "not stubbed"})

    do_DELETE = do_PATCH = do_PUT


def main():
    where, state = sys.argv[1], sys.argv[2]
    with open(state, encoding="utf-8") as handle:
        STATE.update(json.load(handle))
    server = listening(where, ThreadingHTTPServer, Handler)   # PORT or fd:N (realnova_wsgi.py)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
