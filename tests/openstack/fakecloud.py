"""A small OpenStack (and Sensu keepalive API) on loopback that openstacksdk really talks to.

What it answers is what openstacksdk 4.22 / keystoneauth1 5.18 were measured to
need (Identity v3 https://docs.openstack.org/api-ref/identity/v3/, Compute
https://docs.openstack.org/api-ref/compute/): a Keystone v3
token (201, X-Subject-Token, expires_at, catalog with regions), a Nova version
document with microversions (the SDK negotiates from it), os-services (new PUT
route at >= 2.53 and the legacy ones), servers, actions, hypervisors,
migrations; Neutron agents and ports; Cinder volumes; and the Sensu Go
``/api/core/v2/namespaces/<ns>/events/<entity>/keepalive`` route with
``Authorization: Key <key>``. For openstack-consistency: instance actions with
their events (``os-instance-actions``), a server's ``fault`` in ERROR,
``os-migrations?host=`` and, at ``/api/queues/<vhost>/<name>``, a RabbitMQ
management API answering for the computes' RPC queues (``queues``: {name:
{"consumers", "messages"}}; a compute added alive gets ``compute.<host>`` with one
consumer).

Nova's documented rules and error codes are reproduced (nova/api/openstack/compute
evacuate.py and schemas/evacuate.py):

- evacuate body by microversion: < 2.14 ``onSharedStorage`` required; >= 2.14 it
  is rejected (400); ``force`` only in 2.29-2.67 (400 otherwise);
- the source compute service still up -> 400 ComputeServiceInUse (Nova maps that
  exception to 400, not 409); vm_state not active/stopped/error or a task_state
  set -> 409 InstanceInvalidState; unknown target host -> 404; same host -> 400;
- un-forcing a service while ``done`` evacuation migrations remain -> 400;
- os-stop on a stopped server, os-start on an active one -> 409.

An accepted evacuation completes in the background after ``evacuate_seconds``:
the VM lands on an up, enabled compute with room (or the requested host), in
its original state (below 2.95) or stopped (2.95 and later), and its migration
becomes ``done``; servers in ``fail_evacuation`` end in ERROR on the source.
``delay`` slows every Nova call (the benchmark's 200 ms); ``max_in_flight``
records the most concurrent Nova calls seen.

A nova-compute restart (``restart_compute(host)``, also ``POST
/_fake/nova-compute/<host>/restart``, which fakebin's ``systemctl restart
<unit>`` calls when told to) does what nova-compute's ``_init_instance``
(nova/compute/manager.py) does for an instance of its host left in task_state
``deleting``: it resumes the delete (the record is saved at once, ``updated``
now) and, ``delete_seconds`` later, the instance is deleted (gone from every
listing); ids in ``hang_deletes`` never finish. ``on_compute_restart``
(callback(host)) lets a test make a restart do more than that.
"""
import copy
import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

MAX_MICROVERSION = "2.95"
TOKEN = "fake-token-0123456789"
PROJECT = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"

STATUS = {"active": "ACTIVE", "stopped": "SHUTOFF", "error": "ERROR", "building": "BUILD",
          "paused": "PAUSED", "suspended": "SUSPENDED", "deleted": "DELETED"}
POWER = {"active": 1, "stopped": 4, "error": 0, "building": 0, "paused": 3, "suspended": 7}


def mv(text):
    major, minor = str(text).split(".")
    return int(major), int(minor)


class HTTPError(Exception):
    def __init__(self, code, message, kind=None):
        super().__init__(message)
        self.code, self.message = code, message
        self.kind = kind or {400: "badRequest", 401: "unauthorized", 404: "itemNotFound",
                             406: "notAcceptable", 409: "conflictingRequest"}.get(code, "error")


class Cloud:
    """The state of the fake cloud. Tests build it, then mutate it directly."""

    def __init__(self, max_microversion=MAX_MICROVERSION, delay=0.0, evacuate_seconds=0.05):
        self.lock = threading.RLock()
        self.max_microversion = max_microversion
        self.delay = delay
        self.evacuate_seconds = evacuate_seconds
        self.services, self.hosts, self.servers = {}, {}, {}
        self.migrations, self.agents, self.ports, self.volumes = [], [], [], []
        self.hide_migration_hosts = False
        self.sensu_events, self.sensu_key = {}, "sensu-key-xyz"
        self.fail_evacuation = set()
        self.on_evacuate = None        # callback(server_id) after an evacuation is accepted
        self.delete_seconds = 0.3      # a delete resumed by a nova-compute restart takes this long
        self.hang_deletes = set()      # ids whose resumed delete never finishes
        self.on_compute_restart = None  # callback(host) after a nova-compute restart
        self.compute_restarts = []     # hosts, one per restart
        self.requests = []             # (method, path, microversion, body)
        self.in_flight = self.max_in_flight = 0
        self.evacuations_in_flight = self.max_evacuations_in_flight = 0
        self.port = None
        self.catalog = ("compute", "network", "block-storage")   # drop one to fake a smaller cloud
        self.queues = {}               # RabbitMQ: "compute.<host>" -> {"consumers", "messages"}

    # -- building ------------------------------------------------------------------
    def add_compute(self, host, alive=True, enabled=True, vcpus=64, memory_mb=262144):
        sid = str(uuid.uuid4())
        with self.lock:
            self.services[sid] = {"id": sid, "binary": "nova-compute", "host": host, "zone": "nova",
                                  "status": "enabled" if enabled else "disabled",
                                  "disabled_reason": None, "forced_down": False,
                                  "updated_at": "2026-01-01T00:00:00.000000"}
            self.hosts[host] = {"alive": alive, "vcpus": vcpus, "memory_mb": memory_mb}
            self.queues[f"compute.{host}"] = {"consumers": 1 if alive else 0, "messages": 0}
        return sid

    def add_server(self, host, vm_state="active", task_state=None, name=None, vcpus=2, ram=4096,
                   locked=False, updated=None, sid=None):
        sid = sid or str(uuid.uuid4())
        with self.lock:
            index = len(self.servers) + 1
            self.servers[sid] = {
                "id": sid, "name": name or f"vm-{index}", "vm_state": vm_state,
                "task_state": task_state, "host": host, "node": f"{host}.example",
                "instance_name": f"instance-{index:08x}", "tenant_id": PROJECT,
                "user_id": "u1", "flavor": {"vcpus": vcpus, "ram": ram, "disk": 20,
                                            "original_name": f"m1.{vcpus}"},
                "locked": locked, "locked_reason": None, "metadata": {},
                "updated": updated or "2026-01-01T00:00:00Z", "created": "2026-01-01T00:00:00Z",
                "actions": [], "fault": None,
            }
        return sid

    def add_action(self, sid, action, start, events=()):
        """Record an instance action (newest last): ``events`` are (name, start, finish)."""
        with self.lock:
            self.servers[sid]["actions"].append({
                "action": action, "request_id": f"req-{uuid.uuid4()}", "instance_uuid": sid,
                "start_time": start, "user_id": "u1", "project_id": PROJECT, "message": None,
                "events": [{"event": name, "start_time": begun, "finish_time": finished,
                            "result": "Success" if finished else None, "traceback": None}
                           for name, begun, finished in events]})

    def service_of(self, host, binary="nova-compute"):
        for svc in self.services.values():
            if svc["host"] == host and svc["binary"] == binary:
                return svc
        return None

    def service_up(self, svc):
        return not svc["forced_down"] and self.hosts.get(svc["host"], {}).get("alive", True)

    def on_host(self, host):
        return [s for s in self.servers.values() if s["host"] == host]

    def calls(self, method=None, contains=""):
        return [r for r in self.requests if (method is None or r[0] == method) and contains in r[1]]

    # -- representations -------------------------------------------------------------
    def service_view(self, svc):
        out = {k: svc[k] for k in ("id", "binary", "host", "zone", "status", "disabled_reason",
                                   "forced_down", "updated_at")}
        out["state"] = "up" if self.service_up(svc) else "down"
        return out

    def server_view(self, srv):
        status = STATUS.get(srv["vm_state"], "UNKNOWN")
        if srv["task_state"] in ("rebuilding", "rebuild_spawning", "rebuild_block_device_mapping"):
            status = "REBUILD"
        return {
            "id": srv["id"], "name": srv["name"], "status": status, "tenant_id": srv["tenant_id"],
            "user_id": srv["user_id"], "flavor": srv["flavor"], "metadata": srv["metadata"],
            "OS-EXT-SRV-ATTR:host": srv["host"],
            "OS-EXT-SRV-ATTR:hypervisor_hostname": srv["node"],
            "OS-EXT-SRV-ATTR:instance_name": srv["instance_name"],
            "OS-EXT-STS:vm_state": srv["vm_state"], "OS-EXT-STS:task_state": srv["task_state"],
            "OS-EXT-STS:power_state": POWER.get(srv["vm_state"], 0),
            "locked": srv["locked"], "locked_reason": srv["locked_reason"],
            "updated": srv["updated"], "created": srv["created"],
            **({"fault": srv["fault"]} if srv.get("fault") else {}),
            "links": [], "addresses": {}, "image": "", "security_groups": [],
        }

    def hypervisor_view(self, host, microversion):
        svc = self.service_of(host)
        used = [s for s in self.on_host(host)]
        out = {"id": svc["id"], "hypervisor_hostname": f"{host}.example", "host_ip": "127.0.0.1",
               "hypervisor_type": "QEMU", "state": "up" if self.service_up(svc) else "down",
               "status": svc["status"], "service": {"host": host, "id": svc["id"],
                                                    "disabled_reason": svc["disabled_reason"]}}
        if microversion < (2, 88):
            h = self.hosts[host]
            out.update({"vcpus": h["vcpus"], "memory_mb": h["memory_mb"],
                        "vcpus_used": sum(s["flavor"]["vcpus"] for s in used),
                        "memory_mb_used": sum(s["flavor"]["ram"] for s in used),
                        "running_vms": len(used), "local_gb": 1000, "local_gb_used": 0})
        return out

    # -- Nova actions --------------------------------------------------------------------
    def evacuate(self, srv, body, microversion):
        allowed = {"host", "adminPass"}
        if microversion < (2, 14):
            allowed.add("onSharedStorage")
            if "onSharedStorage" not in body:
                raise HTTPError(400, "Invalid input for field/attribute evacuate. "
                                "Value: {}. 'onSharedStorage' is a required property")
        if (2, 29) <= microversion < (2, 68):
            allowed.add("force")
        extra = sorted(set(body) - allowed)
        if extra:
            raise HTTPError(400, "Invalid input for field/attribute evacuate. Additional "
                            f"properties are not allowed ({', '.join(map(repr, extra))} "
                            "were unexpected)")
        target = body.get("host")
        if target is not None:
            if self.service_of(target) is None:
                raise HTTPError(404, f"Compute host {target} not found.")
            if target == srv["host"]:
                raise HTTPError(400, "The target host can't be the same one.")
        if srv["vm_state"] not in ("active", "stopped", "error") or srv["task_state"] is not None:
            raise HTTPError(409, f"Cannot 'evacuate' instance {srv['id']} while it is in "
                            f"vm_state {srv['vm_state']}, task_state {srv['task_state']}")
        source = self.service_of(srv["host"])
        if source is not None and self.service_up(source):
            raise HTTPError(400, f"Compute service of {srv['host']} is still in use.")
        migration = {"id": len(self.migrations) + 1, "instance_uuid": srv["id"],
                     "source_compute": srv["host"], "dest_compute": target, "status": "accepted",
                     "migration_type": "evacuation", "created_at": "2026-01-01T00:00:00.000000",
                     "updated_at": None}
        self.migrations.append(migration)
        original = srv["vm_state"]
        srv["task_state"] = "rebuilding"
        self.evacuations_in_flight += 1
        self.max_evacuations_in_flight = max(self.max_evacuations_in_flight, self.evacuations_in_flight)
        timer = threading.Timer(self.evacuate_seconds, self._land,
                                (srv["id"], original, target, migration, microversion))
        timer.daemon = True
        timer.start()
        if self.on_evacuate:
            self.on_evacuate(srv["id"])

    def _schedule(self, srv, source):
        need_cpu, need_ram = srv["flavor"]["vcpus"], srv["flavor"]["ram"]
        best = None
        for svc in self.services.values():
            host = svc["host"]
            if host == source or svc["binary"] != "nova-compute":
                continue
            if svc["status"] != "enabled" or not self.service_up(svc):
                continue
            used = self.on_host(host)
            free_cpu = self.hosts[host]["vcpus"] - sum(s["flavor"]["vcpus"] for s in used)
            free_ram = self.hosts[host]["memory_mb"] - sum(s["flavor"]["ram"] for s in used)
            if free_cpu >= need_cpu and free_ram >= need_ram and (best is None or free_cpu > best[0]):
                best = (free_cpu, host)
        return best[1] if best else None

    def _land(self, sid, original, target, migration, microversion):
        with self.lock:
            self.evacuations_in_flight -= 1
            srv = self.servers.get(sid)
            if srv is None:
                return
            source = srv["host"]
            dest = target or self._schedule(srv, source)
            srv["task_state"] = None
            if sid in self.fail_evacuation or dest is None:
                srv["vm_state"] = "error"
                migration["status"] = "error"
                return
            srv["host"], srv["node"] = dest, f"{dest}.example"
            if microversion >= (2, 95):
                srv["vm_state"] = "stopped"
            else:
                srv["vm_state"] = "stopped" if original == "stopped" else "active"
            migration["dest_compute"], migration["status"] = dest, "done"

    def action(self, sid, body, microversion):
        srv = self.servers.get(sid)
        if srv is None:
            raise HTTPError(404, f"Instance {sid} could not be found.")
        if not isinstance(body, dict) or len(body) != 1:
            raise HTTPError(400, "Malformed request body")
        (name, arg), = body.items()
        if name == "evacuate":
            self.evacuate(srv, arg or {}, microversion)
            return None if microversion >= (2, 14) else {}
        if name == "os-resetState":
            state = (arg or {}).get("state")
            if state not in ("active", "error"):
                raise HTTPError(400, f"Invalid input for field/attribute state. Value: {state}.")
            srv["vm_state"], srv["task_state"] = state, None
            return None
        if name == "lock":
            srv["locked"] = True
            srv["locked_reason"] = (arg or {}).get("locked_reason")
            return None
        if name == "unlock":
            srv["locked"], srv["locked_reason"] = False, None
            return None
        if name == "os-stop":
            if srv["vm_state"] not in ("active", "error") or srv["task_state"]:
                raise HTTPError(409, f"Cannot 'stop' instance {sid} while it is in vm_state "
                                f"{srv['vm_state']}")
            srv["vm_state"] = "stopped"
            return None
        if name == "os-start":
            if srv["vm_state"] != "stopped" or srv["task_state"]:
                raise HTTPError(409, f"Cannot 'start' instance {sid} while it is in vm_state "
                                f"{srv['vm_state']}")
            srv["vm_state"] = "active"
            return None
        raise HTTPError(400, f"unsupported action {name}")

    def restart_compute(self, host):
        """nova-compute of ``host`` restarts: ``_init_instance`` resumes every delete left in
        task_state 'deleting' on the host. Returns the ids whose delete was resumed."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self.lock:
            self.compute_restarts.append(host)
            resumed = [s["id"] for s in self.on_host(host)
                       if s["task_state"] == "deleting" and s["vm_state"] != "deleted"]
            for sid in resumed:
                self.servers[sid]["updated"] = now
                if sid in self.hang_deletes:
                    continue
                timer = threading.Timer(self.delete_seconds, self._deleted, (sid,))
                timer.daemon = True
                timer.start()
        if self.on_compute_restart:
            self.on_compute_restart(host)
        return resumed

    def _deleted(self, sid):
        with self.lock:
            srv = self.servers.get(sid)
            if srv is not None and srv["task_state"] == "deleting":
                srv["vm_state"], srv["task_state"] = "deleted", None

    def update_service(self, svc, body):
        if "forced_down" in body:
            if body["forced_down"] is False and svc["forced_down"]:
                done = [m for m in self.migrations if m["source_compute"] == svc["host"]
                        and m["status"] == "done" and m["migration_type"] == "evacuation"]
                if done:
                    raise HTTPError(400, f"Service {svc['id']} cannot be unset forced_down "
                                    "while there are evacuated instances still present on it")
            svc["forced_down"] = bool(body["forced_down"])
        if "disabled_reason" in body and body.get("status") != "disabled":
            # nova/api/openstack/compute/services.py (2.53+): a reason only with status=disabled
            raise HTTPError(400, "Specifying 'disabled_reason' with status 'enabled' is invalid.")
        if "status" in body:
            if body["status"] not in ("enabled", "disabled"):
                raise HTTPError(400, "Invalid input for field/attribute status.")
            svc["status"] = body["status"]
            svc["disabled_reason"] = body.get("disabled_reason") if body["status"] == "disabled" else None
        return svc


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    cloud = None  # set per server

    def log_message(self, *args):
        pass

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def do_PUT(self):
        self._serve("PUT")

    def do_DELETE(self):
        self._serve("DELETE")

    # -- plumbing ----------------------------------------------------------------------
    def _serve(self, method):
        cloud = self.cloud
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return self._send(400, {"badRequest": {"code": 400, "message": "Malformed JSON"}})
        nova = url.path.startswith("/compute/")
        if nova:
            with cloud.lock:
                cloud.in_flight += 1
                cloud.max_in_flight = max(cloud.max_in_flight, cloud.in_flight)
        try:
            if nova and cloud.delay:
                time.sleep(cloud.delay)
            microversion = self._microversion() if nova else None
            with cloud.lock:
                cloud.requests.append((method, self.path, microversion, body))
                status, payload, headers = self._route(method, url.path, query, body, microversion)
        except HTTPError as exc:
            status, payload, headers = exc.code, {exc.kind: {"code": exc.code, "message": exc.message}}, {}
        finally:
            if nova:
                with cloud.lock:
                    cloud.in_flight -= 1
        self._send(status, payload, headers, microversion)

    def _microversion(self):
        header = self.headers.get("OpenStack-API-Version") or ""
        match = re.match(r"\s*compute\s+(\d+\.\d+)", header)
        value = match.group(1) if match else self.headers.get("X-OpenStack-Nova-API-Version") or "2.1"
        if value == "latest":
            value = self.cloud.max_microversion
        if not (mv("2.1") <= mv(value) <= mv(self.cloud.max_microversion)):
            raise HTTPError(406, f"Version {value} is not supported by the API. Minimum is 2.1 "
                            f"and maximum is {self.cloud.max_microversion}.")
        return mv(value)

    def _send(self, status, payload, headers=None, microversion=None):
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if microversion:
            self.send_header("OpenStack-API-Version", "compute %d.%d" % microversion)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _base(self):
        return f"http://127.0.0.1:{self.cloud.port}"

    # -- routes --------------------------------------------------------------------------
    def _route(self, method, path, query, body, microversion):
        if path.startswith("/api/core/v2/"):
            return self._sensu(path)
        if path.startswith("/api/queues/"):
            return self._rabbitmq(path)
        match = re.fullmatch(r"/_fake/nova-compute/([^/]+)/restart", path)
        if match and method == "POST":      # the test double's own hook (fakebin systemctl)
            return 200, {"resumed": self.cloud.restart_compute(match.group(1))}, {}
        if path == "/v3/auth/tokens" and method == "POST":
            return 201, self._token(), {"X-Subject-Token": TOKEN}
        if self.headers.get("X-Auth-Token") != TOKEN and not path.rstrip("/").endswith(("/compute", "/v2.1")):
            raise HTTPError(401, "The request you have made requires authentication.")
        if path.startswith("/compute/"):
            return self._nova(method, path[len("/compute"):], query, body, microversion)
        if path.startswith("/network/"):
            return self._neutron(method, path[len("/network"):], query)
        if path.startswith("/volume/"):
            return self._cinder(method, path[len("/volume"):], query)
        raise HTTPError(404, f"no route {path}")

    def _token(self):
        base = self._base()
        catalog = []
        for kind, name, url in (("compute", "nova", f"{base}/compute/v2.1"),
                                ("network", "neutron", f"{base}/network"),
                                ("block-storage", "cinder", f"{base}/volume/v3/{PROJECT}")):
            if kind not in self.cloud.catalog:
                continue
            catalog.append({"type": kind, "name": name, "id": name, "endpoints": [
                {"interface": iface, "url": url, "region": "RegionOne", "region_id": "RegionOne",
                 "id": f"{name}-{iface}"} for iface in ("public", "internal", "admin")]})
        return {"token": {"expires_at": "2099-01-01T00:00:00.000000Z", "methods": ["password"],
                          "issued_at": "2026-01-01T00:00:00.000000Z",
                          "user": {"id": "u-admin", "name": "admin", "domain": {"id": "default"}},
                          "project": {"id": PROJECT, "name": "admin", "domain": {"id": "default"}},
                          "roles": [{"id": "r1", "name": "admin"}], "catalog": catalog}}

    def _nova(self, method, path, query, body, microversion):
        cloud = self.cloud
        if path.rstrip("/") in ("", "/v2.1"):
            return 200, {"version": {"id": "v2.1", "status": "CURRENT",
                                     "version": cloud.max_microversion, "min_version": "2.1",
                                     "updated": "2013-07-23T11:33:21Z",
                                     "links": [{"rel": "self", "href": f"{self._base()}/compute/v2.1/"}]}}, {}
        path = path[len("/v2.1"):]
        if path == "/os-services" and method == "GET":
            found = [cloud.service_view(s) for s in cloud.services.values()
                     if query.get("binary") in (None, s["binary"]) and query.get("host") in (None, s["host"])]
            return 200, {"services": found}, {}
        if path.startswith("/os-services/") and method == "PUT":
            return self._service_put(path.split("/")[-1], body or {}, microversion)
        if path == "/servers/detail" and method == "GET":
            return 200, {"servers": self._servers(query)}, {}
        match = re.fullmatch(r"/servers/([^/]+)", path)
        if match and method == "GET":
            srv = cloud.servers.get(match.group(1))
            if srv is None or srv["vm_state"] == "deleted":     # a deleted row is not shown
                raise HTTPError(404, f"Instance {match.group(1)} could not be found.")
            return 200, {"server": cloud.server_view(srv)}, {}
        match = re.fullmatch(r"/servers/([^/]+)/action", path)
        if match and method == "POST":
            result = cloud.action(match.group(1), body, microversion)
            return (202 if result is None else 200), result, {}
        if path in ("/os-hypervisors/detail", "/os-hypervisors") and method == "GET":
            hosts = sorted({s["host"] for s in cloud.services.values() if s["binary"] == "nova-compute"})
            return 200, {"hypervisors": [cloud.hypervisor_view(h, microversion) for h in hosts]}, {}
        match = re.fullmatch(r"/servers/([^/]+)/os-instance-actions(?:/([^/]+))?", path)
        if match and method == "GET":
            srv = cloud.servers.get(match.group(1))
            if srv is None:
                raise HTTPError(404, f"Instance {match.group(1)} could not be found.")
            if match.group(2) is None:
                return 200, {"instanceActions": [{k: v for k, v in a.items() if k != "events"}
                                                 for a in reversed(srv["actions"])]}, {}
            for a in srv["actions"]:
                if a["request_id"] == match.group(2):
                    return 200, {"instanceAction": copy.deepcopy(a)}, {}
            raise HTTPError(404, f"Action {match.group(2)} not found")
        if path == "/os-migrations" and method == "GET":
            rows = [m for m in cloud.migrations
                    if query.get("host") in (None, m["source_compute"], m["dest_compute"])
                    and query.get("migration_type") in (None, m["migration_type"])
                    and query.get("source_compute") in (None, m["source_compute"])]
            rows = copy.deepcopy(rows)
            if cloud.hide_migration_hosts:      # the caller lacks os-migrations:index:host
                for row in rows:
                    row["source_compute"] = row["dest_compute"] = None
            return 200, {"migrations": rows}, {}
        raise HTTPError(404, f"no Nova route {method} {path}")

    def _servers(self, query):
        cloud = self.cloud
        all_tenants = query.get("all_tenants", "").lower() in ("true", "1", "")
        out = []
        for srv in cloud.servers.values():
            if srv["vm_state"] == "deleted":
                continue
            if "host" in query and srv["host"] != query["host"]:
                continue
            if "node" in query and srv["node"] != query["node"]:
                continue
            if not all_tenants and srv["tenant_id"] != PROJECT:
                continue
            out.append(cloud.server_view(srv))
        return out

    def _service_put(self, ident, body, microversion):
        cloud = self.cloud
        legacy = {"force-down": None, "disable": None, "disable-log-reason": None, "enable": None}
        if ident in legacy:
            svc = cloud.service_of(body.get("host"), body.get("binary", "nova-compute"))
            if svc is None:
                raise HTTPError(404, "Service not found")
            change = {"force-down": {"forced_down": body.get("forced_down")},
                      "disable": {"status": "disabled"},
                      "disable-log-reason": {"status": "disabled",
                                             "disabled_reason": body.get("disabled_reason")},
                      "enable": {"status": "enabled"}}[ident]
            cloud.update_service(svc, change)
            return 200, {"service": {"host": svc["host"], "binary": svc["binary"],
                                     "status": svc["status"], "forced_down": svc["forced_down"],
                                     "disabled_reason": svc["disabled_reason"]}}, {}
        if microversion < (2, 53):
            raise HTTPError(404, "PUT /os-services/{service_id} needs microversion 2.53")
        svc = cloud.services.get(ident)
        if svc is None:
            raise HTTPError(404, f"Service {ident} not found.")
        cloud.update_service(svc, body)
        return 200, {"service": cloud.service_view(svc)}, {}

    def _neutron(self, method, path, query):
        cloud = self.cloud
        if path == "/v2.0/agents" and method == "GET":
            rows = cloud.agents
            if "host" in query:
                rows = [a for a in rows if a["host"] == query["host"]]
            if "alive" in query:
                want = query["alive"].lower() == "true"
                rows = [a for a in rows if a["alive"] == want]
            return 200, {"agents": copy.deepcopy(rows)}, {}
        if path == "/v2.0/ports" and method == "GET":
            rows = cloud.ports
            for key in ("status", "binding:host_id", "device_id", "device_owner"):
                if key in query:
                    rows = [p for p in rows if p.get(key) == query[key]]
            return 200, {"ports": copy.deepcopy(rows)}, {}
        raise HTTPError(404, f"no Neutron route {method} {path}")

    def _cinder(self, method, path, query):
        cloud = self.cloud
        if path.rstrip("/") in ("", "/v3"):
            return 200, {"versions": [{"id": "v3.0", "status": "CURRENT", "version": "3.71",
                                       "min_version": "3.0", "links": [
                                           {"rel": "self", "href": f"{self._base()}/volume/v3/"}]}]}, {}
        match = re.fullmatch(r"/v3/[^/]+/volumes(/detail)?", path)
        if match and method == "GET":
            rows = cloud.volumes
            if "status" in query:
                rows = [v for v in rows if v["status"] == query["status"]]
            return 200, {"volumes": copy.deepcopy(rows)}, {}
        raise HTTPError(404, f"no Cinder route {method} {path}")

    def _rabbitmq(self, path):
        import base64
        from urllib.parse import unquote
        expected = "Basic " + base64.b64encode(b"guest:guest").decode()
        if self.headers.get("Authorization") != expected:
            raise HTTPError(401, "Not_Authorized")
        parts = path.split("/")
        if len(parts) != 5:
            raise HTTPError(404, "Object Not Found")
        queue = self.cloud.queues.get(unquote(parts[4])) if unquote(parts[3]) == "/" else None
        if queue is None:
            raise HTTPError(404, "Object Not Found")
        return 200, {"name": unquote(parts[4]), "vhost": "/", **queue}, {}

    def _sensu(self, path):
        cloud = self.cloud
        if self.headers.get("Authorization") != f"Key {cloud.sensu_key}":
            raise HTTPError(401, "unauthorized")
        match = re.fullmatch(r"/api/core/v2/namespaces/([^/]+)/events/([^/]+)/keepalive", path)
        if not match:
            raise HTTPError(404, "not found")
        event = cloud.sensu_events.get((match.group(1), match.group(2)))
        if event is None:
            return 404, {"message": "not found", "code": 5}, {}
        return 200, event, {}


def keepalive_event(entity, status, namespace="default", last_seen=None):
    """A Sensu Go keepalive event (the fields the API returns that we read)."""
    now = int(time.time())
    return {"check": {"metadata": {"name": "keepalive", "namespace": namespace},
                      "status": status, "output": "No keepalive sent from agent" if status else "ok",
                      "executed": now, "last_ok": now if status == 0 else now - 600,
                      "state": "passing" if status == 0 else "failing", "occurrences": 3},
            "entity": {"metadata": {"name": entity, "namespace": namespace},
                       "entity_class": "agent", "last_seen": last_seen or now},
            "metadata": {"namespace": namespace}, "timestamp": now}


class FakeCloud:
    """Start/stop the loopback server for a Cloud; ``url`` is its base URL."""

    def __init__(self, cloud):
        self.cloud = cloud
        handler = type("BoundHandler", (Handler,), {"cloud": cloud})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        cloud.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.cloud.port}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def clouds_yaml(self, path, name="fake"):
        """Write a real clouds.yaml for this cloud; return its path."""
        import yaml
        data = {"clouds": {name: {"auth_type": "v3password", "region_name": "RegionOne",
                                  "auth": {"auth_url": f"{self.url}/v3", "username": "admin",
                                           "password": "secret", "project_name": "admin",
                                           "user_domain_name": "Default",
                                           "project_domain_name": "Default"}}}}
        with open(path, "w") as handle:
            yaml.safe_dump(data, handle)
        return str(path)
