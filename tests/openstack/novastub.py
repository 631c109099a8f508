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
  Nova still asks for ports, networks and extensions during an evacuation).

STATE.json: {"token": ..., "catalog": [...], "image_id": ...}.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from realnova_wsgi import listening

STATE = {}


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
