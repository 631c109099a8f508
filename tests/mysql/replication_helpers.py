"""Helpers of the replication repair tests: running a repair, making each failure for real,
and the steady writer around it.

Every case ends the same way (``settle_and_compare``): the writer stops, each
replica reaches the source's position, and every table of every user database
is compared with the source (tests/mysql/replication_topology.py, read without
autoremedy's code). Time-to-heal is the outcome's duration, printed per case
(``pytest -s`` shows the lines).
"""
import json
import os
import time

from autoremedy.audit import Audit
from autoremedy.config import Config
from autoremedy.contract.remediation import Trigger, perform
from autoremedy.remediations import mysql_replication as rem

import mysql_instances as mi
import replication_topology as rt

HEAL_TIMES = []


def repair(path, name="replica", dry_run=False, klass=None, runner=None):
    """perform() in-process, as the handler and the CLI do; returns (Outcome, Config)."""
    config = Config.load(path)
    kwargs = {"audit": Audit(os.path.join(config.state_dir, "audit.log"), use_syslog=False)}
    if runner is not None:
        kwargs["runner"] = runner
    remediation = (klass or rem.REMEDIATION)(config, **kwargs)
    return perform(remediation, name, Trigger(source="test"), dry_run=dry_run), config


def swapping_runner(state_dir, evil, tools):
    """execute.run, except that just before the first command of ``tools`` runs, a
    group member wins the race: <state_dir>/mysql is moved aside to mysql.away and
    replaced by a link to ``evil``, a tree of the same layout (so a tool sent there
    by name would work, and write there). ``.swapped`` says whether it happened;
    ``.argvs`` holds every command as the remediation gave it."""
    from autoremedy.contract import execute

    def run(argv, **kwargs):
        run.argvs.append(list(argv))
        if not run.swapped and os.path.basename(argv[0]) in tools:
            mine = os.path.join(state_dir, "mysql")
            for dirpath, _dirs, _files in os.walk(mine):
                os.makedirs(os.path.join(evil, os.path.relpath(dirpath, mine)), exist_ok=True)
            os.rename(mine, mine + ".away")
            os.symlink(evil, mine)
            run.swapped = True
        return execute.run(argv, **kwargs)
    run.swapped, run.argvs = False, []
    return run


def files_under(path):
    return sorted(os.path.relpath(os.path.join(d, f), path) for d, _, names in os.walk(path) for f in names)


def heal_time(case, outcome):
    """Record and print the time-to-heal of a case (the outcome's duration)."""
    duration = outcome["duration_s"] if isinstance(outcome, dict) else outcome.duration
    status = outcome["outcome"] if isinstance(outcome, dict) else outcome.status
    HEAL_TIMES.append((case, status, duration))
    print(f"\nTIME-TO-HEAL {case}: {status} in {duration:.3f}s")


def audit_records(config, what):
    with open(os.path.join(config.state_dir, "audit.log")) as handle:
        return [r for r in map(json.loads, handle) if r["what"] == what]


# --- data --------------------------------------------------------------------------------

def make_app(topo, extra=()):
    """app.t_log, app.t_pk, app2.t2 (+ ``extra`` statements) on the source, replicated."""
    topo.source.sql(
        "CREATE DATABASE app",
        "CREATE TABLE app.t_log (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(40), n INT)",
        "CREATE TABLE app.t_pk (id INT PRIMARY KEY, v VARCHAR(40), n INT, email VARCHAR(40), UNIQUE KEY uk_email (email))",
        "CREATE TABLE app.nopk (v VARCHAR(40), n INT)",
        "CREATE DATABASE app2",
        "CREATE TABLE app2.t2 (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(40), n INT)",
        "INSERT INTO app.t_log (v, n) VALUES ('first', 0)",
        "INSERT INTO app.t_pk VALUES (1, 'one', 0, 'one@x'), (2, 'two', 0, 'two@x'), (5, 'five', 0, 'five@x')",
        "INSERT INTO app.nopk VALUES ('a', 1), ('a', 1), ('b', 2)",
        *extra)
    for name in rt.UPSTREAM:
        topo.caught_up(name)


def writer(topo, rate=60):
    """The steady writer: every transaction writes app.t_log and app2.t2."""
    started = rt.Writer(topo.source, [("app", "t_log"), ("app2", "t2")], rate=rate).start()
    topo.writers.append(started)
    return started


def settle_and_compare(topo, writer_, replicas=("replica",)):
    """Stop the writer, let ``replicas`` reach the source, compare every table:
    {replica: {table: 'equal' | how it differs}}."""
    if writer_ is not None:
        writer_.stop()
        assert not writer_.errors, writer_.errors[:3]
    out = {}
    for name in replicas:
        topo.caught_up(name, timeout=30)
        out[name] = rt.compare(topo.source, topo.nodes[name])
    return out


def wait_equal(topo, upstream, databases, replica="replica", timeout=30):
    """Until every table of ``databases`` on ``replica`` equals ``upstream``'s; on timeout
    the differences and every replication connection's state are the failure."""
    node = topo.nodes[replica]
    last = {}

    def equal():
        last.clear()
        last.update(rt.compare(upstream, node, databases))
        return set(last.values()) == {"equal"}
    try:
        mi.wait_until(equal, timeout, interval=0.5, what=f"{replica} equal to {upstream.name} on {databases}")
    except AssertionError as exc:
        states = {row["Connection_name"]: (row["Slave_IO_Running"], row["Slave_SQL_Running"],
                                           row["Last_IO_Error"], row["Last_SQL_Error"])
                  for row in node.sql("SHOW ALL SLAVES STATUS")}
        raise AssertionError(f"{exc}: {last}; connections {states}; slave_pos "
                             f"{node.one('SELECT @@gtid_slave_pos AS p')['p']}, upstream binlog "
                             f"{upstream.one('SELECT @@gtid_binlog_pos AS p')['p']}") from None


def differing(compared):
    return {name: {t: v for t, v in tables.items() if v != "equal"} for name, tables in compared.items()
            if any(v != "equal" for v in tables.values())}


# --- failures, made for real ----------------------------------------------------------------------

def wait_sql_error(node, errno, timeout=15):
    mi.wait_until(lambda: (node.status("") or {}).get("Last_SQL_Errno") == errno, timeout,
                  what=f"SQL error {errno} on {node.name}")


def duplicate(topo, node, local, on_source):
    """A row written on the replica alone (not binlogged), then a source transaction
    conflicting with it: 1062 on ``node``."""
    node.sql("SET SESSION sql_log_bin=0", *local)
    topo.source.sql("BEGIN", *on_source, "COMMIT")
    wait_sql_error(node, 1062)


def purge_source_binlogs(topo, node):
    """1236: ``node`` stopped, the source writes and purges every binlog but the current."""
    node.sql("STOP SLAVE")
    topo.source.sql("INSERT INTO app.t_log (v, n) VALUES ('missed', 1)",
                    "INSERT INTO app2.t2 (v, n) VALUES ('missed', 1)")
    # PURGE quietly keeps a file the binlog checkpoint or another replica's dump
    # thread still uses: flush and purge until only the current file is left.
    deadline = time.monotonic() + 15
    while True:
        current = topo.source.sql("FLUSH BINARY LOGS", "SHOW MASTER STATUS")[0]["File"]
        topo.source.sql(f"PURGE BINARY LOGS TO '{current}'")
        if len(topo.source.sql("SHOW BINARY LOGS")) == 1:
            break
        assert time.monotonic() < deadline, topo.source.sql("SHOW BINARY LOGS")
        time.sleep(0.1)
    node.sql("START SLAVE")
    mi.wait_until(lambda: (node.status("") or {}).get("Last_IO_Errno") == 1236, 15, what="error 1236")


def truncate_relay_log(node, writer_, wait=1.0):
    """The SQL thread stopped while the IO thread keeps receiving; the relay log is
    then cut at the SQL thread's position (the IO thread appends after the cut)."""
    node.sql("STOP SLAVE SQL_THREAD")
    time.sleep(wait)
    row = node.status("")
    os.truncate(os.path.join(node.datadir, row["Relay_Log_File"]), row["Relay_Log_Pos"])
    time.sleep(0.3)
    return row
