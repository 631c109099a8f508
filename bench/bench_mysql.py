"""Start-up of the MySQL checks: the whole ``autoremedy check`` process vs ``python -c 'import pymysql'``.

A check runs every few seconds on every database node, so what it costs beyond
the one library it needs is the figure that matters (issue #5: at most 1.3x).
Both sides run with the same interpreter, interleaved (bench.lib.compare). The
checks talk to a real server, connect and query included: by default the
machine's MariaDB on 127.0.0.1:3306, read-only (``SHOW ALL REPLICAS STATUS`` /
``SHOW GLOBAL STATUS LIKE 'wsrep%'``; it is neither a replica nor a Galera node,
so ``--not-replica ok`` / ``--not-galera ok`` keep the exit code 0). When nothing
listens there, a throwaway server is started on 3317 for the run (the tests'
helper). Point it elsewhere with AUTOREMEDY_BENCH_MYSQL_PORT and
AUTOREMEDY_BENCH_MYSQL_CNF (an option file with the login).
"""
import contextlib
import os
import socket
import subprocess
import sys
import tempfile

from bench.lib import AUTOREMEDY, PYTHON, compare, row


def run():
    port = os.environ.get("AUTOREMEDY_BENCH_MYSQL_PORT", "3306")
    with _server(int(port)) as port:
        rows = _run(str(port))
    return rows + galera_rows()


# The galera remediation's no-harm evidence (reach + invariants: one SQL connection
# per node with SHOW GLOBAL STATUS, the wsrep variables and COUNT(*) of the witness
# table; grastate.dat where a node does not answer), read once, in-process as perform()
# does, against one monitoring check of one node.
EVIDENCE = """
import sys
from autoremedy.config import Config
from autoremedy.contract.noharm import Evidence
from autoremedy.remediations import galera
rem = galera.REMEDIATION(Config.load(sys.argv[1]))
rem._planned["test"] = {"leader": "g1", "seqno": 0, "uuid": None, "recover": []}
Evidence(rem.reach("test", []), rem.invariants("test", [])).read_before()
"""


def galera_rows():
    """On a throwaway 3-node cluster (tests/mysql/galera_cluster.py, ~20 s to start)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "mysql"))
    import galera_cluster as gc
    import mysql_instances as mi
    import yaml
    gc.sweep_leftovers()
    base = gc.make_base()
    cluster = gc.Cluster(base)
    try:
        cluster.setup()
        cluster.witness(1000)
        cnf = os.path.join(base, "login.cnf")
        with open(cnf, "w") as handle:
            handle.write("[client]\nuser = root\npassword = ''\n")
        path = os.path.join(base, "autoremedy.yaml")
        data = gc.config(cluster, cnf)
        data["state_dir"] = base
        with open(path, "w") as handle:
            yaml.safe_dump(data, handle)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": base, "AUTOREMEDY_STATE_DIR": base}
        one = [AUTOREMEDY, "check", "galera", "-H", "127.0.0.1", "-P", str(cluster.g1.port), "--defaults-file", cnf]
        rows = []
        for label, argv in (("galera no-harm evidence read (reach + 3 invariants, 3 nodes)",
                             [PYTHON, "-I", "-c", EVIDENCE, path]),
                            ("check galera --cluster (3 nodes, the remediation's verify)",
                             [AUTOREMEDY, "check", "galera", "--cluster", "test", "--config", path])):
            probe = subprocess.run(argv, capture_output=True, text=True, env=env)
            if probe.returncode != 0:
                raise RuntimeError(f"{label}: exit {probe.returncode}: {(probe.stderr or probe.stdout)[-500:]}")
            result = compare(argv, one, runs=11, env=env)
            rows.append(row(label, "read_before() in one process" if argv[0] == PYTHON else
                            "autoremedy check galera --cluster test", "autoremedy check galera (one node)", result))
        return rows
    finally:
        cluster.shutdown()
        mi.remove(base)


@contextlib.contextmanager
def _server(port):
    with socket.socket() as sock:
        sock.settimeout(1)
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            yield port
            return
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "mysql"))
    import mysql_instances as mi
    base = mi.make_base()
    server = mi.Instance(base, "bench", mi.PAIR_PORTS[0], {})
    try:
        server.install()
        server.start()
        yield server.port
    finally:
        server.kill()
        mi.remove(base)


def _run(port):
    home = tempfile.mkdtemp(prefix="bench-mysql-")
    cnf = os.environ.get("AUTOREMEDY_BENCH_MYSQL_CNF")
    if not cnf:
        cnf = os.path.join(home, "login.cnf")
        with open(cnf, "w") as handle:
            handle.write("[client]\nuser = root\npassword = ''\n")
    # No configuration file, no ~/.my.cnf: exactly what a Sensu or Zabbix agent runs.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "AUTOREMEDY_STATE_DIR": home}
    server = ["-H", "127.0.0.1", "-P", port, "--defaults-file", cnf]
    baseline = [PYTHON, "-c", "import pymysql"]
    rows = []
    for name, extra in (("mysql-replication", ["--not-replica", "ok"]), ("galera", ["--not-galera", "ok"])):
        result = compare([AUTOREMEDY, "check", name, *server, *extra], baseline, runs=21, env=env)
        if result["a_rc"] != [0]:
            raise RuntimeError(f"check {name} exited {result['a_rc']}: is a server listening on 127.0.0.1:{port}?")
        rows.append(row(f"check {name} start-up (connect + query, whole process)", f"autoremedy check {name}",
                        "python -c 'import pymysql'", result, target=1.3))
    return rows
