"""Test helpers for the RabbitMQ area: an independent API client, fast flooding,
exact depths, throwaway nodes and a loopback double of the management API.

Setup and assertions go through this module's own small client (urllib3) and
pika, not through autoremedy.clients.rabbitmq, so a bug in the code under test cannot
hide itself in the test's own view of the broker.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import urllib3

SHARED_API = "http://127.0.0.1:15672"
SHARED_AMQP = 5672
HOST = socket.gethostname().split(".")[0]


def q(*parts):
    return "/".join(quote(p, safe="") for p in parts)


class Client:
    """Just enough of the management API for setup and assertions."""

    def __init__(self, url=SHARED_API, user="guest", password="guest"):
        self.url = url
        self.http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=3, read=60))
        self.headers = urllib3.make_headers(basic_auth=f"{user}:{password}")
        self.headers["content-type"] = "application/json"

    def call(self, method, path, body=None, ok=(200, 201, 204)):
        resp = self.http.request(method, f"{self.url}/api/{path}", headers=self.headers,
                                 body=None if body is None else json.dumps(body))
        if resp.status not in ok:
            raise AssertionError(f"{method} /api/{path}: HTTP {resp.status} {resp.data[:200]!r}")
        return json.loads(resp.data) if resp.data.strip() else None

    def status(self, method, path):
        return self.http.request(method, f"{self.url}/api/{path}", headers=self.headers).status

    def make_vhost(self, name, user="guest"):
        self.call("PUT", f"vhosts/{q(name)}")
        self.call("PUT", f"permissions/{q(name, user)}", {"configure": ".*", "write": ".*", "read": ".*"})

    def drop_vhost(self, name):
        self.call("DELETE", f"vhosts/{q(name)}", ok=(204, 404))

    def api_depth(self, vhost, queue, columns="messages,consumers"):
        return self.call("GET", f"queues/{q(vhost, queue)}?columns={columns}")

    def wait_api(self, vhost, queue, predicate, timeout=20, columns="messages,consumers"):
        """Poll until the API's (lagging, ~5 s) view satisfies ``predicate(row)``."""
        deadline = time.monotonic() + timeout
        row = None
        while time.monotonic() < deadline:
            row = self.api_depth(vhost, queue, columns)
            # A queue without statistics yet comes back as [] (an empty proplist).
            if isinstance(row, dict) and "messages" in row and predicate(row):
                return row
            time.sleep(0.5)
        raise AssertionError(f"API view of {vhost}/{queue} never satisfied the condition: {row}")


# --- AMQP --------------------------------------------------------------------------------

def amqp(vhost, port=SHARED_AMQP):
    import pika
    return pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=port, virtual_host=vhost,
        credentials=pika.PlainCredentials("guest", "guest"), heartbeat=0))


def declare(vhost, *queues, port=SHARED_AMQP, durable=True):
    conn = amqp(vhost, port)
    try:
        ch = conn.channel()
        for name in queues:
            ch.queue_declare(name, durable=durable)
    finally:
        conn.close()


def depth(vhost, queue, port=SHARED_AMQP):
    """Exact (messages ready, consumers) by passive declare; None if missing."""
    import pika
    conn = amqp(vhost, port)
    try:
        ok = conn.channel().queue_declare(queue, passive=True).method
        return ok.message_count, ok.consumer_count
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == 404:
            return None
        raise
    finally:
        if conn.is_open:
            conn.close()


def flood(vhost, queue, count, port=SHARED_AMQP, body=b"x" * 100, persistent=True):
    """Publish ``count`` messages fast: one marshalled publish written to the
    socket many times (measured: 20k in ~0.5 s; pika internals, test code only),
    then wait until a passive declare sees them all."""
    import pika
    import pika.frame
    import pika.spec
    conn = amqp(vhost, port)
    try:
        ch = conn.channel()
        before = ch.queue_declare(queue, passive=True).method.message_count
        number = ch.channel_number
        props = pika.spec.BasicProperties(delivery_mode=2 if persistent else 1)
        one = (pika.frame.Method(number, pika.spec.Basic.Publish(exchange="", routing_key=queue)).marshal()
               + pika.frame.Header(number, len(body), props).marshal()
               + pika.frame.Body(number, body).marshal())
        sock = conn._impl._transport._sock
        sent = 0
        while sent < count:
            batch = min(5000, count - sent)
            sock.sendall(one * batch)
            sent += batch
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = ch.queue_declare(queue, passive=True).method.message_count
            if now >= before + count:
                return now
            time.sleep(0.05)
        raise AssertionError(f"flood: {queue} reached {now} of {before + count}")
    finally:
        conn.close()


def publish(vhost, queue, bodies, port=SHARED_AMQP, headers=None):
    """Publish distinct messages with confirms (for content checks)."""
    import pika
    conn = amqp(vhost, port)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        for body in bodies:
            ch.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2, headers=headers),
                             mandatory=True)
    finally:
        conn.close()


def drain(vhost, queue, port=SHARED_AMQP):
    """Every message body in the queue (consumed and acked)."""
    conn = amqp(vhost, port)
    out = []
    try:
        ch = conn.channel()
        while True:
            method, props, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                return out
            out.append((body, props.headers))
    finally:
        conn.close()


# --- throwaway nodes ------------------------------------------------------------------------

class Node:
    """A throwaway RabbitMQ node with its own name, ports and directories
    (RabbitMQ docs, "Clustering Guide": node names and ports). Only ever signals its own beam process."""

    def __init__(self, letter, index):
        self.name = f"rmqtest-{letter}@{HOST}"
        self.amqp_port = 5673 + index
        self.mgmt_port = 15673 + index
        self.dist_port = 25673 + index
        self.dir = tempfile.mkdtemp(prefix=f"autoremedy-rmq{letter}-", dir="/tmp")
        os.chmod(self.dir, 0o755)     # rabbitmq must traverse it (mkdtemp makes 0700)
        for sub in ("mnesia", "log", "cores"):
            os.makedirs(os.path.join(self.dir, sub))
        with open(os.path.join(self.dir, "rabbitmq.conf"), "w") as handle:
            handle.write(f"listeners.tcp.default = {self.amqp_port}\n"
                         f"management.tcp.port = {self.mgmt_port}\n"
                         "management.tcp.ip = 127.0.0.1\n"
                         "loopback_users.guest = false\n")
        with open(os.path.join(self.dir, "enabled_plugins"), "w") as handle:
            handle.write("[rabbitmq_management].\n")
        subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", self.dir], check=True)

    @property
    def env(self):
        d = self.dir
        return {
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": f"{d}/mnesia",
            "RABBITMQ_LOG_BASE": f"{d}/log",
            "RABBITMQ_CONFIG_FILE": f"{d}/rabbitmq.conf",
            "RABBITMQ_ENABLED_PLUGINS_FILE": f"{d}/enabled_plugins",
            "RABBITMQ_PID_FILE": f"{d}/node.pid",
            "ERL_CRASH_DUMP": f"{d}/cores/erl_crash.dump",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": f'-mnesia core_dir "{d}/cores"',
        }

    @property
    def mnesia(self):
        return os.path.join(self.dir, "mnesia", self.name)

    @property
    def log(self):
        return os.path.join(self.dir, "log", f"{self.name}.log")

    @property
    def api_url(self):
        return f"http://127.0.0.1:{self.mgmt_port}"

    def client(self, user="guest", password="guest"):
        return Client(self.api_url, user, password)

    def ctl(self, *args, tool="rabbitmqctl", timeout=60, input=None):
        env = {**os.environ, **self.env}
        return subprocess.run([tool, "-q", "-n", self.name, *args], env=env, capture_output=True,
                              text=True, timeout=timeout, input=input)

    def start(self, wait=True, timeout=60):
        env = {**os.environ, **self.env}
        subprocess.run(["rabbitmq-server", "-detached"], env=env, check=True, timeout=30)
        if wait:
            self.wait_running(timeout)

    def running(self):
        # A CLI call that hangs past its timeout (a node still booting on a loaded
        # machine) is "not yet": the caller's own deadline decides, not this call's.
        try:
            return self.ctl("check_running", tool="rabbitmq-diagnostics", timeout=30).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def wait_running(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.running():
                return
            time.sleep(0.5)
        raise AssertionError(f"{self.name} did not start in {timeout}s; log tail: {self.tail()}")

    def wait_api(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.client().status("GET", "overview") in (200, 401):
                    return
            except urllib3.exceptions.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"{self.name}: management API never answered")

    def pids(self):
        """beam.smp processes of THIS node: their environment names it exactly."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/comm") as handle:
                    if handle.read().strip() != "beam.smp":
                        continue
                with open(f"/proc/{entry}/environ", "rb") as handle:
                    env = handle.read().split(b"\0")
            except OSError:
                continue
            if f"RABBITMQ_NODENAME={self.name}".encode() in env:
                found.append(int(entry))
        return found

    def kill(self):
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 15
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.1)

    def truncate_log(self):
        """Truncate (never recreate as root: a root-owned log kills the node silently)."""
        if os.path.exists(self.log):
            with open(self.log, "r+b") as handle:
                handle.truncate(0)

    def tail(self, n=5):
        try:
            with open(self.log, errors="replace") as handle:
                return " / ".join(handle.read().splitlines()[-n:])
        except OSError:
            return "(no log)"

    def destroy(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def kill_stale(name):
    """A node of ours left running by an aborted run would hold the ports."""
    stale = Node.__new__(Node)
    stale.name = name
    stale.kill()


# --- a loopback double of the management API ---------------------------------------------------

class Double:
    """Serves canned answers by path (query string ignored unless the route has one).
    ``routes[path] = (status, body bytes or JSON-able, headers)``; counts requests."""

    def __init__(self, tls=None):
        """``tls``: (certificate, key) files to serve HTTPS with, as a management
        API behind its TLS listener (management.ssl) does."""
        self.routes = {}
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                outer.requests.append((self.command, self.path))
                path = self.path.split("?", 1)[0]
                status, body, headers = outer.routes.get(self.path) or outer.routes.get(path) or \
                    (404, {"error": "Object Not Found", "reason": "Not Found"}, {})
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", headers.get("content-type", "application/json"))
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = _serve

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls:
            import ssl
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"

    def set(self, path, body, status=200, **headers):
        self.routes[path] = (status, body, headers)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def closed_port():
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
