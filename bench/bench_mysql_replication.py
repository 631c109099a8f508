"""What "verified means equal" costs: the mysql-replication comparison and its no-harm evidence.

Rows (whole processes, interleaved, bench.lib.compare):

1. the comparison every repair ends with — the replica paused, brought to the
   source's snapshot position (START SLAVE UNTIL + MASTER_GTID_WAIT), both sides
   read in chunked checksums inside consistent snapshots — of a 100,000-row
   table, against ``CHECKSUM TABLE`` of the same table on both sides (what the
   repair did before: no consistent position, so a busy table never compares
   equal, and a lost row can hide behind a later one);
2. reading the class's reach and invariants before a run (what perform() adds
   to every run, dry-run included), against one ``autoremedy check
   mysql-replication`` run.

Extra figures: the comparison's seconds per 100,000 rows for two chunk sizes.
Runs on the tests' throwaway topology (ports 3311-3314, tests/mysql/
replication_topology.py), started and stopped here.
"""
import os
import subprocess
import sys
import tempfile
import time

from bench.lib import AUTOREMEDY, PYTHON, compare, row

HERE = os.path.dirname(os.path.abspath(__file__))
PROBE = os.path.join(HERE, "_mysql_replication_probe.py")
ROWS = 100000


def run():
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "mysql"))
    import mysql_instances as mi
    import replication_topology as rt
    for port in rt.PORTS.values():
        if mi.port_open(port):
            raise RuntimeError(f"port {port} is busy (tests running?): the benchmark needs 3311-3314")
    base = mi.make_base()
    try:
        with rt.Topology(base) as topo:
            return _measure(topo, base, rt)
    finally:
        mi.remove(base)


def _measure(topo, base, rt):
    topo.source.sql("CREATE DATABASE bench",
                    "CREATE TABLE bench.t (id INT PRIMARY KEY, v VARCHAR(40), n INT, d DATETIME)",
                    f"INSERT INTO bench.t SELECT seq, CONCAT('row ', seq), seq * 7, "
                    f"'2026-01-01' + INTERVAL seq SECOND FROM bench.seq_1_to_{ROWS}")
    topo.caught_up("replica", timeout=120)
    cnf = os.path.join(base, "root.cnf")
    with open(cnf, "w") as handle:
        handle.write("[client]\nuser = root\npassword = ''\n")
    home = tempfile.mkdtemp(prefix="bench-repl-")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "AUTOREMEDY_STATE_DIR": home}
    ports = [str(rt.PORTS["source"]), str(rt.PORTS["replica"])]
    rows = []
    for chunk in ("1000", "10000"):
        started = time.perf_counter()
        done = subprocess.run([PYTHON, PROBE, "compare", cnf, *ports, chunk], env=env, capture_output=True,
                              text=True)
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-2000:])
        print(f"comparison of {ROWS} rows, chunks of {chunk}: {time.perf_counter() - started:.2f}s whole process; "
              f"{done.stdout.strip()}")
    result = compare([PYTHON, PROBE, "compare", cnf, *ports, "10000"], [PYTHON, PROBE, "checksum", cnf, *ports],
                     runs=7, warmup=1, env=env)
    _check(result, "comparison")
    rows.append(row(f"mysql-replication verify: {ROWS} rows compared at one GTID position (chunked, both sides)",
                    "autoremedy consistent comparison", "CHECKSUM TABLE on both sides", result))
    check = [AUTOREMEDY, "check", "mysql-replication", "-H", "127.0.0.1", "-P", ports[1], "--defaults-file", cnf]
    result = compare([PYTHON, PROBE, "evidence", cnf, *ports], check, runs=11, env=env)
    _check(result, "evidence")
    rows.append(row("mysql-replication no-harm evidence read before a run (reach + invariants)",
                    "reach + invariants", "autoremedy check mysql-replication", result))
    return rows


def _check(result, what):
    if result["a_rc"] != [0] or result["b_rc"] != [0]:
        raise RuntimeError(f"{what}: exit codes {result['a_rc']} / {result['b_rc']}")
