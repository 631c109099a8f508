"""A throwaway 3-node MariaDB Galera cluster for the tests (never the shared server).

Nodes g1, g2, g3, each with its own my.cnf, datadir, tmpdir, socket, pid file and
error log under one base directory, and its own ports (docs/DEVELOPING.md):

| node | SQL  | gcomm | IST  | SST (rsync) |
|------|------|-------|------|-------------|
| g1   | 3321 | 4571  | 4572 | 4574        |
| g2   | 3322 | 4581  | 4582 | 4584        |
| g3   | 3323 | 4591  | 4592 | 4594        |

Under its own base directory (prefix ``autoremedy-galera-``), swept of
leftovers of a crashed run on start. Bootstrapped from g1; g2 and g3 join by
rsync SST. Faults are made for real:
SIGKILL (a crash), ``gmcast.isolate=1`` (a network partition: the node keeps
running alone in its own component), ``pc.weight`` (who keeps quorum). ``heal()``
brings the cluster back to 3 nodes Synced whatever a test left behind, so the
session shares one cluster (set-up 10-20 s on the shared machine).

The nodes binlog in GTID domain 5 with a replication login on g1, so the
replication tests can use g1 as a second primary of their replica.
"""
import os
import re
import shutil
import signal
import subprocess
import time

import pymysql

import mysql_instances as mi

PROVIDER = "/usr/lib/galera/libgalera_smm.so"
CLUSTER_NAME = "autoremedy-test"
GTID_DOMAIN = 5
# name: (SQL, gcomm, IST, SST)
NODES = {"g1": (3321, 4571, 4572, 4574), "g2": (3322, 4581, 4582, 4584), "g3": (3323, 4591, 4592, 4594)}
# Its own base directory prefix: the replication pair's sweep of leftovers
# (mysql_instances.sweep_leftovers) never reaches these servers, and ours never theirs.
BASE_PREFIX = "autoremedy-galera-"
SQL_PORTS = tuple(p[0] for p in NODES.values())
WITNESS = "witness.t"


def gcomm_address(name):
    return f"127.0.0.1:{NODES[name][1]}"


def settings(name, ports):
    sql, gcomm, ist, sst = ports
    return {
        "server-id": 10 + int(name[1:]), "log-bin": "binlog", "gtid-domain-id": GTID_DOMAIN,
        "binlog_format": "ROW", "default_storage_engine": "InnoDB", "innodb_autoinc_lock_mode": 2,
        "wsrep_on": "ON", "wsrep_provider": PROVIDER, "wsrep_cluster_name": CLUSTER_NAME,
        "wsrep_cluster_address": "gcomm://" + ",".join(gcomm_address(n) for n in NODES),
        "wsrep_node_address": f"127.0.0.1:{gcomm}", "wsrep_node_name": name,
        "wsrep_node_incoming_address": f"127.0.0.1:{sql}",
        "wsrep_provider_options": f'"gmcast.listen_addr=tcp://127.0.0.1:{gcomm};ist.recv_addr=127.0.0.1:{ist}"',
        "wsrep_sst_method": "rsync", "wsrep_sst_receive_address": f"127.0.0.1:{sst}",
    }


class Node(mi.Instance):
    """A Galera node, found in the process table by its --defaults-file (a node
    waiting for a Primary, or one that failed half-way, may have no pid file or
    a stale one: the test must never lose track of a server it started)."""

    def pid(self):
        pids = self.pids()
        return pids[0] if pids else None

    def pids(self):
        wanted = f"--defaults-file={self.cnf}".encode()
        return [pid for pid, argv in processes() if wanted in argv and b"--wsrep-recover" not in argv
                and not gone(pid)]

    def kill(self):
        """SIGKILL the server, and the SST helpers (rsync) it leaves behind otherwise."""
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            wait_exited(pid)
        mi.kill_helpers(self.dir)


class Cluster:
    """g1 + g2 + g3 under ``base``."""

    def __init__(self, base):
        self.base = base
        self.nodes = {name: Node(base, name, ports[0], settings(name, ports))
                      for name, ports in NODES.items()}
        self.g1, self.g2, self.g3 = (self.nodes[n] for n in NODES)

    # -- life cycle -----------------------------------------------------------------
    def setup(self):
        mi.check_ports_free([port for ports in NODES.values() for port in ports], "the Galera cluster")
        self.g1.install("--wsrep-on=OFF")
        for node in (self.g2, self.g3):
            node.write_cnf()          # empty datadir: a full SST from g1
        self.g1.start("--wsrep-new-cluster")
        self.g2.start()
        self.g3.start()
        self.wait_whole()
        self.replication_login()

    def shutdown(self):
        # The data is thrown away: SIGKILL, in parallel (SIGTERM takes seconds each).
        for node in self.nodes.values():
            for pid in node.pids():
                os.kill(pid, signal.SIGKILL)
        for node in self.nodes.values():
            node.kill()

    # -- reading (raw SQL: independent of autoremedy's code) -----------------------------
    def wsrep(self, node):
        return {r["Variable_name"]: r["Value"] for r in node.sql("SHOW GLOBAL STATUS LIKE 'wsrep%'")}

    def try_wsrep(self, node):
        try:
            return self.wsrep(node)
        except pymysql.err.MySQLError:
            return None

    def primary_components(self):
        """{frozenset(member SQL ports)} of the running nodes that say Primary."""
        out = set()
        for node in self.nodes.values():
            status = self.try_wsrep(node)
            if status and status.get("wsrep_cluster_status") == "Primary":
                out.add(frozenset(a.rsplit(":", 1)[1] for a in status["wsrep_incoming_addresses"].split(",")))
        return out

    def rows(self, node, table=WITNESS):
        """Rows of ``table`` on ``node``, also on a non-Primary node (dirty reads)."""
        return _count(node, table)

    def wait_whole(self, timeout=90):
        """Every node Primary, Synced, in one component of 3."""
        def ok():
            for node in self.nodes.values():
                status = self.try_wsrep(node)
                if not status or status.get("wsrep_cluster_status") != "Primary" \
                        or status.get("wsrep_local_state") != "4" or status.get("wsrep_cluster_size") != "3":
                    return None
            return True
        try:
            mi.wait_until(ok, timeout, what="3 nodes Primary and Synced")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.describe()}") from None

    def rejoin(self, *nodes, timeout=90):
        """Crashed nodes started by their services one at a time, each Synced in the
        Primary component before the next starts, then the cluster whole. Two joiners
        at once on 2 loaded cores once (a clean-clone run, 2026-12-07) left one of them
        in a non-Primary final view, alive but out of the cluster, where no service
        manager restarts anything; one joiner at a time is how operators bring nodes
        back."""
        for node in nodes:
            service_start(node)
            self.wait_status(node, "wsrep_local_state", "4", timeout=timeout)
        self.wait_whole(timeout=timeout)

    def wait_status(self, node, key, value, timeout=60):
        try:
            return mi.wait_until(lambda: (self.try_wsrep(node) or {}).get(key) == value, timeout,
                                 interval=0.2, what=f"{node.name} {key}={value}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.describe()}") from None

    def describe(self):
        """Each node's state, pc.weight and error log tail: what a failed wait shows."""
        out = []
        for node in self.nodes.values():
            status = self.try_wsrep(node)
            if status is None:
                state = f"not answering (pids {node.pids()})"
            else:
                state = ", ".join(f"{k[6:]}={status.get(k)}" for k in (
                    "wsrep_cluster_status", "wsrep_local_state_comment", "wsrep_cluster_size", "wsrep_connected",
                    "wsrep_incoming_addresses"))
                state += f", pc.weight={self.option(node, 'pc.weight')}"
            out.append(f"--- {node.name}: {state}; log tail:\n{node.log_tail(12)}")
        return "\n".join(out)

    def option(self, node, key):
        """A value of the node's wsrep_provider_options (None if it does not answer)."""
        try:
            options = node.one("SELECT @@wsrep_provider_options AS o")["o"] or ""
        except pymysql.err.MySQLError:
            return None
        found = re.search(rf"(?:^|;)\s*{re.escape(key)}\s*=\s*([^;]*)", options)
        return found.group(1).strip() if found else None

    # -- faults -----------------------------------------------------------------------
    def kill(self, *names):
        """SIGKILL (a crash), all at once."""
        for name in names:
            for pid in self.nodes[name].pids():
                os.kill(pid, signal.SIGKILL)
        for name in names:
            self.nodes[name].kill()

    def isolate(self, *names):
        """A partition: each node alone in its own component (gmcast.isolate)."""
        for name in names:
            self.nodes[name].sql("SET GLOBAL wsrep_provider_options='gmcast.isolate=1'")

    def weight(self, name, weight):
        self.nodes[name].sql(f"SET GLOBAL wsrep_provider_options='pc.weight={int(weight)}'")

    def witness(self, count=100):
        """A fresh witness table with ``count`` rows, written through g1 and Synced."""
        self.g1.sql("CREATE DATABASE IF NOT EXISTS witness", "DROP TABLE IF EXISTS witness.t",
                    "CREATE TABLE witness.t (id INT PRIMARY KEY, node VARCHAR(8))")
        values = ",".join(f"({i}, 'g1')" for i in range(1, count + 1))
        self.g1.sql(f"INSERT INTO witness.t VALUES {values}")
        for node in self.nodes.values():
            mi.wait_until(lambda n=node: _count(n, WITNESS) == count, 30, what=f"{node.name} has {count} rows")
        return count

    # -- repair (between tests) -----------------------------------------------------------
    def heal(self):
        """3 nodes up, Synced, weights 1, not isolated, whatever a test left behind.
        g1 is kept whenever it runs (the replication tests use its binlog); a node
        that cannot rejoin the leader's component is killed, wiped and rejoins by SST
        (throwaway data)."""
        for node in self.nodes.values():
            if self.try_wsrep(node) is not None:
                # One option per statement: a non-Primary node refuses pc.weight (error 1210).
                for option in ("gmcast.isolate=0", "pc.weight=1"):
                    try:
                        node.sql(f"SET GLOBAL wsrep_provider_options='{option}'")
                    except pymysql.err.MySQLError:
                        pass
        if not self._whole(timeout=8):
            self._rebuild()
        self._weights_one()
        self.replication_login()

    def _weights_one(self, timeout=30):
        """pc.weight 1 on every node, checked: the weight a test gave a node (g3: 3)
        outlives heal() when the SET above is refused (the node was not Primary, or
        its view was changing as the others rejoined), and a node still weighing 3
        keeps a Primary component of its own when the others are cut off."""
        deadline = time.monotonic() + timeout
        for node in self.nodes.values():
            last = None
            while self.option(node, "pc.weight") != "1":
                if time.monotonic() > deadline:
                    raise AssertionError(f"{node.name}: pc.weight not 1 after {timeout}s (last error: {last})\n"
                                         f"{self.describe()}")
                try:
                    node.sql("SET GLOBAL wsrep_provider_options='pc.weight=1'")
                except pymysql.err.MySQLError as exc:
                    last = exc
                time.sleep(0.2)
        self.wait_whole()

    def replication_login(self):
        """The login the replication tests use on g1 (not binlogged, not replicated)."""
        if not self.g1.sql(f"SELECT 1 FROM mysql.user WHERE user = '{mi.Pair.REPL_USER}' AND host = '127.0.0.1'"):
            self.g1.sql("SET SESSION sql_log_bin=0", "SET SESSION wsrep_on=0",
                        f"CREATE USER '{mi.Pair.REPL_USER}'@'127.0.0.1' IDENTIFIED BY '{mi.Pair.REPL_PASSWORD}'",
                        f"GRANT REPLICATION SLAVE ON *.* TO '{mi.Pair.REPL_USER}'@'127.0.0.1'")

    def _rebuild(self):
        answering = {n.name: s for n, s in ((n, self.try_wsrep(n)) for n in self.nodes.values()) if s}
        if not answering:
            self._restart_all()
            return
        primary = [name for name, s in answering.items() if s.get("wsrep_cluster_status") == "Primary"]
        pool = primary or list(answering)
        leader = self.nodes["g1"] if "g1" in pool else \
            self.nodes[max(pool, key=lambda n: int(answering[n].get("wsrep_last_committed") or -1))]
        if answering[leader.name].get("wsrep_cluster_status") != "Primary" and not self._bootstrap(leader):
            self._restart_all()
            return
        self.wait_status(leader, "wsrep_local_state", "4")
        members = lambda: {a.rsplit(":", 1)[1] for a in  # noqa: E731
                           self.wsrep(leader)["wsrep_incoming_addresses"].split(",")}
        for node in self.nodes.values():
            if node is not leader and str(node.port) not in members():
                node.kill()
                wipe(node)
                node.start(wait=False)
        self.wait_whole(timeout=120)

    def _bootstrap(self, node, timeout=15):
        """pc.bootstrap on a non-Primary node; False when its provider keeps refusing
        it (error 1210: its view still changing, or disconnected for good, as the
        partition test could leave it on 2 loaded cores: 2 of 4 runs, 2026-12-07)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                node.sql("SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'")
                return True
            except pymysql.err.MySQLError:
                if time.monotonic() > deadline:
                    print(f"\n{node.name} refused pc.bootstrap for {timeout}s: every node restarted")
                    return False
                time.sleep(0.5)

    def _restart_all(self):
        """Nothing answers, or the leader refuses to bootstrap: start every node as its
        service would (pc.recovery); if that does not bring a Primary back, bootstrap
        the most advanced."""
        for node in self.nodes.values():
            node.kill()
        for node in self.nodes.values():
            service_start(node)
        if self._whole(timeout=40):
            return
        for node in self.nodes.values():
            node.kill()
        leader = max(self.nodes.values(), key=recovered_seqno)
        set_safe_to_bootstrap(leader)
        leader.start("--wsrep-new-cluster")
        for node in self.nodes.values():
            if node is not leader:
                wipe(node)
                node.start(wait=False)
        self.wait_whole(timeout=120)

    def _whole(self, timeout=0.5):
        try:
            self.wait_whole(timeout=timeout)
            return True
        except AssertionError:
            return False


def gone(pid):
    """Exited for good: no thread left but a zombie leader (or no process)."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True
    return len(threads) <= 1 and mi._zombie(pid)


def wait_exited(pid, timeout=10):
    """Until every thread of ``pid`` is gone. The thread group leader shows as a
    zombie while its other threads still exit and hold the sockets: a node
    started again at that moment fails with "bind: Address already in use"."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.05)
    return False


def wipe(node):
    """Empty a stopped node's datadir: it rejoins by a full SST."""
    shutil.rmtree(node.datadir, ignore_errors=True)
    os.makedirs(node.datadir)
    subprocess.run(["chown", "mysql:mysql", node.datadir], check=True)


def make_base():
    return mi.make_base(BASE_PREFIX)


def sweep_leftovers():
    """Kill servers a crashed earlier run of this module left behind (only
    mariadbd processes whose --defaults-file lies under our own prefix, and never
    those of a test process still alive: mysql_instances.sweep_leftovers)."""
    mi.sweep_leftovers(None, prefix=BASE_PREFIX)


def processes():
    """(pid, argv as bytes) of every process (the process table, not pid files)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                yield int(entry), handle.read().split(b"\0")
        except OSError:
            continue


def _count(node, table):
    conn = node.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION wsrep_dirty_reads=1")
            cur.execute(f"SELECT COUNT(*) FROM {table}")
            return cur.fetchone()[0]
    finally:
        conn.close()


def recovered_position(node):
    """'uuid:seqno' that ``mariadbd --wsrep-recover`` finds (None if nothing)."""
    log = os.path.join(node.tmpdir, "recover.log")
    subprocess.run(["mariadbd", f"--defaults-file={node.cnf}", "--wsrep-recover", f"--log-error={log}"],
                   capture_output=True, timeout=120)
    try:
        with open(log, errors="replace") as handle:
            found = re.findall(r"Recovered position: ([0-9a-f-]+:-?\d+)", handle.read())
    except OSError:
        found = []
    return found[-1] if found else None


def recovered_seqno(node):
    position = recovered_position(node)
    return int(position.rsplit(":", 1)[1]) if position else -1


def service_start(node, wait=False):
    """Start a node the way its service does after a crash: the Debian/RHEL units run
    galera_recovery (``mariadbd --wsrep-recover``) first and pass the position with
    ``--wsrep-start-position``. Started without it, a crashed node joins with an
    undefined position (00000000-...:-1)."""
    position = recovered_position(node)
    extra = [f"--wsrep-start-position={position}"] if position else []
    node.start(*extra, wait=wait)


def set_safe_to_bootstrap(node):
    path = os.path.join(node.datadir, "grastate.dat")
    with open(path) as handle:
        text = handle.read()
    with open(path, "w") as handle:
        handle.write(re.sub(r"safe_to_bootstrap:\s*\d", "safe_to_bootstrap: 1", text))


# --- what the remediation tests configure --------------------------------------------------

def config(cluster, root_cnf, guards=None, **kw):
    """A whole configuration: the three nodes in mysql.servers (root over TCP) and
    remediations.galera.targets.test (``target``); guards relaxed unless given."""
    return {
        "mysql": {"option_file": root_cnf, "connect_timeout": 3,
                  "servers": {name: {"host": "127.0.0.1", "port": ports[0]} for name, ports in NODES.items()}},
        "guards": guards or {"rate_limit": {"max": 100, "per": 3600}, "global_cap": {"max": 100, "per": 3600},
                             "flap": {"changes": 1000, "window": 60}},
        "remediations": target(cluster, **kw),
    }


def target(cluster, nodes=("g1", "g2", "g3"), files=("g1", "g2", "g3"), probes=(), probe_cmd=None,
           bootstrap=True, settle=5, window=1, witness=(WITNESS,)):
    """remediations.galera.targets.test: ``files`` nodes are proven down through
    their option file on this host, ``probes`` through a probe command
    (``probe_cmd(node)`` -> argv), the rest are remote without a probe."""
    spec = {}
    for name in nodes:
        entry = {"server": name}
        if name in files:
            entry["defaults_file"] = cluster.nodes[name].cnf
        elif name in probes:
            entry["probe"] = probe_cmd(cluster.nodes[name])
        spec[name] = entry
    return {"galera": {"enabled": True, "targets": {"test": {
        "nodes": spec, "bootstrap": bootstrap, "settle": settle, "window": window, "witness": list(witness)}}}}


# A stand-in for mariadbd on the remediation's PATH (AUTOREMEDY_EXEC_PATH): it records
# every --wsrep-recover and refuses (exit 97, logged LIVE) when a live server holds
# the datadir - what must never happen. Anything else is handed to the real mariadbd.
RECOVER_GUARD = r'''#!/usr/bin/env python3
import os, re, sys
LOG = {log!r}
REAL = {real!r}
args = sys.argv[1:]
if "--wsrep-recover" in args:
    cnf = next((a.split("=", 1)[1] for a in args if a.startswith("--defaults-file=")), "")
    text = open(cnf).read() if cnf else ""
    found = re.search(r"^datadir\s*=\s*(\S+)", text, re.M)
    datadir = os.path.realpath(found.group(1)) if found else "?"
    live = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) in (os.getpid(), os.getppid()):
            continue
        try:
            comm = open(f"/proc/{{pid}}/comm").read().strip()
            cwd = os.path.realpath(os.readlink(f"/proc/{{pid}}/cwd"))
        except OSError:
            continue
        if comm in ("mariadbd", "mysqld") and cwd == datadir:
            live.append(pid)
    with open(LOG, "a") as log:
        log.write(("LIVE " if live else "RECOVER ") + datadir + " " + ",".join(live) + "\n")
    if live:
        sys.exit(97)
os.execv(REAL, [REAL] + args)
'''


def recover_guard(directory):
    """(PATH value for AUTOREMEDY_EXEC_PATH, log path) of the mariadbd stand-in."""
    os.makedirs(directory, exist_ok=True)
    log = os.path.join(directory, "recover.log")
    path = os.path.join(directory, "mariadbd")
    with open(path, "w") as handle:
        handle.write(RECOVER_GUARD.format(log=log, real=shutil.which("mariadbd", path=SAFE_PATH)))
    os.chmod(path, 0o755)
    open(log, "w").close()
    return f"{directory}:{SAFE_PATH}", log


def recover_calls(log):
    with open(log) as handle:
        return [line.split()[:2] for line in handle if line.strip()]


SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
