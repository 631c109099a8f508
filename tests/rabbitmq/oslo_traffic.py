"""Real oslo.messaging traffic in a vhost of its own, with every call and cast counted.

Run as a script, this file is one OpenStack-like process (PyPI oslo.messaging
and oslo.config, the rabbit driver, the threading executor)::

    python oslo_traffic.py server   URL DIR HOST   # RPC server topic 'compute', server HOST
    python oslo_traffic.py client   URL DIR        # calls + casts (topic, each server) + fanout
    python oslo_traffic.py notifier URL DIR        # notifications.info / versioned_notifications.info,
                                                   # nobody consumes them

Each process writes what it did to DIR, line by line, flushed before it goes on
(a SIGKILLed server has written every cast it got before the signal):

- ``<host>.casts``: one cast id per line, as the server received it;
- ``client.casts``: ``<target> <id>`` per cast the client sent (after cast() returned);
- ``client.json``: calls ok / failed (and the failures' text), casts sent;
- ``notifier.json``: notifications sent; ``<role>.ready`` once it runs.

``Traffic`` (used by the tests) starts two servers (node1, node2), the client
and the notifier, kills and restarts servers, and proves **zero failed calls
and zero lost casts**: every cast id the client sent was received by a server.
Cast ids aimed at a server are only counted once that server consumes again.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time

TOPIC = "compute"
HOSTS = ("node1", "node2")
CALL_TIMEOUT = 30


# --- the processes -------------------------------------------------------------------------

def _transport(url, notify=False):
    import oslo_messaging as om
    from oslo_config import cfg
    # oslo.messaging registers some options on the global CONF only (its tracing
    # options, 18.x): use it, as the services do.
    cfg.CONF([], project="autoremedy-test", default_config_files=[])
    if notify:
        return om.get_notification_transport(cfg.CONF, url=url)
    return om.get_rpc_transport(cfg.CONF, url=url)


def _ready(directory, role):
    with open(os.path.join(directory, f"{role}.ready"), "w") as handle:
        handle.write(str(os.getpid()))


def _write_json(path, value):
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(value, handle)
    os.replace(tmp, path)


def serve(url, directory, host):
    import oslo_messaging as om
    lock = threading.Lock()
    casts = open(os.path.join(directory, f"{host}.casts"), "a", buffering=1)
    fanouts = open(os.path.join(directory, f"{host}.fanout"), "a", buffering=1)

    class Endpoint:
        def ping(self, ctxt, n):
            return {"n": n, "host": host}

        def cast_it(self, ctxt, id):
            with lock:
                casts.write(f"{id}\n")

        def fanout_it(self, ctxt, id):
            with lock:
                fanouts.write(f"{id}\n")

    server = om.get_rpc_server(_transport(url), om.Target(topic=TOPIC, server=host), [Endpoint()],
                               executor="threading")
    server.start()
    _ready(directory, host)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    while not stop.wait(0.2):
        pass
    server.stop()
    server.wait()


def client(url, directory):
    import oslo_messaging as om
    rpc = om.get_rpc_client(_transport(url), om.Target(topic=TOPIC), timeout=CALL_TIMEOUT)
    sent = open(os.path.join(directory, "client.casts"), "a", buffering=1)
    state = {"calls_ok": 0, "calls_failed": 0, "failures": [], "casts": 0, "fanouts": 0}
    path = os.path.join(directory, "client.json")
    stop = os.path.join(directory, "stop")
    _ready(directory, "client")
    i = 0
    while not os.path.exists(stop):
        i += 1
        try:
            answer = rpc.call({}, "ping", n=i)
            if answer.get("n") != i:
                raise ValueError(f"wrong answer {answer}")
            state["calls_ok"] += 1
        except Exception as exc:                   # counted, never hidden
            state["calls_failed"] += 1
            state["failures"].append(f"{type(exc).__name__}: {exc}"[:200])
        for target in (None,) + HOSTS:
            cid = f"{target or 'topic'}-{i}"
            (rpc.prepare(server=target) if target else rpc).cast({}, "cast_it", id=cid)
            sent.write(f"{target or 'topic'} {cid}\n")
            state["casts"] += 1
        if i % 10 == 0:
            rpc.prepare(fanout=True).cast({}, "fanout_it", id=f"fanout-{i}")
            state["fanouts"] += 1
        _write_json(path, state)
        time.sleep(0.1)
    _write_json(path, state)


def notifier(url, directory):
    import oslo_messaging as om
    notify = om.Notifier(_transport(url, notify=True), driver="messagingv2",
                         publisher_id="compute.node1", topics=["notifications", "versioned_notifications"])
    path = os.path.join(directory, "notifier.json")
    stop = os.path.join(directory, "stop")
    sent = 0
    _ready(directory, "notifier")
    while not os.path.exists(stop):
        notify.info({}, "compute.instance.update", {"n": sent})
        sent += 1
        if sent % 10 == 0:
            _write_json(path, {"sent": sent})
        time.sleep(0.05)
    _write_json(path, {"sent": sent})


# --- the controller the tests use ------------------------------------------------------------

class Traffic:
    """Two RPC servers, a client and a notifier on ``vhost`` of the shared broker."""

    def __init__(self, vhost, directory, port=5672):
        self.vhost = vhost
        self.dir = str(directory)
        self.url = f"rabbit://guest:guest@127.0.0.1:{port}/{vhost}"
        self.procs = {}

    def _spawn(self, role, *args):
        for name in (f"{role if role not in HOSTS else role}.ready",):
            try:
                os.unlink(os.path.join(self.dir, name))
            except FileNotFoundError:
                pass
        log = open(os.path.join(self.dir, f"{role}.log"), "a")
        proc = subprocess.Popen([sys.executable, "-W", "ignore", __file__, role if role not in HOSTS
                                 else "server", self.url, self.dir, *args],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[role] = proc
        return proc

    def wait_ready(self, *roles, timeout=60):
        deadline = time.monotonic() + timeout
        for role in roles:
            while not os.path.exists(os.path.join(self.dir, f"{role}.ready")):
                proc = self.procs[role]
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"oslo.messaging {role} did not start "
                                         f"(rc {proc.poll()}): {self.log(role)}")
                time.sleep(0.1)

    def start(self):
        for host in HOSTS:
            self.start_server(host, wait=False)
        self.wait_ready(*HOSTS)
        self._spawn("notifier")
        self._spawn("client")
        self.wait_ready("notifier", "client")
        self.wait_calls(5)
        return self

    def start_server(self, host, wait=True):
        self._spawn(host, host)
        if wait:
            self.wait_ready(host)

    def kill(self, host):
        """SIGKILL one RPC server: no goodbye to the broker, its queues stay."""
        proc = self.procs[host]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def log(self, role):
        try:
            with open(os.path.join(self.dir, f"{role}.log"), errors="replace") as handle:
                return " / ".join(handle.read().strip().splitlines()[-5:])
        except OSError:
            return "(no log)"

    # -- counting --------------------------------------------------------------------------
    def counts(self):
        try:
            with open(os.path.join(self.dir, "client.json")) as handle:
                state = json.load(handle)
        except (OSError, ValueError):
            state = {"calls_ok": 0, "calls_failed": 0, "failures": [], "casts": 0}
        return state

    def wait_calls(self, more, timeout=60):
        """Wait until ``more`` further calls succeeded (the traffic flows)."""
        start = self.counts()["calls_ok"]
        deadline = time.monotonic() + timeout
        while self.counts()["calls_ok"] < start + more:
            if time.monotonic() > deadline:
                raise AssertionError(f"oslo.messaging calls stalled: {self.counts()} "
                                     f"{self.log('client')}")
            time.sleep(0.1)

    def sent_casts(self):
        with open(os.path.join(self.dir, "client.casts")) as handle:
            return [line.split() for line in handle if line.strip()]

    def received_casts(self):
        got = set()
        for host in HOSTS:
            try:
                with open(os.path.join(self.dir, f"{host}.casts")) as handle:
                    got.update(line.strip() for line in handle if line.strip())
            except FileNotFoundError:
                pass
        return got

    def lost_casts(self, timeout=30, target=None, since=0):
        """Cast ids sent (to ``target`` only, if given; from the ``since``-th cast
        on) and, after waiting up to ``timeout`` for the servers to drain, never
        received: must be empty."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.received_casts()       # read once per pass, not once per cast sent
            missing = [cid for to, cid in self.sent_casts()[since:]
                       if (target is None or to == target) and cid not in got]
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.5)

    def assert_no_loss(self, before):
        """Since ``before`` (a counts() dict): calls flowed, none failed, and
        every cast ever sent arrived."""
        self.wait_calls(3)
        now = self.counts()
        assert now["calls_failed"] == before["calls_failed"], now["failures"][-5:]
        assert now["calls_ok"] > before["calls_ok"], (before, now)
        lost = self.lost_casts()
        assert lost == [], f"{len(lost)} cast(s) lost, e.g. {lost[:5]}"
        return now

    def stop(self):
        open(os.path.join(self.dir, "stop"), "w").close()
        for role in ("client", "notifier"):
            proc = self.procs.get(role)
            if proc is not None:
                try:
                    proc.wait(CALL_TIMEOUT + 10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        for host in HOSTS:
            proc = self.procs.get(host)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


if __name__ == "__main__":
    role, url, directory = sys.argv[1:4]
    if role == "server":
        serve(url, directory, sys.argv[4])
    elif role == "client":
        client(url, directory)
    elif role == "notifier":
        notifier(url, directory)
    else:
        sys.exit(f"unknown role {role}")
