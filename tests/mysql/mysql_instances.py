"""Throwaway MariaDB servers for the tests: a GTID primary/replica pair and a 2-node Galera.

Each instance has its own my.cnf, datadir, tmpdir, socket, pid file and error log
under one base directory, and its own ports (docs/DEVELOPING.md): the machine's
shared MariaDB on 3306 is never touched. Servers are started with ``setsid -f``
(a SIGKILLed child must not linger as a zombie that ``kill -0`` still sees) and
found again through their pid files. Facts and timings: reference/rabbitmq-mysql.md
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
GALERA_PROVIDER = "/usr/lib/galera/libgalera_smm.so"
PAIR_PORTS = (3317, 3318)
# The Galera nodes binlog in GTID domain 5, so g1 can be a second primary of the
# replica (multi-source needs another server: two connections to one primary fight
# over the replica's server_id).
GALERA_DOMAIN = 5
GALERA_NODES = {"g1": (3321, 4571, 4572, 4574), "g2": (3322, 4581, 4582, 4584)}


def make_base():
    """A base directory the mysql user can traverse (pytest's tmp dirs are 0700)."""
    base = tempfile.mkdtemp(prefix=BASE_PREFIX)
    os.chmod(base, 0o755)
    return base


def sweep_leftovers(ports):
    """Kill servers a crashed earlier run left on our ports: only mariadbd processes
    whose --defaults-file lies in one of our throwaway base directories."""
    import psutil
    tmp = tempfile.gettempdir()
    for proc in psutil.process_iter(["name", "cmdline"]):
        argv = proc.info.get("cmdline") or []
        if proc.info.get("name") not in ("mariadbd", "mysqld"):
            continue
        cnf = next((a.split("=", 1)[1] for a in argv if a.startswith("--defaults-file=")), "")
        if not cnf.startswith(os.path.join(tmp, BASE_PREFIX)):
            continue
        try:
            with open(cnf) as handle:
                port = re.search(r"^port\s*=\s*(\d+)", handle.read(), re.M)
        except OSError:
            port = None
        if port is None or int(port.group(1)) in ports:
            try:
                proc.kill()
                proc.wait(10)
            except psutil.Error:
                pass


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
        return None if _zombie(pid) else pid

    def start(self, *extra, wait=True, timeout=60):
        if self.pid():
            return
        subprocess.run(["setsid", "-f", "mariadbd", f"--defaults-file={self.cnf}", *extra],
                       check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        if wait:
            self.wait_ready(timeout)

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.connect().close()
                return
            except pymysql.err.OperationalError as exc:
                if exc.args[0] not in (2003, 2013, 1045, 2006):
                    raise
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} on {self.port} not ready after {timeout}s; log tail:\n"
                           + self.log_tail())

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

    The default connection ignores GTID domain 5, which the named connection
    ``east`` (tests of multi-source) replicates from the same primary."""

    REPL_USER, REPL_PASSWORD = "repl", "replpw"

    def __init__(self, base):
        self.base = base
        self.tls_dir = make_tls(os.path.join(base, "tls"))
        self.primary = Instance(base, "primary", PAIR_PORTS[0], pair_settings(1))
        self.replica = Instance(base, "replica", PAIR_PORTS[1], pair_settings(2, self.tls_dir))

    def setup(self):
        # mariadb-install-db must not share a tmpdir (reference §4); each has its own.
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

    def heal(self):
        """Back to the healthy baseline between tests, whatever a test left behind:
        primary running, no named connections, the default connection running and
        caught up. Test data lives in per-test databases, so skipping a leftover
        failed event or jumping past purged binlogs here harms nothing."""
        if not self.primary.pid():
            self.primary.start()
        replica = self.replica
        replica.sql("SET GLOBAL slave_exec_mode='STRICT'")
        for row in replica.sql("SHOW ALL SLAVES STATUS"):
            if row["Connection_name"] != "":
                replica.sql(f"STOP SLAVE '{row['Connection_name']}'",
                            f"RESET SLAVE '{row['Connection_name']}' ALL")
        for _ in range(50):
            row = replica.status("")
            if row is None:
                self.change_master("")
                replica.sql("START SLAVE")
            elif row["Last_IO_Errno"] == 1236:
                position = self.primary.one("SELECT @@gtid_binlog_pos AS p")["p"]
                replica.sql("STOP SLAVE", f"SET GLOBAL gtid_slave_pos = '{position}'", "START SLAVE")
            elif row["Slave_SQL_Running"] != "Yes":
                if row["Last_SQL_Errno"]:
                    replica.sql("SET GLOBAL sql_slave_skip_counter = 1")
                replica.sql("START SLAVE SQL_THREAD")
            elif row["Slave_IO_Running"] != "Yes":
                replica.sql("STOP SLAVE IO_THREAD", "START SLAVE IO_THREAD")
            else:
                break
            time.sleep(0.2)
        self.wait_caught_up()

    def shutdown(self):
        # The data is thrown away: SIGKILL (instant) rather than SIGTERM (3-4 s each).
        for inst in (self.replica, self.primary):
            inst.kill()


# --- Galera ----------------------------------------------------------------------

def galera_settings(name, others, ports):
    sql, gcomm, ist, sst = ports
    return {
        "server-id": 10 + int(name[1:]), "log-bin": "binlog", "gtid-domain-id": GALERA_DOMAIN,
        "binlog_format": "ROW", "default_storage_engine": "InnoDB", "innodb_autoinc_lock_mode": 2,
        "wsrep_on": "ON", "wsrep_provider": GALERA_PROVIDER, "wsrep_cluster_name": "autoremedy-test",
        "wsrep_cluster_address": "gcomm://" + ",".join(f"127.0.0.1:{p[1]}" for p in others),
        "wsrep_node_address": f"127.0.0.1:{gcomm}", "wsrep_node_name": name,
        "wsrep_provider_options": f'"gmcast.listen_addr=tcp://127.0.0.1:{gcomm};ist.recv_addr=127.0.0.1:{ist}"',
        "wsrep_sst_method": "rsync", "wsrep_sst_receive_address": f"127.0.0.1:{sst}",
    }


class Galera:
    """g1 (3321) + g2 (3322), bootstrapped from g1, g2 joined by rsync SST."""

    def __init__(self, base):
        self.base = base
        allports = list(GALERA_NODES.values())
        self.nodes = {name: Instance(base, name, ports[0], galera_settings(name, allports, ports))
                      for name, ports in GALERA_NODES.items()}
        self.g1, self.g2 = self.nodes["g1"], self.nodes["g2"]

    def setup(self):
        self.g1.install("--wsrep-on=OFF")
        self.g2.write_cnf()  # empty datadir: it receives a full SST from g1
        self.g1.start("--wsrep-new-cluster")
        self.g2.start()
        self.wait_size(2)
        # A replication login (not binlogged), so the pair's replica can use g1 as a
        # second primary.
        self.g1.sql("SET SESSION sql_log_bin=0",
                    f"CREATE USER '{Pair.REPL_USER}'@'127.0.0.1' IDENTIFIED BY '{Pair.REPL_PASSWORD}'",
                    f"GRANT REPLICATION SLAVE ON *.* TO '{Pair.REPL_USER}'@'127.0.0.1'")

    def wsrep(self, node):
        return {r["Variable_name"]: r["Value"] for r in node.sql("SHOW GLOBAL STATUS LIKE 'wsrep%'")}

    def wait_size(self, size, timeout=60):
        def ok():
            for node in self.nodes.values():
                if not node.pid():
                    continue
                try:
                    status = self.wsrep(node)
                except pymysql.err.MySQLError:
                    return None
                if (status.get("wsrep_cluster_status") != "Primary" or status.get("wsrep_local_state") != "4"
                        or int(status.get("wsrep_cluster_size", 0)) != size):
                    return None
            return True
        self.g1.wait_for(ok, timeout, f"cluster of {size}, all Synced")

    def heal(self):
        """Both nodes up and Synced, whatever a test left behind."""
        up = [n for n in self.nodes.values() if n.pid()]
        if not up:
            self.bootstrap_most_advanced()
            up = [n for n in self.nodes.values() if n.pid()]
        for node in up:
            if self.wsrep(node).get("wsrep_cluster_status") != "Primary":
                node.sql("SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'")
        for node in self.nodes.values():
            if not node.pid():
                node.start()
        self.wait_size(2)

    def bootstrap_most_advanced(self):
        best = max(self.nodes.values(), key=lambda n: recovered_seqno(n))
        grastate = os.path.join(best.datadir, "grastate.dat")
        with open(grastate) as handle:
            text = handle.read()
        with open(grastate, "w") as handle:
            handle.write(re.sub(r"safe_to_bootstrap:\s*\d", "safe_to_bootstrap: 1", text))
        best.start("--wsrep-new-cluster")

    def shutdown(self):
        for node in self.nodes.values():
            node.kill()


def recovered_seqno(node):
    log = os.path.join(node.tmpdir, "recover.log")
    subprocess.run(["mariadbd", f"--defaults-file={node.cnf}", "--wsrep-recover", f"--log-error={log}"],
                   capture_output=True, timeout=120)
    try:
        with open(log, errors="replace") as handle:
            found = re.findall(r"Recovered position: [0-9a-f-]+:(-?\d+)", handle.read())
    except OSError:
        found = []
    return int(found[-1]) if found else -1


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
