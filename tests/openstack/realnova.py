"""A real Nova 34 + Placement 16 on loopback, for the tests and the benchmarks.

What it runs (from the venv ``scripts/setup.d/35-openstack.sh`` builds, apart
from the bundle's: ``$AUTOREMEDY_NOVA_VENV``, default ``/opt/autoremedy/nova-venv``):
placement, nova-api, nova-conductor, nova-scheduler and three nova-compute
services (``fake.FakeDriverWithoutFakeNodes``: restartable like a real driver)
named ``host-a``, ``host-b``, ``host-c``, each reporting every second, the first
time too (realnova_service.py); a stub for identity, image and network
(tests/openstack/novastub.py); on demand a real Keystone 30 and a second
nova-api behind keystonemiddleware (``keystone()``). Databases
``arnova_<pid>_{api,cell0,cell1,placement,keystone}`` on the shared MariaDB
(127.0.0.1:3306, root) and the vhost ``arnova_<pid>`` on the shared RabbitMQ
(guest, management API on 15672) are its own; ``stop()`` kills every process
it started, drops them and deletes its run folder. Leftovers of a run that
died (databases and vhosts whose pid is gone) are removed at the next start.
Ports: free ones in 18700-18799, bound by the harness and handed to each service.

Use (a session fixture ``real_nova`` in tests/openstack/conftest.py starts one
for the whole session; ``real_nova.reset()`` gives each test the baseline)::

    nova = RealNova(workdir).start()
    nova.clouds_yaml, nova.cloud     # a clouds.yaml (auth_type v3password) and its cloud name
    conn = nova.conn()               # an admin openstacksdk Connection (microversion 2.53)
    ids = nova.boot("host-a", 30)    # N servers on that host, ACTIVE; returns their ids
    nova.kill_compute("host-a")      # SIGKILL its nova-compute
    nova.wait_service("host-a", "down")   # after service_down_time (6 s here)
    nova.dead("host-a")              # SIGKILL, and Nova sees it down at once (its last heartbeat aged)
    nova.start_compute("host-a")     # start it again (same state_path, same node identity)
    nova.api_log                     # nova-api's log (debug: "vm evacuation scheduled" per evacuate call)
    nova.evacuate_calls()            # {instance id: evacuate calls nova-api accepted}
    nova.sql("UPDATE instances ...") # the cell database, for fault injection
    nova.servers()                   # {id: {host, status, vm_state, task_state, power_state, locked}}
    nova.reset()                     # every compute running, up, enabled; no servers
    nova.keystone()                  # real Keystone 30 + a keystone-mode nova-api; returns its cloud name
    nova.stop()

Every reading method talks to Nova's API or database directly, never through
autoremedy's code, so the no-harm tests compare with an independent view.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
VENV = os.environ.get("AUTOREMEDY_NOVA_VENV", "/opt/autoremedy/nova-venv")
HOSTS = ("host-a", "host-b", "host-c")
MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root"}
RABBIT_API = "http://127.0.0.1:15672/api"
RABBIT_AUTH = ("guest", "guest")
PORTS = range(18700, 18800)
PREFIX = "arnova_"
SCHEMA_CACHE = os.environ.get("AUTOREMEDY_NOVA_CACHE", "/var/cache/autoremedy/nova-schema")
DATABASES = ("api", "cell0", "cell1", "placement")
# nova-api logs at INFO (one line a request) but nova.compute.api at DEBUG: its
# "vm evacuation scheduled" line is how the tests count evacuate calls. Full DEBUG
# cost nova-api a good part of its CPU, which 2 shared cores feel as evacuation
# time. oslo.log's and Nova's own default levels, plus that one.
API_LOG_LEVELS = ("amqp=WARN,boto=WARN,sqlalchemy=WARN,suds=INFO,oslo.messaging=INFO,oslo_messaging=INFO,"
                  "iso8601=WARN,requests.packages.urllib3.connectionpool=WARN,urllib3.connectionpool=WARN,"
                  "websocket=WARN,requests.packages.urllib3.util.retry=WARN,urllib3.util.retry=WARN,"
                  "keystonemiddleware=WARN,routes.middleware=WARN,stevedore=WARN,taskflow=WARN,"
                  "keystoneauth=WARN,oslo.cache=INFO,oslo_policy=INFO,dogpile.core.dogpile=INFO,"
                  "glanceclient=WARN,oslo.privsep.daemon=INFO,nova.compute.api=DEBUG")
MICROVERSION = "2.53"

# Nova's own api-paste.ini (etc/nova/api-paste.ini of the 34.0.0 sdist; the wheel
# ships none), cut to the compute API, with {auth} in the place of "authtoken".
API_PASTE = """
[composite:osapi_compute]
use = call:nova.api.openstack.urlmap:urlmap_factory
/: oscomputeversions
/v2.1: oscomputeversion_v2
/v2.1/+: openstack_compute_api_v21

[composite:openstack_compute_api_v21]
use = call:nova.api.auth:pipeline_factory_v21
keystone = cors http_proxy_to_wsgi compute_req_id faultwrap request_log sizelimit {auth} keystonecontext osapi_compute_app_v21

[filter:request_log]
paste.filter_factory = nova.api.openstack.requestlog:RequestLog.factory
[filter:compute_req_id]
paste.filter_factory = nova.api.compute_req_id:ComputeReqIdMiddleware.factory
[filter:faultwrap]
paste.filter_factory = nova.api.openstack:FaultWrapper.factory
[filter:sizelimit]
paste.filter_factory = oslo_middleware:RequestBodySizeLimiter.factory
[filter:http_proxy_to_wsgi]
paste.filter_factory = oslo_middleware.http_proxy_to_wsgi:HTTPProxyToWSGI.factory
[app:osapi_compute_app_v21]
paste.app_factory = nova.api.openstack.compute:APIRouterV21.factory
[pipeline:oscomputeversions]
pipeline = cors faultwrap request_log http_proxy_to_wsgi oscomputeversionapp
[pipeline:oscomputeversion_v2]
pipeline = cors compute_req_id faultwrap request_log http_proxy_to_wsgi oscomputeversionapp_v2
[app:oscomputeversionapp]
paste.app_factory = nova.api.openstack.compute.versions:Versions.factory
[app:oscomputeversionapp_v2]
paste.app_factory = nova.api.openstack.compute.versions:VersionsV2.factory
[filter:cors]
paste.filter_factory = oslo_middleware.cors:filter_factory
oslo_config_project = nova
[filter:keystonecontext]
paste.filter_factory = nova.api.auth:NovaKeystoneContext.factory
[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
[filter:fakeauth]
paste.filter_factory = realnova_wsgi:fake_auth_factory
"""


class HarnessError(Exception):
    pass


def _listen(taken, port=None, wait=90):
    """(port, a socket bound and listening on it): the first free one of PORTS, or
    ``port`` again (a restarted service). The socket is handed down to the service
    (realnova_wsgi.py ``fd:N``), so the port is ours from the choice on: picking a
    free port and letting the service bind it later raced with other sessions.

    Every listening socket has SO_REUSEADDR from its first bind. The connections a
    service accepts inherit the flag from the listening socket, and the stdlib's
    WSGI server closes each one first (HTTP/1.0), which leaves it in TIME_WAIT on
    the service's port for 60 s (Linux's TCP_TIMEWAIT_LEN) after the service is
    gone. A TIME_WAIT connection without the flag refuses a new bind of the port
    even with SO_REUSEADDR (``inet_bind_conflict``, ``inet_csk_bind_conflict`` in older
    kernels, net/ipv4/inet_connection_sock.c): with the first listener bound without it,
    nova-api restarted after a test's requests found its port "not free again" for
    a minute. With it, only a socket *listening* on the port refuses the bind, so a
    port is still never shared with a running service of another session."""
    for candidate in ([port] if port else PORTS):
        if candidate in taken and not port:
            continue
        deadline = time.monotonic() + (wait if port else 0)
        while True:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", candidate))
                sock.listen(64)
            except OSError:
                sock.close()
                if time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                break
            taken.add(candidate)
            return candidate, sock
    if port:
        raise HarnessError(f"port {port} not free again after {wait}s: {_holders(port)}")
    raise HarnessError("no free port in 18700-18799")


def _holders(port):
    """What holds ``port`` (ss's view of its sockets and their processes), for the error."""
    try:
        done = subprocess.run(["ss", "-Htanp", f"( sport = :{port} )"], capture_output=True,
                              text=True, timeout=10)
        lines = done.stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"(ss: {exc})"
    return f"{len(lines)} socket(s): " + " | ".join(" ".join(l.split()) for l in lines[:8])


def _group_alive(pgid):
    """Pids of the process group ``pgid`` that are not zombies (a zombie holds no fd)."""
    out = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return out
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            out.append(int(entry))
    return out


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mysql(statement, database=None):
    argv = ["mysql", "-h", MYSQL["host"], "-P", str(MYSQL["port"]), "-u", MYSQL["user"],
            "--batch", "--skip-column-names", "-e", statement]
    if database:
        argv.insert(1, f"--database={database}")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if done.returncode:
        raise HarnessError(f"mysql: {done.stderr.strip()}")
    return [line.split("\t") for line in done.stdout.splitlines()]


class RealNova:
    def __init__(self, workdir, hosts=HOSTS):
        self.tag = f"{PREFIX}{os.getpid()}"
        self.dir = os.path.join(str(workdir), "realnova")
        self.hosts = list(hosts)
        self.procs = {}                   # name -> Popen
        self.ports = {}
        self._socks = {}                  # name -> listening socket not yet handed to its service
        self.token = uuid.uuid4().hex
        self.image_id = str(uuid.uuid4())
        self.cloud = "realnova"
        self.clouds_yaml = os.path.join(self.dir, "clouds.yaml")
        self.api_log = os.path.join(self.dir, "log", "nova-api.log")
        self.flavor_id = None
        self.timings = {}
        self._keystone = None
        # A SIGKILLed compute is "down" after service_down_time (+ up to a report and
        # the DB's whole seconds); every test that kills one waits that long. Shorter
        # than Nova's 60/10 s, not so short that a busy machine makes a live one flap.
        self.report_interval = 1
        self.service_down_time = 6

    # --- paths and settings ------------------------------------------------------------
    def bin(self, name):
        return os.path.join(VENV, "bin", name)

    def db_url(self, name):
        return f"mysql+pymysql://{MYSQL['user']}@{MYSQL['host']}:{MYSQL['port']}/{self.tag}_{name}?charset=utf8"

    def url(self, service):
        return f"http://127.0.0.1:{self.ports[service]}"

    @property
    def compute_url(self):
        return self.url("nova-api") + "/v2.1"

    def log(self, name):
        return os.path.join(self.dir, "log", f"{name}.log")

    # --- bring-up ------------------------------------------------------------------------
    def start(self):
        started = self._t0 = time.monotonic()
        if not os.path.exists(self.bin("nova-compute")):
            raise HarnessError(f"no Nova venv at {VENV}: run scripts/setup.d/35-openstack.sh")
        self.cleanup_leftovers()
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(os.path.join(self.dir, "log"))
        taken = set()
        for name in ("stub", "placement", "nova-api"):
            self.ports[name], self._socks[name] = _listen(taken)
        try:
            self._databases()
            self._vhost()
            self._write_configs()
            self._sync()
            self.timings["schemas"] = round(time.monotonic() - started, 1)
            self._start_services()
            self._wait_ready()
            self.timings["bring_up"] = round(time.monotonic() - started, 1)
        except BaseException:
            shutil.copytree(os.path.join(self.dir, "log"), self.dir + "-failed-logs", dirs_exist_ok=True)
            self.stop()
            raise
        return self

    def cleanup_leftovers(self):
        """Drop the databases and vhosts of runs whose process is gone."""
        for (name,) in mysql(f"SHOW DATABASES LIKE '{PREFIX}%'"):
            m = re.match(rf"{PREFIX}(\d+)_", name)
            if m and not _pid_alive(int(m.group(1))):
                mysql(f"DROP DATABASE IF EXISTS `{name}`")
        resp = requests.get(f"{RABBIT_API}/vhosts", auth=RABBIT_AUTH, timeout=10)
        resp.raise_for_status()
        for vhost in resp.json():
            m = re.match(rf"{PREFIX}(\d+)$", vhost["name"])
            if m and not _pid_alive(int(m.group(1))):
                requests.delete(f"{RABBIT_API}/vhosts/{vhost['name']}", auth=RABBIT_AUTH, timeout=30)

    def _databases(self):
        for name in DATABASES:
            mysql(f"DROP DATABASE IF EXISTS `{self.tag}_{name}`; "
                  f"CREATE DATABASE `{self.tag}_{name}` CHARACTER SET utf8")

    def _vhost(self):
        resp = requests.put(f"{RABBIT_API}/vhosts/{self.tag}", auth=RABBIT_AUTH, timeout=30)
        resp.raise_for_status()
        resp = requests.put(f"{RABBIT_API}/permissions/{self.tag}/guest", auth=RABBIT_AUTH, timeout=30,
                            json={"configure": ".*", "write": ".*", "read": ".*"})
        resp.raise_for_status()

    def _write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        return path

    def nova_conf(self):
        # Nova's own calls: a fixed token at a fixed endpoint. Placement's noauth2
        # reads "user:project" from the token (admin:admin is an admin).
        # periodic_fuzzy_delay = 0: a service starts its periodic tasks after a
        # random 0-60 s (Nova's default), and the scheduler's host discovery is one
        # of them: the computes were not listed as hypervisors for up to a minute
        # (the bring-up's old 20-74 s spread).
        admin_token = lambda ep, token=self.token: (f"auth_type = admin_token\nendpoint = {ep}\n"
                                                    f"token = {token}\nendpoint_override = {ep}\n")
        return f"""[DEFAULT]
transport_url = rabbit://guest:guest@127.0.0.1:5672/{self.tag}
compute_driver = fake.FakeDriverWithoutFakeNodes
concurrency_backend = threading
report_interval = {self.report_interval}
service_down_time = {self.service_down_time}
my_ip = 127.0.0.1
instance_usage_audit = False
heal_instance_info_cache_interval = -1
sync_power_state_interval = -1
periodic_fuzzy_delay = 0
use_stderr = False
state_path = {self.dir}/state
[api]
auth_strategy = keystone
[api_database]
connection = {self.db_url("api")}
max_pool_size = 5
[database]
connection = {self.db_url("cell1")}
max_pool_size = 5
[oslo_concurrency]
lock_path = {self.dir}/lock
[oslo_policy]
policy_file = {self.dir}/policy.yaml
[oslo_messaging_notifications]
driver = noop
[oslo_messaging_rabbit]
heartbeat_timeout_threshold = 0
[scheduler]
discover_hosts_in_cells_interval = 2
workers = 1
[conductor]
workers = 1
[vnc]
enabled = False
[quota]
instances = -1
cores = -1
ram = -1
[placement]
{admin_token(self.url("placement"), "admin:admin")}
[glance]
{admin_token(self.url("stub") + "/image")}
[neutron]
{admin_token(self.url("stub") + "/network")}
[cinder]
os_region_name = RegionOne
"""

    def catalog(self):
        def entry(kind, name, url):
            return {"type": kind, "name": name, "id": kind,
                    "endpoints": [{"id": f"{kind}-{i}", "interface": i, "region": "RegionOne",
                                   "region_id": "RegionOne", "url": url}
                                  for i in ("public", "internal", "admin")]}
        return [entry("compute", "nova", self.compute_url),
                entry("placement", "placement", self.url("placement")),
                entry("image", "glance", self.url("stub") + "/image"),
                entry("network", "neutron", self.url("stub") + "/network"),
                entry("identity", "keystone", self.url("stub") + "/identity/v3")]

    def _write_configs(self):
        for sub in ("state", "lock"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        self._write("api-paste.ini", API_PASTE.replace("{auth}", "fakeauth"))
        self._write("api-paste-ks.ini", API_PASTE.replace("{auth}", "authtoken"))
        self._write("nova.conf", self.nova_conf())
        self._write("policy.yaml", "{}\n")
        self._write("api.conf", f"[DEFAULT]\ndefault_log_levels = {API_LOG_LEVELS}\n"
                                f"log_file = {self.api_log}\n")
        for host in self.hosts:
            os.makedirs(os.path.join(self.dir, "state", host), exist_ok=True)
            self._write(f"compute-{host}.conf", f"[DEFAULT]\nhost = {host}\n"
                        f"state_path = {self.dir}/state/{host}\n")
        self._write("placement.conf", f"""[DEFAULT]
log_file = {self.log("placement")}
[api]
auth_strategy = noauth2
[placement_database]
connection = {self.db_url("placement")}
max_pool_size = 5
""")
        self._write("stub.json", json.dumps({"token": self.token, "catalog": self.catalog(),
                                             "image_id": self.image_id,
                                             "agents_file": os.path.join(self.dir, "agents.json")}))
        self.agents([])
        self._write_clouds({self.cloud: {
            "auth_type": "v3password",
            "auth": {"auth_url": self.url("stub") + "/identity/v3", "username": "admin",
                     "password": "secret", "project_name": "admin",
                     "user_domain_name": "Default", "project_domain_name": "Default"},
            "region_name": "RegionOne", "interface": "public", "identity_api_version": 3}})

    def _write_clouds(self, clouds):
        import yaml
        current = {}
        if os.path.exists(self.clouds_yaml):
            with open(self.clouds_yaml, encoding="utf-8") as handle:
                current = yaml.safe_load(handle) or {}
        current.setdefault("clouds", {}).update(clouds)
        with open(self.clouds_yaml, "w", encoding="utf-8") as handle:
            yaml.safe_dump(current, handle)

    def _manage(self, *argv, conf=None, timeout=300):
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              env=self._env(), cwd=self.dir)
        if done.returncode:
            raise HarnessError(f"{' '.join(argv[:4])}: exit {done.returncode}: "
                               f"{(done.stderr or done.stdout).strip()[-2000:]}")
        return done.stdout

    def _env(self, **extra):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "AUTOREMEDY_"))}
        env.update(PYTHONPATH=HERE, REALNOVA_TOKEN=self.token, PYTHONUNBUFFERED="1",
                   REALNOVA_REPORT_INTERVAL=str(self.report_interval))
        env.update(extra)
        return env

    def _schema_key(self):
        """The schema cache is valid for these exact Nova and Placement releases."""
        import glob
        dists = sorted(os.path.basename(p) for p in glob.glob(os.path.join(VENV, "lib", "python*",
                                                                             "site-packages", "*.dist-info"))
                       if os.path.basename(p).lower().startswith(("nova-", "openstack_placement-")))
        return "-".join(d[:-len(".dist-info")] for d in dists) or "unknown"

    def _sync(self):
        """Schemas: from the cache when this Nova/Placement release was synced
        before on this machine (a restore takes seconds, the migrations a minute),
        else ``nova-manage``/``placement-manage`` and a dump into the cache."""
        cache = os.path.join(SCHEMA_CACHE, self._schema_key())
        if all(os.path.exists(os.path.join(cache, f"{db}.sql")) for db in DATABASES):
            for db in DATABASES:
                with open(os.path.join(cache, f"{db}.sql"), "rb") as dump:
                    done = subprocess.run(["mysql", "-h", MYSQL["host"], "-P", str(MYSQL["port"]),
                                           "-u", MYSQL["user"], f"{self.tag}_{db}"], stdin=dump,
                                          capture_output=True, timeout=120)
                if done.returncode:
                    raise HarnessError(f"restoring {db}: {done.stderr.decode()[-500:]}")
            # The cell mappings name the databases and the vhost of the run that was dumped.
            self.sql(f"UPDATE cell_mappings SET database_connection = '{self.db_url('cell0')}' "
                     "WHERE uuid = '00000000-0000-0000-0000-000000000000'", db="api")
            self.sql(f"UPDATE cell_mappings SET database_connection = '{self.db_url('cell1')}', "
                     f"transport_url = 'rabbit://guest:guest@127.0.0.1:5672/{self.tag}' "
                     "WHERE uuid <> '00000000-0000-0000-0000-000000000000'", db="api")
            self.timings["schema_cache"] = "hit"
            return
        self._migrate()
        tmp = f"{cache}.tmp{os.getpid()}"
        os.makedirs(tmp, exist_ok=True)
        for db in DATABASES:
            with open(os.path.join(tmp, f"{db}.sql"), "wb") as out:
                done = subprocess.run(["mysqldump", "-h", MYSQL["host"], "-P", str(MYSQL["port"]),
                                       "-u", MYSQL["user"], "--skip-comments", f"{self.tag}_{db}"],
                                      stdout=out, stderr=subprocess.PIPE, timeout=120)
            if done.returncode:
                shutil.rmtree(tmp, ignore_errors=True)
                return      # no cache this time; the next start migrates again
        try:
            os.rename(tmp, cache)
        except OSError:     # another run cached it first
            shutil.rmtree(tmp, ignore_errors=True)
        self.timings["schema_cache"] = "written"

    def _migrate(self):
        conf = ["--config-file", os.path.join(self.dir, "nova.conf")]
        placement = subprocess.Popen([self.bin("placement-manage"), "--config-file",
                                      os.path.join(self.dir, "placement.conf"), "db", "sync"],
                                     env=self._env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        manage = self.bin("nova-manage")
        t = time.monotonic()
        self._manage(manage, *conf, "api_db", "sync")
        self.timings["api_db"] = round(time.monotonic() - t, 1)
        self._manage(manage, *conf, "cell_v2", "map_cell0", "--database_connection", self.db_url("cell0"))
        self._manage(manage, *conf, "cell_v2", "create_cell", "--name", "cell1")
        self.timings["cells"] = round(time.monotonic() - t, 1)
        self._manage(manage, *conf, "db", "sync")
        self.timings["db"] = round(time.monotonic() - t, 1)
        out, _ = placement.communicate(timeout=300)
        if placement.returncode:
            raise HarnessError(f"placement-manage db sync: {out[-2000:]}")

    # --- processes ------------------------------------------------------------------------
    def _serves(self, name):
        """``fd:N`` for the service's argv: its listening socket (bound again on
        the same port when the service is restarted)."""
        if name not in self._socks:
            _, self._socks[name] = _listen(set(), port=self.ports[name])
        return f"fd:{self._socks[name].fileno()}"

    def _spawn(self, name, argv, env=None):
        sock = self._socks.pop(name, None)
        logfile = open(self.log(name) + ".out", "ab")
        try:
            proc = subprocess.Popen(argv, stdout=logfile, stderr=subprocess.STDOUT, cwd=self.dir,
                                    env=env or self._env(), start_new_session=True,
                                    pass_fds=(sock.fileno(),) if sock else ())
        finally:
            logfile.close()
            if sock:
                sock.close()      # the service holds it now; closed here, a stopped one refuses
        self.procs[name] = proc
        return proc

    def _service_argv(self, binary, *extra_conf):
        argv = [self.bin("python"), os.path.join(HERE, "realnova_service.py"), binary,
                "--config-file", os.path.join(self.dir, "nova.conf")]
        for conf in extra_conf:
            argv += ["--config-file", conf]
        return argv + ["--log-file", self.log(binary if not extra_conf else
                                              os.path.basename(extra_conf[0])[:-5])]

    def _start_services(self):
        py = self.bin("python")
        serve = os.path.join(HERE, "realnova_wsgi.py")
        self._spawn("stub", [sys.executable, os.path.join(HERE, "novastub.py"), self._serves("stub"),
                             os.path.join(self.dir, "stub.json")])
        self._spawn("placement", [py, serve, "placement.wsgi.api:application", self._serves("placement")],
                    env=self._env(OS_PLACEMENT_CONFIG_DIR=self.dir))
        self._spawn("nova-api", [py, serve, "nova.wsgi.osapi_compute:application", self._serves("nova-api")],
                    env=self._env(OS_NOVA_CONFIG_DIR=self.dir,
                                  OS_NOVA_CONFIG_FILES="api-paste.ini;nova.conf;api.conf"))
        self._spawn("nova-conductor", self._service_argv("nova-conductor"))
        self._spawn("nova-scheduler", self._service_argv("nova-scheduler"))
        # A compute started before the conductor answers waits out a whole RPC
        # timeout (60 s) before it retries: start them once the conductor is up.
        self._wait_binary("nova-conductor")
        # ... and consumes its RPC queue: a call sent before the queue exists is
        # dropped by the broker, and the compute waits out the timeout.
        self._wait_queue("conductor")
        self.timings["conductor"] = round(time.monotonic() - self._t0, 1)
        for host in self.hosts:
            self.start_compute(host)

    def start_compute(self, host):
        old = self.procs.get(f"compute-{host}")
        if old is not None and old.poll() is None:
            raise HarnessError(f"nova-compute on {host} is still running (pid {old.pid})")
        return self._spawn(f"compute-{host}", self._service_argv(
            "nova-compute", os.path.join(self.dir, f"compute-{host}.conf")))

    def compute_pid(self, host):
        proc = self.procs.get(f"compute-{host}")
        return proc.pid if proc is not None and proc.poll() is None else None

    def kill_compute(self, host, sig=signal.SIGKILL):
        """SIGKILL the host's nova-compute (a dead node, as Nova sees it)."""
        proc = self.procs[f"compute-{host}"]
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=30)

    def dead(self, host):
        """The host's nova-compute SIGKILLed and seen down by Nova at once.

        Waiting ``service_down_time`` after a kill is what every test but the
        detection ones would do, ~7 s each. The process is gone, so nothing can
        report for it again; its last heartbeat (``last_seen_up``, what Nova's DB
        servicegroup driver measures ``service_down_time`` from) is moved back by
        that long, which is exactly the state the wait would reach. The tests of
        detection itself (test_real_compute_node's, the harness's) kill and wait.

        A heartbeat the compute sent just before the kill goes through the
        conductor and could land after this update; Nova moves ``last_seen_up``
        only for a ``report_count`` above the stored one (``service_update`` in
        nova/db/main/api.py), so the count is raised past any the dead process
        could still send."""
        self.kill_compute(host)
        self.sql(f"UPDATE services SET last_seen_up = last_seen_up - INTERVAL "
                 f"{self.service_down_time + 2} SECOND, report_count = report_count + 1000 "
                 f"WHERE host = '{host}' AND `binary` = 'nova-compute' AND deleted = 0")
        return self.wait_service(host, "down", timeout=40)

    def _wait_queue(self, name, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            resp = requests.get(f"{RABBIT_API}/queues/{self.tag}/{name}", auth=RABBIT_AUTH, timeout=10)
            if resp.status_code == 200 and (resp.json().get("consumers") or 0) > 0:
                return
            if time.monotonic() > deadline:
                raise HarnessError(f"no consumer on the {name} queue after {timeout}s")
            time.sleep(0.3)

    def _wait_binary(self, binary, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            try:
                rows = self.get(f"/os-services?binary={binary}")["services"]
                if any(r["state"] == "up" for r in rows):
                    return
            except (requests.RequestException, HarnessError):
                pass
            if time.monotonic() > deadline:
                raise HarnessError(f"{binary} not up after {timeout}s")
            time.sleep(0.3)

    def _check_alive(self):
        dead = [f"{name} (exit {p.returncode}): {_tail(self.log(name) + '.out')} {_tail(self.log(name))}"
                for name, p in self.procs.items()
                if p.poll() is not None and not name.startswith("compute-")]
        if dead:
            raise HarnessError("Nova service(s) died: " + ", ".join(dead))

    def _wait_ready(self, timeout=120):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                services = self.services()
                hyps = self.get("/os-hypervisors").get("hypervisors", [])
                up = [h for h in self.hosts if services.get(h, {}).get("state") == "up"]
                if len(up) == len(self.hosts) and len(hyps) >= len(self.hosts) and \
                        self._providers() >= len(self.hosts):
                    break
                last = f"up: {up}, hypervisors: {len(hyps)}"
            except (requests.RequestException, HarnessError, ValueError) as exc:
                last = str(exc)
            time.sleep(0.5)
        else:
            raise HarnessError(f"Nova not ready after {timeout}s: {last}")
        self.timings["computes"] = round(time.monotonic() - self._t0, 1)
        flavor = self.post("/flavors", {"flavor": {"name": "tiny", "ram": 64, "vcpus": 1, "disk": 0}})
        self.flavor_id = flavor["flavor"]["id"]

    def _providers(self):
        resp = requests.get(self.url("placement") + "/resource_providers",
                            headers={"OpenStack-API-Version": "placement 1.20", "X-Auth-Token": "admin:admin"},
                            timeout=10)
        resp.raise_for_status()
        return len(resp.json()["resource_providers"])

    # --- raw API (independent of autoremedy) ---------------------------------------------
    def request(self, method, path, body=None, version=MICROVERSION, ok=(200, 201, 202, 204)):
        resp = requests.request(method, self.compute_url + path, json=body, timeout=60,
                                headers={"X-Auth-Token": self.token,
                                         "OpenStack-API-Version": f"compute {version}"})
        if resp.status_code not in ok:
            raise HarnessError(f"{method} {path}: {resp.status_code} {resp.text[:500]}")
        return resp.json() if resp.content else {}

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body, **kw):
        return self.request("POST", path, body, **kw)

    def put(self, path, body, **kw):
        return self.request("PUT", path, body, **kw)

    def services(self):
        """{host: {id, state, status, forced_down, disabled_reason}} of nova-compute."""
        rows = self.get("/os-services?binary=nova-compute")["services"]
        return {s["host"]: {"id": s["id"], "state": s["state"], "status": s["status"],
                            "forced_down": s["forced_down"], "disabled_reason": s["disabled_reason"]}
                for s in rows}

    def servers(self):
        """{id: {...}} of every server in the cloud, all projects (one listing)."""
        rows = self.get("/servers/detail?all_tenants=1", version="2.73")["servers"]
        return {s["id"]: {"name": s["name"], "host": s["OS-EXT-SRV-ATTR:host"], "status": s["status"],
                          "vm_state": s["OS-EXT-STS:vm_state"], "task_state": s["OS-EXT-STS:task_state"],
                          "power_state": s["OS-EXT-STS:power_state"], "locked": s["locked"]}
                for s in rows}

    def server(self, sid):
        return self.servers().get(sid)

    def action(self, sid, body, **kw):
        return self.post(f"/servers/{sid}/action", body, **kw)

    def wait_service(self, host, state, timeout=40):
        deadline = time.monotonic() + timeout
        while True:
            now = self.services()[host]
            if now["state"] == state:
                return time.monotonic()
            if time.monotonic() > deadline:
                raise HarnessError(f"nova-compute on {host} still {now} after {timeout}s")
            time.sleep(0.25)

    def wait_servers(self, ids, pred, timeout=120, what="settled"):
        deadline = time.monotonic() + timeout
        while True:
            now = self.servers()
            bad = {i: now.get(i) for i in ids if not pred(now.get(i))}
            if not bad:
                return now
            if time.monotonic() > deadline:
                raise HarnessError(f"{len(bad)} server(s) not {what} after {timeout}s: "
                                   f"{list(bad.items())[:3]}")
            time.sleep(0.5)

    def agents(self, rows, down_time=75):
        """The Neutron agents the stub's ``GET /v2.0/agents`` lists (novastub.py: there
        is no real Neutron here). ``rows``: [{"id", "host", "binary", "agent_type",
        "running": bool, "heartbeat": epoch of its last report (a stopped agent)}]."""
        path = self._write("agents.json.tmp", json.dumps({"agent_down_time": down_time, "agents": rows}))
        os.replace(path, path[:-len(".tmp")])      # the stub reads it at every request

    def network_agents(self):
        """The stub's ``GET /v2.0/agents`` as Neutron's API answers it (every host)."""
        resp = requests.get(self.url("stub") + "/network/v2.0/agents", timeout=10,
                            headers={"X-Auth-Token": self.token})
        resp.raise_for_status()
        return resp.json()["agents"]

    def agent_restart_url(self, host, binary):
        """The stub-only URL that starts that agent again (a fakebin ``restart_hook``)."""
        return f"{self.url('stub')}/_stub/agents/restart?host={host}&binary={binary}"

    def flavor(self, name, ram, vcpus=1):
        """Create a flavor (RAM in MiB); returns its id."""
        return self.post("/flavors", {"flavor": {"name": name, "ram": ram, "vcpus": vcpus,
                                                 "disk": 0}})["flavor"]["id"]

    def policy(self, rules=None):
        """Override Nova policy rules (``{"os_compute_api:os-evacuate": "!"}``); nova-api
        re-reads the file when it changes. ``None`` goes back to the defaults."""
        path = os.path.join(self.dir, "policy.yaml")
        self._write("policy.yaml", json.dumps(rules or {}) + "\n")
        later = time.time() + 2
        os.utime(path, (later, later))      # a new mtime even within the same second

    def stop_api(self):
        """Stop nova-api (a Nova that stops answering); ``start_api`` brings it back."""
        self._terminate("nova-api")

    def start_api(self):
        self._spawn("nova-api", [self.bin("python"), os.path.join(HERE, "realnova_wsgi.py"),
                                 "nova.wsgi.osapi_compute:application", self._serves("nova-api")],
                    env=self._env(OS_NOVA_CONFIG_DIR=self.dir,
                                  OS_NOVA_CONFIG_FILES="api-paste.ini;nova.conf;api.conf"))
        deadline = time.monotonic() + 60
        while True:
            try:
                self.services()
                return
            except (requests.RequestException, HarnessError):
                if time.monotonic() > deadline:
                    raise HarnessError("nova-api did not come back")
                time.sleep(0.3)

    def boot(self, host, n, prefix="vm", flavor=None):
        """Boot ``n`` servers on ``host`` (one request, Nova 2.74's ``host``), wait ACTIVE."""
        before = set(self.servers())
        self.post("/servers", {"server": {
            "name": f"{prefix}-{host}", "imageRef": self.image_id, "flavorRef": flavor or self.flavor_id,
            "networks": "none", "host": host, "min_count": n, "max_count": n}}, version="2.74")
        deadline = time.monotonic() + 120
        while True:
            now = self.servers()
            new = [i for i in now if i not in before and now[i]["name"].startswith(f"{prefix}-{host}")]
            if len(new) == n and all(now[i]["status"] == "ACTIVE" and now[i]["task_state"] is None
                                     for i in new):
                break
            if any(now[i]["status"] == "ERROR" for i in new) or time.monotonic() > deadline:
                try:
                    service = self.services().get(host)
                except (requests.RequestException, HarnessError) as exc:
                    service = f"(unread: {exc})"
                raise HarnessError(f"boot on {host}: {[(i, now[i]['status'], now[i]['task_state']) for i in new]}"
                                   f"; compute-{host} pid {self.compute_pid(host)}, service {service}; "
                                   f"nova-compute log: {_tail(self.log('compute-' + host), 4)}; "
                                   f"conductor: {_tail(self.log('nova-conductor'), 3)}")
            time.sleep(0.5)
        wrong = [i for i in new if now[i]["host"] != host]
        if wrong:
            raise HarnessError(f"boot on {host}: landed elsewhere: {wrong}")
        return sorted(new, key=lambda i: now[i]["name"])

    def sql(self, statement, db="cell1"):
        return mysql(statement, f"{self.tag}_{db}")

    def migrations(self, source=None):
        """Nova's own evacuation records: [(instance, source, dest, status, created, updated)]."""
        where = "migration_type = 'evacuation'" + (f" AND source_compute = '{source}'" if source else "")
        rows = self.sql("SELECT instance_uuid, source_compute, dest_compute, status, "
                        "UNIX_TIMESTAMP(created_at), UNIX_TIMESTAMP(COALESCE(updated_at, created_at)) "
                        f"FROM migrations WHERE {where} ORDER BY id")
        return [(r[0], r[1], r[2], r[3], float(r[4]), float(r[5])) for r in rows]

    def evacuate_calls(self, since=0):
        """{instance: number of evacuate calls nova-api accepted} from its log after byte ``since``."""
        counts = {}
        with open(self.api_log, encoding="utf-8", errors="replace") as handle:
            handle.seek(since)
            for line in handle:
                if "vm evacuation scheduled" in line:
                    m = re.search(r"\[instance: ([0-9a-f-]{36})\]", line)
                    if m:
                        counts[m.group(1)] = counts.get(m.group(1), 0) + 1
        return counts

    def log_size(self, path=None):
        try:
            return os.path.getsize(path or self.api_log)
        except OSError:
            return 0

    # --- between tests ----------------------------------------------------------------------
    def reset(self):
        """Back to the baseline: every nova-compute running, up, enabled, not forced
        down; no servers. (Evacuated instances' stale local copies are destroyed by
        nova-compute at start, which also completes their migrations.)"""
        if "nova-api" not in self.procs or self.procs["nova-api"].poll() is not None:
            self.start_api()
        self.policy(None)
        self.agents([])
        for host in self.hosts:
            if self.compute_pid(host) is None:
                self.start_compute(host)
        ids = list(self.servers())
        for sid in ids:
            self.request("DELETE", f"/servers/{sid}", ok=(204, 404))
        services = self.services()
        deadline = time.monotonic() + 90
        for host in self.hosts:
            sid = services[host]["id"]
            if services[host]["forced_down"]:
                while True:        # 400 while 'done' evacuation records remain (until init_host)
                    resp = requests.put(f"{self.compute_url}/os-services/{sid}", json={"forced_down": False},
                                        timeout=30, headers={"X-Auth-Token": self.token,
                                                             "OpenStack-API-Version": "compute 2.53"})
                    if resp.status_code == 200:
                        break
                    if time.monotonic() > deadline:
                        raise HarnessError(f"cannot un-force {host}: {resp.status_code} {resp.text[:300]}")
                    time.sleep(0.5)
        for host in self.hosts:
            self.wait_service(host, "up", timeout=60)
            if self.services()[host]["status"] != "enabled":
                self.put(f"/os-services/{services[host]['id']}", {"status": "enabled"})
        deadline = time.monotonic() + 60
        while self.servers():
            if time.monotonic() > deadline:
                raise HarnessError(f"servers not deleted: {list(self.servers().items())[:3]}")
            time.sleep(0.5)

    def conn(self, cloud=None):
        """An admin openstacksdk Connection through clouds.yaml (microversion 2.53)."""
        import openstack.config
        loader = openstack.config.OpenStackConfig(config_files=[self.clouds_yaml], load_envvars=False)
        region = loader.get_one(cloud=cloud or self.cloud, compute_default_microversion=MICROVERSION)
        return openstack.connection.Connection(config=region)

    def rss_mib(self):
        """Resident memory of every process the harness runs (MiB)."""
        total = 0
        for proc in self.procs.values():
            if proc.poll() is not None:
                continue
            for pid in [proc.pid] + _children(proc.pid):
                try:
                    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
                        for line in handle:
                            if line.startswith("VmRSS:"):
                                total += int(line.split()[1])
                except OSError:
                    pass
        return total // 1024

    # --- real Keystone ----------------------------------------------------------------------
    def keystone(self, token_seconds=125):
        """Start a real Keystone 30 (fernet tokens of ``token_seconds``) and a second
        nova-api whose pipeline has keystonemiddleware's authtoken; register the
        endpoints; add the cloud ``realnova-keystone`` (password auth) to clouds.yaml.
        Returns the cloud name. keystoneauth renews a token 120 s before it expires,
        so a lifetime of 125 s makes the client renew it every few seconds."""
        if self._keystone:
            return self._keystone
        started = time.monotonic()
        # Ports taken now, and held (listening) until each service gets its socket:
        # keystone-manage runs for many seconds in between.
        taken = set(self.ports.values())
        for name in ("keystone", "nova-api-ks"):
            self.ports[name], self._socks[name] = _listen(taken)
        mysql(f"DROP DATABASE IF EXISTS `{self.tag}_keystone`; CREATE DATABASE `{self.tag}_keystone`")
        kdir = os.path.join(self.dir, "keystone")
        for sub in ("fernet-keys", "credential-keys"):
            os.makedirs(os.path.join(kdir, sub), exist_ok=True)
        self._write("keystone/keystone.conf", f"""[DEFAULT]
log_file = {self.log("keystone")}
[database]
connection = {self.db_url("keystone")}
max_pool_size = 5
[token]
provider = fernet
expiration = {int(token_seconds)}
[fernet_tokens]
key_repository = {kdir}/fernet-keys
[credential]
key_repository = {kdir}/credential-keys
""")
        conf = ["--config-file", os.path.join(kdir, "keystone.conf")]
        manage = self.bin("keystone-manage")
        ks = self.url("keystone")
        # In parallel where nothing depends: the keystone-mode nova-api only needs
        # Keystone at its first request, the key repositories no database, and
        # Keystone's server no bootstrap data to start importing.
        self._write("api-ks.conf", f"""[DEFAULT]
default_log_levels = {API_LOG_LEVELS}
log_file = {self.log('nova-api-ks')}
[keystone_authtoken]
www_authenticate_uri = {ks}/v3
auth_url = {ks}/v3
auth_type = password
username = admin
password = secret
project_name = admin
user_domain_name = Default
project_domain_name = Default
service_token_roles_required = False
""")
        self._spawn("nova-api-ks", [self.bin("python"), os.path.join(HERE, "realnova_wsgi.py"),
                                    "nova.wsgi.osapi_compute:application", self._serves("nova-api-ks")],
                    env=self._env(OS_NOVA_CONFIG_DIR=self.dir,
                                  OS_NOVA_CONFIG_FILES="api-paste-ks.ini;nova.conf;api-ks.conf"))
        keys = [subprocess.Popen([manage, *conf, what, "--keystone-user", "root", "--keystone-group", "root"],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 env=self._env(), cwd=self.dir)
                for what in ("fernet_setup", "credential_setup")]
        self._keystone_schema(conf)
        self.timings["keystone_db"] = round(time.monotonic() - started, 1)
        for proc in keys:
            out, _ = proc.communicate(timeout=300)
            if proc.returncode:
                raise HarnessError(f"keystone-manage {proc.args[3]}: exit {proc.returncode}: {out[-2000:]}")
        self._spawn("keystone", [self.bin("python"), os.path.join(HERE, "realnova_wsgi.py"),
                                 "keystone.wsgi.api:application", self._serves("keystone")],
                    env=self._env(OS_KEYSTONE_CONFIG_DIR=kdir, OS_KEYSTONE_CONFIG_FILES="keystone.conf"))
        self._manage(manage, *conf, "bootstrap", "--bootstrap-password", "secret",
                     "--bootstrap-admin-url", ks + "/v3", "--bootstrap-internal-url", ks + "/v3",
                     "--bootstrap-public-url", ks + "/v3", "--bootstrap-region-id", "RegionOne")
        token = self._keystone_token(ks)
        for kind, name, url in (("compute", "nova", self.url("nova-api-ks") + "/v2.1"),
                                ("placement", "placement", self.url("placement")),
                                ("image", "glance", self.url("stub") + "/image"),
                                ("network", "neutron", self.url("stub") + "/network")):
            svc = self._ks(ks, token, "POST", "/v3/services", {"service": {"type": kind, "name": name}})
            for iface in ("public", "internal", "admin"):
                self._ks(ks, token, "POST", "/v3/endpoints", {"endpoint": {
                    "service_id": svc["service"]["id"], "interface": iface, "url": url,
                    "region_id": "RegionOne"}})
        self._write_clouds({"realnova-keystone": {
            "auth_type": "password",
            "auth": {"auth_url": ks + "/v3", "username": "admin", "password": "secret",
                     "project_name": "admin", "user_domain_name": "Default",
                     "project_domain_name": "Default"},
            "region_name": "RegionOne", "interface": "public", "identity_api_version": 3}})
        deadline = time.monotonic() + 60
        while True:
            self._check_alive()
            try:
                resp = requests.get(self.url("nova-api-ks") + "/v2.1/os-services",
                                    headers={"X-Auth-Token": self._keystone_token(ks)}, timeout=10)
                if resp.status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise HarnessError("keystone-mode nova-api not answering")
            time.sleep(0.5)
        self.timings["keystone"] = round(time.monotonic() - started, 1)
        self._keystone = "realnova-keystone"
        return self._keystone

    def _keystone_key(self):
        import glob
        dists = sorted(os.path.basename(p)[:-len(".dist-info")] for p in glob.glob(
            os.path.join(VENV, "lib", "python*", "site-packages", "keystone-*.dist-info")))
        return "-".join(dists) or "unknown"

    def _keystone_schema(self, conf):
        """Keystone's schema into ``<tag>_keystone``: from the schema cache when this
        Keystone release was synced before on this machine (a restore takes a second or
        two; ``keystone-manage db_sync`` and its dump took 3.7 s on an idle machine, more under
        load: a small saving), else db_sync and a dump into
        the cache. The schema names nothing of the run (bootstrap, after it, writes the
        users, the endpoints and their ports)."""
        cache = os.path.join(SCHEMA_CACHE, self._keystone_key(), "keystone.sql")
        db = f"{self.tag}_keystone"
        if os.path.exists(cache):
            with open(cache, "rb") as dump:
                done = subprocess.run(["mysql", "-h", MYSQL["host"], "-P", str(MYSQL["port"]),
                                       "-u", MYSQL["user"], db], stdin=dump, capture_output=True, timeout=120)
            if done.returncode:
                raise HarnessError(f"restoring keystone: {done.stderr.decode()[-500:]}")
            self.timings["keystone_cache"] = "hit"
            return
        self._manage(self.bin("keystone-manage"), *conf, "db_sync")
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        tmp = f"{cache}.tmp{os.getpid()}"
        with open(tmp, "wb") as out:
            done = subprocess.run(["mysqldump", "-h", MYSQL["host"], "-P", str(MYSQL["port"]),
                                   "-u", MYSQL["user"], "--skip-comments", db],
                                  stdout=out, stderr=subprocess.PIPE, timeout=120)
        if done.returncode:
            os.unlink(tmp)          # no cache this time; the next run syncs again
            return
        os.replace(tmp, cache)
        self.timings["keystone_cache"] = "written"

    def _keystone_token(self, ks):
        deadline = time.monotonic() + 60
        while True:
            self._check_alive()
            try:
                resp = requests.post(ks + "/v3/auth/tokens", timeout=10, json={"auth": {
                    "identity": {"methods": ["password"], "password": {"user": {
                        "name": "admin", "domain": {"name": "Default"}, "password": "secret"}}},
                    "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}})
                if resp.status_code == 201:
                    return resp.headers["X-Subject-Token"]
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise HarnessError("keystone not answering")
            time.sleep(0.3)

    @staticmethod
    def _ks(ks, token, method, path, body):
        resp = requests.request(method, ks + path, json=body, headers={"X-Auth-Token": token}, timeout=30)
        if resp.status_code >= 300:
            raise HarnessError(f"keystone {method} {path}: {resp.status_code} {resp.text[:300]}")
        return resp.json()

    def stop_keystone(self):
        for name in ("nova-api-ks", "keystone"):
            self._terminate(name)
        self._keystone = None

    # --- teardown -----------------------------------------------------------------------------
    def _terminate(self, name, grace=10):
        """SIGTERM the service's whole process group (each is started in its own
        session), SIGKILL what is left after ``grace`` s, and return once no process
        of the group is left: a child that outlived its parent would still hold the
        listening socket it inherited, and the port with it."""
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        pgid = proc.pid
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 30)):
            if sig == signal.SIGTERM and not grace:
                continue
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + wait
            while proc.poll() is None or _group_alive(pgid):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            else:
                return
        raise HarnessError(f"{name}: process group {pgid} still alive after SIGKILL: {_group_alive(pgid)}")

    def stop(self):
        # Every process told at once, then waited for (one by one took up to 10 s each).
        for name, proc in list(self.procs.items()):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 5
        for name, proc in list(self.procs.items()):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        left = []
        for name in list(self.procs):
            try:
                self._terminate(name, grace=0)
            except HarnessError as exc:     # still drop the databases and the vhost
                left.append(str(exc))
        for sock in self._socks.values():
            sock.close()
        self._socks.clear()
        for name in ("api", "cell0", "cell1", "placement", "keystone"):
            try:
                mysql(f"DROP DATABASE IF EXISTS `{self.tag}_{name}`")
            except HarnessError:
                pass
        try:
            requests.delete(f"{RABBIT_API}/vhosts/{self.tag}", auth=RABBIT_AUTH, timeout=30)
        except requests.RequestException:
            pass
        if os.environ.get("REALNOVA_KEEP_LOGS"):     # for a post-mortem: <workdir>/realnova-logs
            shutil.copytree(os.path.join(self.dir, "log"), self.dir + "-logs", dirs_exist_ok=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        if left:
            raise HarnessError("; ".join(left))


def schema_cache(workdir):
    """Fill the schema cache for the installed Nova/Placement (the migrations: a
    minute of CPU) and Keystone unless it holds them already; returns its folder. Run by
    scripts/setup.d/35-openstack.sh so that no test session pays it."""
    nova = RealNova(workdir)
    cache = os.path.join(SCHEMA_CACHE, nova._schema_key())
    nova.ports = {name: 0 for name in ("stub", "placement", "nova-api")}   # written, never served
    os.makedirs(os.path.join(nova.dir, "log"), exist_ok=True)
    try:
        if not all(os.path.exists(os.path.join(cache, f"{db}.sql")) for db in DATABASES):
            nova._databases()
            nova._write_configs()
            nova._sync()
        if not os.path.exists(os.path.join(SCHEMA_CACHE, nova._keystone_key(), "keystone.sql")):
            mysql(f"DROP DATABASE IF EXISTS `{nova.tag}_keystone`; CREATE DATABASE `{nova.tag}_keystone`")
            nova._write("keystone.conf", f"[database]\nconnection = {nova.db_url('keystone')}\n")
            nova._keystone_schema(["--config-file", os.path.join(nova.dir, "keystone.conf")])
    finally:
        nova.stop()
    return cache

def _tail(path, lines=6):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return " | ".join(handle.read().strip().splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc.strerror})"


def _children(pid):
    out = []
    try:
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat", encoding="ascii") as handle:
                        if int(handle.read().rsplit(")", 1)[1].split()[1]) == pid:
                            out.append(int(entry))
                except (OSError, ValueError, IndexError):
                    pass
    except OSError:
        pass
    return out


if __name__ == "__main__":
    # python realnova.py schema-cache   (scripts/setup.d/35-openstack.sh, the Nova venv's python)
    if sys.argv[1:] != ["schema-cache"]:
        sys.exit("usage: realnova.py schema-cache")
    import tempfile
    with tempfile.TemporaryDirectory(prefix="realnova-schema-") as tmp:
        print(schema_cache(tmp))
