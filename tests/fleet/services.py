"""Throwaway coordination backends for the fleet tests: a Redis, a MariaDB and an
etcd of the test's own (own port, own data directory under a temp dir), which a
test may kill and start again. The machine's shared Redis and MariaDB are never
touched."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "mysql"))
import mysql_instances as mi        # noqa: E402  the MariaDB helpers of tests/mysql


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port):
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} not reached in {timeout}s")


class _Process:
    """A server run as our child; kill() is a kill -9."""
    proc = None
    name = "server"

    def argv(self):
        raise NotImplementedError

    def start(self):
        if self.proc is not None and self.proc.poll() is None:
            return
        log = open(os.path.join(self.dir, "server.log"), "ab")
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        log.close()
        wait_until(self.ready, 30, f"{self.name} on {self.port}")

    def ready(self):
        if self.proc.poll() is not None:
            with open(os.path.join(self.dir, "server.log"), errors="replace") as handle:
                raise RuntimeError(f"{self.name} exited: {handle.read()[-2000:]}")
        return port_open(self.port)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        wait_until(lambda: not port_open(self.port), 10, f"{self.name} gone")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Redis(_Process):
    name = "redis-server"

    def __init__(self, base):
        self.dir = os.path.join(base, "redis")
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def argv(self):
        # appendfsync always: a killed and restarted coordinator keeps its ledger
        return ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", self.dir, "--appendonly", "yes", "--appendfsync", "always",
                "--save", "", "--protected-mode", "no"]

    def ready(self):
        if not super().ready():
            return False
        done = subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True,
                              text=True)
        return done.stdout.strip() == "PONG"

    def keys(self, pattern="*"):
        done = subprocess.run(["redis-cli", "-p", str(self.port), "--scan", "--pattern", pattern],
                              capture_output=True, text=True, check=True)
        return [k for k in done.stdout.split() if k]


class Etcd(_Process):
    name = "etcd"

    def __init__(self, base):
        self.dir = os.path.join(base, "etcd")
        os.makedirs(self.dir, exist_ok=True)
        self.port, self.peer = free_port(), free_port()
        self.url = f"etcd3+http://127.0.0.1:{self.port}"

    def argv(self):
        client, peer = f"http://127.0.0.1:{self.port}", f"http://127.0.0.1:{self.peer}"
        return ["etcd", "--name", "fleet", "--data-dir", os.path.join(self.dir, "data"),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"fleet={peer}", "--log-level", "error"]


class MariaDB:
    """A mariadbd of our own (tests/mysql/mysql_instances.Instance) with a database
    and a user for the coordination backend."""
    name = "mariadb"

    def __init__(self, base):
        self.base = os.path.join(base, "mariadb")
        os.makedirs(self.base, exist_ok=True)
        os.chmod(base, 0o755)
        os.chmod(self.base, 0o755)
        self.port = free_port()
        self.instance = mi.Instance(self.base, "coord", self.port, {"server-id": 1})
        self.url = f"mysql://fleet:fleetpw@127.0.0.1:{self.port}/autoremedy"

    def start(self, first=False):
        if first:
            self.instance.install()
        self.instance.start(wait=True, timeout=60)
        if first:
            self.instance.sql("CREATE DATABASE IF NOT EXISTS autoremedy",
                              "CREATE USER IF NOT EXISTS 'fleet'@'127.0.0.1' IDENTIFIED BY 'fleetpw'",
                              "GRANT ALL ON autoremedy.* TO 'fleet'@'127.0.0.1'")

    def kill(self):
        self.instance.kill()

    def stop(self):
        self.instance.stop()

    def sql(self, statement):
        return self.instance.sql("USE autoremedy", statement)


def make_base():
    return tempfile.mkdtemp(prefix="autoremedy-fleet-")


def remove(base):
    shutil.rmtree(base, ignore_errors=True)
