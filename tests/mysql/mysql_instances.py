"""Throwaway MariaDB servers for the tests: a GTID primary/replica pair (Galera: galera_cluster.py).

Each instance has its own my.cnf, datadir, tmpdir, socket, pid file and error log
under one base directory, and its own ports (docs/DEVELOPING.md): the machine's
shared MariaDB on 3306 is never touched. Servers are started with ``setsid -f``
(a SIGKILLed child must not linger as a zombie that ``kill -0`` still sees) and
found again through their pid files. Facts and timings: docs/mysql.md
§4 (pair) and §5 (Galera), copied into docs/mysql.md.
"""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pymysql

BASE_PREFIX = "autoremedy-mysql-"
PAIR_PORTS = (3317, 3318)


OWNER = "owner"          # in each base directory: "<pid> <start time>" of the test process that made it


def make_base(prefix=BASE_PREFIX):
    """A base directory the mysql user can traverse (pytest's tmp dirs are 0700),
    marked with the test process that owns it (``sweep_leftovers`` spares the
    servers of a run that is still alive)."""
    base = tempfile.mkdtemp(prefix=prefix)
    os.chmod(base, 0o755)
    with open(os.path.join(base, OWNER), "w") as handle:
        handle.write(f"{os.getpid()} {_start_time(os.getpid())}\n")
    return base


def _start_time(pid):
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22):
    with the pid, it names one process even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def live_owner(base):
    """The pid of the live test process that owns ``base`` (None: a crashed or
    finished run, or a base without an owner mark)."""
    try:
        with open(os.path.join(base, OWNER)) as handle:
            pid, started = handle.read().split()
        pid, started = int(pid), int(started)
    except (OSError, ValueError):
        return None
    return pid if _start_time(pid) == started and not _zombie(pid) else None


def _defaults_file(argv):
    for arg in argv:
        if arg.startswith("--defaults-file="):
            return arg.split("=", 1)[1]
    return ""


def _cnf_port(cnf):
    if not cnf:
        return None
    try:
        with open(cnf) as handle:
            found = re.search(r"^port\s*=\s*(\d+)", handle.read(), re.M)
    except OSError:
        return None
    return int(found.group(1)) if found else None


# Processes of ours besides the servers: the rsync SST of a Galera node (the joiner's
# wsrep_sst_rsync script and its rsync daemon, the donor's script and rsync client).
# A node SIGKILLed during an SST leaves them behind, holding its SST port: the next
# joiner on that port then fails ("rsync daemon terminated unexpectedly", status 16).
SERVER_NAMES = ("mariadbd", "mysqld")
HELPER_NAMES = ("rsync", "wsrep_sst_rsync")


def _argv(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return [a.decode(errors="replace") for a in handle.read().split(b"\0") if a]
    except OSError:
        return []


def _comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def processes_under(root, names=SERVER_NAMES + HELPER_NAMES):
    """[(pid, path)] of the processes called one of ``names`` (servers found in the
    process table, not through pid files) with an argument naming a path that
    starts with ``root``; ``path`` is the first such argument."""
    out = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        argv = _argv(entry)
        if not argv or (_comm(entry) not in names and os.path.basename(argv[0]) not in names):
            continue
        for arg in argv:
            start = arg.find(root)
            if start != -1:
                out.append((int(entry), arg[start:]))
                break
    return out


def kill_helpers(directory):
    """SIGKILL the SST helpers working for the server under ``directory``; wait them out."""
    pids = [pid for pid, _ in processes_under(directory.rstrip(os.sep) + os.sep, HELPER_NAMES)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in pids:
        _wait_exited(pid, 10)


def sweep_leftovers(ports, prefix=BASE_PREFIX):
    """Kill what a crashed earlier run left on ``ports`` (None: any port): only
    mariadbd processes whose --defaults-file lies in one of our throwaway base
    directories (with, for ``ports=None``, their SST helpers), and never those of
    another test process that is still alive (another run on this machine):
    ``check_ports_free`` then names them."""
    tmp = tempfile.gettempdir()
    me = os.getpid()
    killed = []
    names = SERVER_NAMES + (HELPER_NAMES if ports is None else ())
    for pid, path in processes_under(os.path.join(tmp, prefix), names):
        base = os.path.join(tmp, os.path.relpath(path, tmp).split(os.sep)[0])
        owner = live_owner(base)
        if owner is not None and owner != me:
            continue
        port = _cnf_port(_defaults_file(_argv(pid))) if _comm(pid) not in HELPER_NAMES else None
        if ports is None or port is None or port in ports:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
    for pid in killed:
        _wait_exited(pid, 10)


def _wait_exited(pid, timeout):
    """Until every thread of ``pid`` is gone (a zombie leader whose other threads
    still exit may still hold the ports)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            threads = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return True
        if len(threads) <= 1 and _zombie(pid):
            return True
        time.sleep(0.05)
    return False


def listener(port):
    """'pid N (argv...)' of the process listening on 127.0.0.1:port, or what is known."""
    import psutil
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                if conn.pid is None:
                    return "a process this user cannot see"
                try:
                    argv = " ".join(psutil.Process(conn.pid).cmdline())
                except psutil.Error:
                    argv = "?"
                cnf = _defaults_file(argv.split())
                base = os.path.dirname(os.path.dirname(cnf)) if cnf else ""
                owner = live_owner(base) if base else None
                whose = f"; a server of the live test process {owner}" if owner else ""
                return f"pid {conn.pid} ({argv[:200]}){whose}"
    except psutil.Error as exc:
        return f"unknown ({exc})"
    return "unknown"


def check_ports_free(ports, what):
    """Raise at once, naming the holder, when a port we are about to use is taken:
    a server started there could not bind, and we would talk to the holder instead
    (another run of these tests at the same time, for instance)."""
    busy = [port for port in ports if port_open(port)]
    if busy:
        raise RuntimeError(f"{what}: port(s) {busy} already in use before our servers start: "
                           + "; ".join(f"{p} by {listener(p)}" for p in busy)
                           + ". Two runs of tests/mysql at once (or tests/mysql spread over several "
                             "pytest-xdist workers) cannot share these fixed ports.")


def _zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def port_open(port, host="127.0.0.1"):
    import socket
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


class Instance:
    """One mariadbd under ``base/name``."""

    def __init__(self, base, name, port, settings):
        self.name, self.port = name, port
        self.dir = os.path.join(base, name)
        self.datadir = os.path.join(self.dir, "data")
        self.tmpdir = os.path.join(self.dir, "tmp")
        self.cnf = os.path.join(self.dir, "my.cnf")
        self.pid_file = os.path.join(self.dir, "mariadbd.pid")
        self.socket = os.path.join(self.dir, "mariadbd.sock")
        self.log = os.path.join(self.dir, "error.log")
        self.settings = settings

    # -- files -------------------------------------------------------------------
    def write_cnf(self):
        os.makedirs(self.datadir, exist_ok=True)
        os.makedirs(self.tmpdir, exist_ok=True)
        base = {
            "user": "mysql", "datadir": self.datadir, "tmpdir": self.tmpdir, "port": self.port,
            "bind-address": "127.0.0.1", "socket": self.socket, "pid-file": self.pid_file,
            "log-error": self.log, "skip-name-resolve": None, "innodb-buffer-pool-size": "64M",
            "innodb-log-file-size": "16M", "performance-schema": "OFF",
        }
        base.update(self.settings)
        lines = ["[mariadbd]"]
        for key, value in base.items():
            lines.append(key if value is None else f"{key} = {value}")
        with open(self.cnf, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        subprocess.run(["chown", "-R", "mysql:mysql", self.dir], check=True)

    def install(self, *extra):
        self.write_cnf()
        done = subprocess.run(["mariadb-install-db", f"--defaults-file={self.cnf}",
                               "--auth-root-authentication-method=normal", "--skip-test-db", *extra],
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"mariadb-install-db {self.name}: {done.stderr[-2000:]}")

    # -- processes ---------------------------------------------------------------
    def pid(self):
        try:
            with open(self.pid_file) as handle:
                pid = int(handle.read().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        if _zombie(pid) or not self.owns(pid):
            return None
        return pid

    def owns(self, pid):
        """``pid`` is a mariadbd started with our option file (not a reused pid)."""
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            return False
        return f"--defaults-file={self.cnf}".encode() in argv

    def start(self, *extra, wait=True, timeout=90):
        if self.pid():
            return
        subprocess.run(["setsid", "-f", "mariadbd", f"--defaults-file={self.cnf}", *extra],
                       check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        if wait:
            self.wait_ready(timeout)

    def wait_ready(self, timeout=90):
        """Until our server answers on our port, and it is ours: the server that
        answers must have our datadir (a server of someone else that holds the port
        makes ours fail to bind, and would answer in its place)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                conn = self.connect()
            except pymysql.err.OperationalError as exc:
                if exc.args[0] not in (2003, 2013, 1045, 2006):
                    raise
                time.sleep(0.1)
                continue
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT @@datadir, @@pid_file")
                    datadir, pid_file = cur.fetchone()
            except pymysql.err.OperationalError as exc:
                if exc.args[0] not in (2013, 2006):
                    raise
                time.sleep(0.1)
                continue
            finally:
                conn.close()
            self.check_identity(datadir, pid_file)
            return
        raise RuntimeError(f"{self.name} on {self.port} not ready after {timeout}s; log tail:\n"
                           + self.log_tail())

    def check_identity(self, datadir, pid_file=None):
        if os.path.realpath(datadir) != os.path.realpath(self.datadir):
            raise RuntimeError(
                f"{self.name}: the server answering on port {self.port} is not ours: its datadir is {datadir} "
                f"(pid file {pid_file}), ours {self.datadir}; port held by {listener(self.port)}. "
                f"Our server's log tail:\n{self.log_tail(10)}")

    def log_tail(self, lines=30):
        try:
            with open(self.log, errors="replace") as handle:
                return "".join(handle.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def kill(self):
        """SIGKILL, the way a crashed host looks; wait until the port is closed."""
        pid = self.pid()
        if pid:
            os.kill(pid, signal.SIGKILL)
            self._wait_gone(pid, 10)

    def stop(self, timeout=60):
        pid = self.pid()
        if not pid:
            return
        os.kill(pid, signal.SIGTERM)
        if not self._wait_gone(pid, timeout):
            os.kill(pid, signal.SIGKILL)
            self._wait_gone(pid, 10)

    def _wait_gone(self, pid, timeout):
        """Until the process is gone. A dead server whose zombie PID 1 has not reaped
        yet counts as gone (this machine's PID 1 is not an init and reaps slowly)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            if _zombie(pid):
                return True
            time.sleep(0.05)
        return False

    # -- SQL ---------------------------------------------------------------------
    def connect(self, **kw):
        params = {"host": "127.0.0.1", "port": self.port, "user": "root", "password": "",
                  "connect_timeout": 5, "autocommit": True}
        params.update(kw)
        return pymysql.connect(**params)

    def sql(self, *statements, fetch=False):
        """Run statements as root; return the rows (dicts) of the last one."""
        conn = self.connect(cursorclass=pymysql.cursors.DictCursor)
        try:
            with conn.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)
                return cur.fetchall()
        finally:
            conn.close()

    def one(self, statement):
        rows = self.sql(statement)
        return rows[0] if rows else None

    def status(self, connection=""):
        """SHOW SLAVE STATUS of one connection as a dict (None when not a replica)."""
        for row in self.sql("SHOW ALL SLAVES STATUS"):
            if row["Connection_name"] == connection:
                return row
        return None

    def wait_for(self, predicate, timeout=30, what="condition"):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(0.1)
        raise AssertionError(f"{self.name}: {what} not reached in {timeout}s (last: {last!r})")

    def __repr__(self):
        return f"Instance({self.name}:{self.port})"


# --- the replication pair ---------------------------------------------------------

def pair_settings(server_id, tls_dir=None):
    out = {"server-id": server_id, "log-bin": "binlog", "log-slave-updates": "ON",
           "binlog-format": "ROW", "relay-log": "relay", "gtid-domain-id": 0}
    if tls_dir:
        out.update({"ssl-ca": os.path.join(tls_dir, "ca.pem"),
                    "ssl-cert": os.path.join(tls_dir, "server.pem"),
                    "ssl-key": os.path.join(tls_dir, "server.key")})
    return out


def make_tls(directory):
    """A CA and a server certificate for 127.0.0.1 (openssl CLI, ~0.1 s)."""
    os.makedirs(directory, exist_ok=True)

    def run(*argv):
        subprocess.run(["openssl", *argv], check=True, capture_output=True, cwd=directory)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]   # ms, where RSA takes seconds
    run("req", "-x509", *ec, "-nodes", "-days", "2", "-subj", "/CN=autoremedy test CA",
        "-keyout", "ca.key", "-out", "ca.pem")
    run("req", *ec, "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr")
    with open(os.path.join(directory, "san.ext"), "w") as handle:
        handle.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "san.ext", "-out", "server.pem")
    # A second CA that signed nothing: the "wrong CA" case.
    run("req", "-x509", *ec, "-nodes", "-days", "2", "-subj", "/CN=other CA",
        "-keyout", "other-ca.key", "-out", "other-ca.pem")
    for name in os.listdir(directory):
        os.chmod(os.path.join(directory, name), 0o644)
    return directory


class Pair:
    """primary (3317) -> replica (3318), GTID (slave_pos), ROW binlogs.

    The default connection ignores GTID domain 5 (the Galera nodes' domain).
    The replication check and repair tests use replication_topology.py instead."""

    REPL_USER, REPL_PASSWORD = "repl", "replpw"

    def __init__(self, base):
        self.base = base
        self.tls_dir = make_tls(os.path.join(base, "tls"))
        self.primary = Instance(base, "primary", PAIR_PORTS[0], pair_settings(1))
        self.replica = Instance(base, "replica", PAIR_PORTS[1], pair_settings(2, self.tls_dir))

    def setup(self):
        check_ports_free(PAIR_PORTS, "the replication pair")
        # mariadb-install-db must not share a tmpdir (measured: concurrent runs collide); each has its own.
        for inst in (self.primary, self.replica):
            inst.install()
        for inst in (self.primary, self.replica):
            inst.start(wait=False)
        for inst in (self.primary, self.replica):
            inst.wait_ready()
        self.primary.sql(
            f"CREATE USER '{self.REPL_USER}'@'127.0.0.%' IDENTIFIED BY '{self.REPL_PASSWORD}'",
            f"GRANT REPLICATION SLAVE ON *.* TO '{self.REPL_USER}'@'127.0.0.%'")
        self.change_master("")
        self.replica.sql("START SLAVE")
        self.wait_caught_up()

    def change_master(self, connection, domains="IGNORE_DOMAIN_IDS=(5)", retry=60, port=None):
        """(Re)point a connection at the primary. MASTER_CONNECT_RETRY stays at the
        server default of 60 s, so a replica never recovers from a dead primary by
        itself within a test: what brings it back is the remediation."""
        self.replica.sql(
            f"CHANGE MASTER '{connection}' TO MASTER_HOST='127.0.0.1', MASTER_PORT={port or self.primary.port}, "
            f"MASTER_USER='{self.REPL_USER}', MASTER_PASSWORD='{self.REPL_PASSWORD}', "
            f"MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY={retry}, {domains}")

    def wait_caught_up(self, connection="", timeout=30):
        target = self.primary.one("SELECT @@gtid_binlog_pos AS p")["p"]

        def done():
            row = self.replica.status(connection)
            if row is None or row["Slave_SQL_Running"] != "Yes":
                return None
            pos = self.replica.one("SELECT @@gtid_slave_pos AS p")["p"]
            return all(g in pos.split(",") for g in target.split(",") if g and not g.startswith("5-")) or None
        self.replica.wait_for(done, timeout, f"replica caught up to {target}")

    def shutdown(self):
        # The data is thrown away: SIGKILL (instant) rather than SIGTERM (3-4 s each).
        for inst in (self.replica, self.primary):
            inst.kill()


def wait_until(predicate, timeout=30, interval=0.2, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} not reached in {timeout}s (last: {last!r})")


def perfdata(line):
    """{'label': 'value'} from a Nagios status line (first line of the output)."""
    first = line.splitlines()[0] if line else ""
    if "|" not in first:
        return {}
    return dict(re.findall(r"'([^']+)'=([^;\s]*)", first.split("|", 1)[1]))


def remove(base):
    shutil.rmtree(base, ignore_errors=True)
