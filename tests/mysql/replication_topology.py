"""A throwaway replication topology for the repair tests: source, replica, sibling, chained replica.

    source (3311) ──> replica (3312) ──> chained (3314)
          └─────────> sibling (3313)

Every server: GTID (``MASTER_USE_GTID=slave_pos``), ``gtid_strict_mode=1``,
``log_slave_updates``, ROW binlogs, its own datadir/tmpdir/socket under one
temp base (tests/mysql/mysql_instances.py ``Instance``). Ports 3310-3319 belong
to this area; the shared MariaDB on 3306 is never touched.

``reset()`` brings the whole topology back to an empty, equal, running
baseline in well under a second (no reinstall): every user database dropped
without binlogging, ``RESET MASTER`` / ``RESET SLAVE`` everywhere, connections
re-pointed, started and caught up. Tests share one topology per session.

``Writer`` is the steady writer the issue asks for; ``snapshot`` reads every
table of every user database on two servers *without autoremedy's code*
(ordered rows hashed in Python) once the replica has reached the source's
position (``MASTER_GTID_WAIT``) with the writer paused.
"""
import hashlib
import threading
import time

import pymysql

import mysql_instances as mi

PORTS = {"source": 3311, "replica": 3312, "sibling": 3313, "chained": 3314}
UPSTREAM = {"replica": "source", "sibling": "source", "chained": "replica"}
SYSTEM = ("mysql", "information_schema", "performance_schema", "sys")
REPL_USER, REPL_PASSWORD = "repl", "replpw"


def settings(server_id):
    return {"server-id": server_id, "log-bin": "binlog", "log-slave-updates": "ON",
            "binlog-format": "ROW", "relay-log": "relay", "gtid-domain-id": 0,
            "gtid-strict-mode": 1, "max-connections": 60}


class Node(mi.Instance):
    def connect(self, **kw):
        # TLS off: PyMySQL's "preferred" mode loads the CA store (~30 ms) per connection.
        kw.setdefault("ssl_disabled", True)
        return super().connect(**kw)


class Topology:
    def __init__(self, base):
        self.base = base
        self.nodes = {name: Node(base, f"topo-{name}", port, settings(10 + i + 1))
                      for i, (name, port) in enumerate(PORTS.items())}
        self.source = self.nodes["source"]
        self.replica = self.nodes["replica"]
        self.sibling = self.nodes["sibling"]
        self.chained = self.nodes["chained"]
        self.writers = []           # steady writers started by tests: stopped by reset()

    # -- lifecycle -------------------------------------------------------------
    def setup(self):
        mi.check_ports_free(PORTS.values(), "the replication topology")
        threads = [threading.Thread(target=n.install) for n in self.nodes.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for node in self.nodes.values():
            node.start(wait=False)
        for node in self.nodes.values():
            node.wait_ready()
        for node in self.nodes.values():
            # Not binlogged: every server gets the same login, no GTID is spent on it.
            node.sql("SET SESSION sql_log_bin=0",
                     f"CREATE USER '{REPL_USER}'@'127.0.0.%' IDENTIFIED BY '{REPL_PASSWORD}'",
                     f"GRANT REPLICATION SLAVE ON *.* TO '{REPL_USER}'@'127.0.0.%'")
        self.reset()

    def shutdown(self):
        for node in self.nodes.values():
            node.kill()

    def __enter__(self):
        try:
            self.setup()
        except BaseException:
            self.shutdown()
            raise
        return self

    def __exit__(self, *exc):
        self.shutdown()
        return False

    def point(self, name, upstream=None, connection="", retry=1, domains="DO_DOMAIN_IDS=(), IGNORE_DOMAIN_IDS=()"):
        """(Re)point a connection. MASTER_CONNECT_RETRY=1 lets a replica come back by
        itself at once; a test that shows the remediation reconnecting sets 60.
        CHANGE MASTER keeps options it is not given: the domain filters are reset."""
        port = self.nodes[upstream or UPSTREAM[name]].port
        self.nodes[name].sql(
            f"CHANGE MASTER '{connection}' TO MASTER_HOST='127.0.0.1', MASTER_PORT={port}, "
            f"MASTER_USER='{REPL_USER}', MASTER_PASSWORD='{REPL_PASSWORD}', "
            f"MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY={retry}, {domains}")

    def second_source(self, domain=8):
        """Multi-source: the replica's named connection 'east' from the sibling, which
        writes its own transactions in GTID domain ``domain`` (east_db); the default
        connection ignores that domain, 'east' takes only it."""
        self.replica.sql("STOP SLAVE ''")
        self.point("replica", domains=f"DO_DOMAIN_IDS=(), IGNORE_DOMAIN_IDS=({domain})")
        self.point("replica", upstream="sibling", connection="east",
                   domains=f"DO_DOMAIN_IDS=({domain}), IGNORE_DOMAIN_IDS=()")
        self.replica.sql("START SLAVE ''", "START SLAVE 'east'")
        self.sibling.sql(f"SET SESSION gtid_domain_id = {domain}", "CREATE DATABASE east_db",
                         "CREATE TABLE east_db.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20))",
                         "INSERT INTO east_db.t (v) VALUES ('east')")
        position = self.sibling.one("SELECT @@gtid_binlog_pos AS p")["p"]
        wanted = ",".join(g for g in position.split(",") if g.startswith(f"{domain}-"))
        waited = self.replica.one(f"SELECT MASTER_GTID_WAIT('{wanted}', 15) AS w")["w"]
        assert waited == 0, self.replica.status("east")

    def reset(self):
        """Empty, equal and replicating again, whatever the last test left behind
        (a writer a failed test left running included)."""
        while self.writers:
            self.writers.pop().stop()
        for node in self.nodes.values():
            if not node.pid():
                node.start()
        for name in UPSTREAM:
            node = self.nodes[name]
            node.sql("STOP ALL SLAVES")
            for row in node.sql("SHOW ALL SLAVES STATUS"):
                if row["Connection_name"]:
                    node.sql(f"RESET SLAVE '{row['Connection_name']}' ALL")
        for node in self.nodes.values():
            node.sql("SET GLOBAL event_scheduler = OFF", "SET GLOBAL read_only = OFF",
                     "SET GLOBAL slave_exec_mode = 'STRICT'", "SET GLOBAL gtid_strict_mode = 1")
            kill_clients(node)
            statements = ["SET SESSION sql_log_bin=0"]
            for db in user_databases(node):
                statements.append(f"DROP DATABASE `{db}`")
            node.sql(*statements)
            node.sql("RESET MASTER")
        for name in UPSTREAM:
            node = self.nodes[name]
            node.sql("RESET SLAVE", "SET GLOBAL gtid_slave_pos = ''")
            self.point(name)
            node.sql("START SLAVE")
        for name in UPSTREAM:
            self.wait_running(name)

    def wait_running(self, name, timeout=20):
        def running():
            row = self.nodes[name].status("")
            return row and row["Slave_IO_Running"] == "Yes" and row["Slave_SQL_Running"] == "Yes"
        mi.wait_until(running, timeout, what=f"{name} replicating")

    def caught_up(self, name="replica", timeout=30):
        """Until ``name`` has applied everything its upstream has binlogged."""
        upstream = self.nodes[UPSTREAM[name]]
        position = upstream.one("SELECT @@gtid_binlog_pos AS p")["p"]
        if not position:
            return
        waited = self.nodes[name].one(f"SELECT MASTER_GTID_WAIT('{position}', {timeout}) AS w")["w"]
        if waited != 0:
            row = self.nodes[name].status("") or {}
            raise AssertionError(f"{name} did not reach {position} in {timeout}s: "
                                 f"SQL {row.get('Slave_SQL_Running')} {row.get('Last_SQL_Error')}; "
                                 f"IO {row.get('Slave_IO_Running')} {row.get('Last_IO_Error')}")


def user_databases(node):
    return [r["Database"] for r in node.sql("SHOW DATABASES") if r["Database"] not in SYSTEM]


def kill_clients(node):
    """Connections other tests left open (a blocker holding a lock, a writer)."""
    me = node.one("SELECT CONNECTION_ID() AS i")["i"]
    for row in node.sql("SELECT ID, USER, COMMAND FROM information_schema.PROCESSLIST"):
        if row["ID"] != me and row["USER"] == "root" and row["COMMAND"] not in ("Binlog Dump", "Daemon"):
            try:
                node.sql(f"KILL {row['ID']}")
            except pymysql.err.MySQLError:
                pass


# --- what the tests compare, read without autoremedy ---------------------------------

def table_digests(node, databases=None):
    """{db.table: (rows, md5 of the ordered rows)} for every base table."""
    databases = user_databases(node) if databases is None else databases
    out = {}
    conn = node.connect()
    try:
        with conn.cursor() as cur:
            for db in databases:
                cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s "
                            "AND TABLE_TYPE='BASE TABLE'", (db,))
                for (table,) in cur.fetchall():
                    cur.execute(f"SELECT * FROM `{db}`.`{table}`")
                    rows = sorted(repr(r) for r in cur.fetchall())
                    digest = hashlib.md5("\n".join(rows).encode()).hexdigest()
                    out[f"{db}.{table}"] = (len(rows), digest)
    finally:
        conn.close()
    return out


def compare(source, replica, databases=None):
    """{db.table: 'equal' | 'replica N rows, source M rows' | 'missing on ...'} over
    the union of both servers' user tables."""
    theirs = table_digests(source, databases)
    mine = table_digests(replica, databases)
    out = {}
    for key in sorted(set(theirs) | set(mine)):
        if key not in mine:
            out[key] = "missing on the replica"
        elif key not in theirs:
            out[key] = "missing on the source"
        elif mine[key] == theirs[key]:
            out[key] = "equal"
        else:
            out[key] = f"replica {mine[key][0]} rows, source {theirs[key][0]} rows (content differs)"
    return out


def errant(source, replica):
    """GTIDs in the replica's binlog state the source's state does not contain."""
    def state(node):
        text = node.one("SELECT @@gtid_binlog_state AS s")["s"] or ""
        return {tuple(int(x) for x in g.split("-")) for g in text.split(",") if g}
    have = {(d, s): n for d, s, n in state(source)}
    return sorted(f"{d}-{s}-{n}" for d, s, n in state(replica) if have.get((d, s), -1) < n)


# --- the steady writer -----------------------------------------------------------------

class Writer:
    """Transactions on the source at a steady rate: each one inserts into every
    table of ``tables`` ([(db, table)], columns (id AUTO_INCREMENT PK, v, n)) and
    updates a row of the first. ``paused()`` stops it between transactions."""

    def __init__(self, node, tables, rate=50):
        self.node, self.tables, self.rate = node, list(tables), rate
        self.done = 0
        self.errors = []
        self._stop = threading.Event()
        self._gate = threading.Event()
        self._gate.set()
        self._idle = threading.Event()
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self):
        conn = self.node.connect()
        try:
            with conn.cursor() as cur:
                while not self._stop.is_set():
                    if not self._gate.is_set():
                        self._idle.set()
                        self._gate.wait(0.1)
                        continue
                    self._idle.clear()
                    try:
                        cur.execute("BEGIN")
                        for db, table in self.tables:
                            cur.execute(f"INSERT INTO `{db}`.`{table}` (v, n) VALUES (%s, %s)",
                                        (f"w{self.done}", self.done))
                        db, table = self.tables[0]
                        cur.execute(f"UPDATE `{db}`.`{table}` SET n = n + 1 ORDER BY id LIMIT 1")
                        cur.execute("COMMIT")
                        self.done += 1
                    except pymysql.err.MySQLError as exc:
                        self.errors.append(str(exc))
                        try:
                            conn.ping(reconnect=True)
                        except pymysql.err.MySQLError:
                            time.sleep(0.2)
                    time.sleep(1.0 / self.rate)
        finally:
            self._idle.set()
            conn.close()

    def pause(self):
        self._idle.clear()          # before the gate: a stale "idle" must not count
        self._gate.clear()
        if not self._idle.wait(10):
            raise AssertionError("the writer did not pause")

    def resume(self):
        self._gate.set()

    def stop(self):
        self._stop.set()
        self._gate.set()
        if self._thread is not None:
            self._thread.join(10)
        return self.done
