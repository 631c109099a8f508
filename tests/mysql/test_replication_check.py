"""check mysql-replication: normalisation and diagnosis (tables), then every state on real servers
(the replication topology: source 3311 -> replica 3312, tests/mysql/replication_topology.py)."""
import argparse
import json
import os

import pytest

from autoremedy.checks import mysql_replication as check
from autoremedy.contract.ranges import Range
from autoremedy.contract.result import Status

import mysql_instances as mi
import replication_topology as rt

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
REPLICA = ["-H", "127.0.0.1", "-P", str(rt.PORTS["replica"])]


@pytest.fixture
def topo_table(topo):
    """app.t (id INT PRIMARY KEY, v VARCHAR) with rows 1 and 2, replicated; its name."""
    topo.source.sql("CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(40))",
                    "INSERT INTO app.t VALUES (1, 'one'), (2, 'two')")
    topo.caught_up("replica")
    return "app"


def args(**kw):
    base = dict(lag_null="warning", warning=Range.parse("300"), critical=Range.parse("600"),
                relay_log_space_warning=None, relay_log_space_critical=None, require_read_only=False)
    base.update(kw)
    return argparse.Namespace(**base)


def mariadb_row(**kw):
    row = {"Connection_name": "", "Slave_IO_Running": "Yes", "Slave_SQL_Running": "Yes", "Last_IO_Errno": 0,
           "Last_IO_Error": "", "Last_SQL_Errno": 0, "Last_SQL_Error": "", "Seconds_Behind_Master": 0,
           "Master_Host": "10.0.0.1", "Master_Port": 3306, "Relay_Log_Space": 1000, "Using_Gtid": "Slave_Pos",
           "Gtid_IO_Pos": "0-1-10", "Connect_Retry": 60}
    row.update(kw)
    return row


# --- normalisation -----------------------------------------------------------------------

def test_mysql8_replica_columns_are_normalised():
    with open(os.path.join(FIXTURES, "mysql84_show_replica_status.json")) as handle:
        rows = json.load(handle)["rows"]
    healthy, broken = (check.Channel(r) for r in rows)
    assert (healthy.name, healthy.io, healthy.sql, healthy.lag) == ("", "Yes", "Yes", 0)
    assert healthy.primary == "127.0.0.1:13000" and healthy.using_gtid == "Yes"
    assert healthy.gtid_slave_pos == "73f86016-978b-11ee-ade5-8d2a2a562feb:1-3"
    assert healthy.raw["Replicate_Do_DB"] == "" and "Slavete_Do_DB" not in healthy.raw
    assert (broken.name, broken.sql, broken.sql_errno, broken.lag) == ("east", "No", 1062, None)
    assert check.diagnose(healthy) == []
    [finding] = check.diagnose(broken)
    assert (finding.kind, finding.status, finding.errno) == (check.SQL_ERROR, Status.CRITICAL, 1062)


@pytest.mark.parametrize("row, kinds, status", [
    ({}, [], Status.OK),
    ({"Slave_IO_Running": "No", "Seconds_Behind_Master": None}, [check.IO_STOPPED], Status.CRITICAL),
    ({"Slave_SQL_Running": "No", "Seconds_Behind_Master": None}, [check.SQL_STOPPED], Status.CRITICAL),
    ({"Slave_IO_Running": "Connecting", "Last_IO_Errno": 2003, "Seconds_Behind_Master": None},
     [check.PRIMARY_UNREACHABLE], Status.CRITICAL),
    ({"Slave_IO_Running": "Connecting", "Last_IO_Errno": 2013}, [check.PRIMARY_UNREACHABLE], Status.CRITICAL),
    ({"Slave_IO_Running": "Connecting", "Last_IO_Errno": 1045}, [check.IO_ERROR], Status.CRITICAL),
    ({"Slave_IO_Running": "No", "Last_IO_Errno": 1236}, [check.IO_ERROR], Status.CRITICAL),
    ({"Slave_IO_Running": "Connecting"}, [check.IO_CONNECTING], Status.WARNING),
    ({"Slave_SQL_Running": "No", "Last_SQL_Errno": 1062}, [check.SQL_ERROR], Status.CRITICAL),
    ({"Slave_IO_Running": "No", "Slave_SQL_Running": "No"}, [check.IO_STOPPED, check.SQL_STOPPED], Status.CRITICAL),
    ({"Seconds_Behind_Master": None}, [check.LAG_UNKNOWN], Status.WARNING),
])
def test_diagnosis_table(row, kinds, status):
    findings = check.diagnose(check.Channel(mariadb_row(**row)))
    assert [f.kind for f in findings] == kinds
    worst = Status.OK
    for f in findings:
        worst = worst.worse(f.status)
    assert worst is status


def test_null_lag_is_never_zero_and_its_state_is_configurable():
    channel = check.Channel(mariadb_row(Seconds_Behind_Master=None))
    [finding] = check.diagnose(channel, lag_null="critical")
    assert finding.status is Status.CRITICAL
    findings, metrics, _ = check.judge([channel], args())
    lag = next(m for m in metrics if m.label == "lag")
    assert lag.value is None        # rendered as no perfdata at all, never as 0


@pytest.mark.parametrize("lag, status", [(0, Status.OK), (299, Status.OK), (301, Status.WARNING), (601, Status.CRITICAL)])
def test_lag_thresholds(lag, status):
    findings, metrics, _ = check.judge([check.Channel(mariadb_row(Seconds_Behind_Master=lag))], args())
    worst = Status.OK
    for item in [f.status for f in findings] + [m.status for m in metrics]:
        worst = worst.worse(item)
    assert worst is status


def test_gtid_behind_counts_received_but_unapplied_transactions():
    channel = check.Channel(mariadb_row(Gtid_IO_Pos="0-1-12,1-3-7"))
    channel.gtid_slave_pos = "0-1-9,1-3-7,2-4-1"
    assert check.gtid_behind(channel) == 3


# --- on real servers -------------------------------------------------------------------------

@pytest.mark.integration
def test_healthy_replica_is_ok_with_perfdata(topo, topo_table, run_cli, root_cnf):
    ran = run_cli("check", "mysql-replication", *REPLICA, "--defaults-file", root_cnf)
    assert ran.returncode == 0, ran
    head = ran.stdout.splitlines()[0]
    assert head.startswith("MYSQL-REPLICATION OK: replicating from 127.0.0.1:3311, lag 0s, GTID 0-11-")
    perf = mi.perfdata(head)
    assert perf["lag"] == "0s" and perf["io_running"] == "1" and perf["sql_running"] == "1"


@pytest.mark.integration
@pytest.mark.parametrize("spelling, statement", [("slave", "SHOW ALL SLAVES STATUS"),
                                                 ("replica", "SHOW ALL REPLICAS STATUS"),
                                                 ("auto", "SHOW ALL REPLICAS STATUS")])
def test_both_spellings_read_the_same_state(topo, run_cli, root_cnf, spelling, statement):
    ran = run_cli("check", "mysql-replication", *REPLICA, "--defaults-file", root_cnf, "--spelling", spelling,
                  "--format", "json")
    assert ran.returncode == 0, ran
    assert ran.json["data"]["statement"] == statement
    assert ran.json["data"]["connections"][0]["io_running"] == "Yes"


@pytest.mark.integration
def test_stopped_threads_are_critical(topo, run_cli, root_cnf):
    topo.replica.sql("STOP SLAVE IO_THREAD")
    ran = run_cli("check", "mysql-replication", *REPLICA, "--defaults-file", root_cnf)
    assert ran.returncode == 2 and "IO thread stopped (no error)" in ran.stdout, ran
    topo.replica.sql("STOP SLAVE SQL_THREAD")
    ran = run_cli("check", "mysql-replication", *REPLICA, "--defaults-file", root_cnf)
    assert "IO thread stopped (no error); SQL thread stopped (no error)" in ran.stdout
    assert "'lag'" not in ran.stdout            # NULL lag: no perfdata value, not 0


@pytest.mark.integration
def test_duplicate_key_is_critical_with_the_error(topo, topo_table, run_cli, root_cnf):
    topo.replica.sql("SET SESSION sql_log_bin=0", f"INSERT INTO {topo_table}.t VALUES (100, 'replica')")
    topo.source.sql(f"INSERT INTO {topo_table}.t VALUES (100, 'primary')")
    mi.wait_until(lambda: (topo.replica.status() or {}).get("Last_SQL_Errno") == 1062, 10)
    ran = run_cli("check", "mysql-replication", *REPLICA, "--defaults-file", root_cnf)
    assert ran.returncode == 2
    assert f"SQL thread stopped by error 1062 (duplicate key): Could not execute Write_rows_v1 event on table " \
           f"{topo_table}.t; Duplicate entry '100' for key 'PRIMARY'" in ran.stdout
    assert mi.perfdata(ran.stdout)["last_sql_errno"] == "1062"


@pytest.mark.integration
def test_primary_killed_is_critical_with_the_io_error_then_recovers(topo, run_cli, root_cnf):
    topo.source.kill()
    try:
        ran = mi.wait_until(lambda: (lambda r: r if r.returncode == 2 else None)(
            run_cli("check", "mysql-replication", *REPLICA, "--defaults-file", root_cnf)), 15)
        assert "IO thread cannot reach the primary 127.0.0.1:3311: error 20" in ran.stdout
        assert mi.perfdata(ran.stdout)["last_io_errno"] in ("2003", "2013")
    finally:
        topo.source.start()
    topo.replica.sql("STOP SLAVE IO_THREAD", "START SLAVE IO_THREAD")
    ran = mi.wait_until(lambda: (lambda r: r if r.returncode == 0 else None)(
        run_cli("check", "mysql-replication", *REPLICA, "--defaults-file", root_cnf)), 15)
    assert "replicating from 127.0.0.1:3311" in ran.stdout


@pytest.mark.integration
def test_lag_from_a_long_transaction_is_a_warning(topo, topo_table, run_cli, root_cnf):
    """A replica transaction holds a row lock; the primary's update of that row waits
    in the SQL thread and Seconds_Behind_Master grows with the clock."""
    blocker = topo.replica.connect(autocommit=False)
    try:
        with blocker.cursor() as cur:
            cur.execute("SET SESSION sql_log_bin=0")
            cur.execute(f"UPDATE {topo_table}.t SET v = 'held by the replica' WHERE id = 1")
        topo.source.sql(f"UPDATE {topo_table}.t SET v = 'from the primary' WHERE id = 1")
        ran = mi.wait_until(lambda: (lambda r: r if r.returncode == 1 else None)(
            run_cli("check", "mysql-replication", *REPLICA, "--defaults-file", root_cnf, "-w", "2", "-c", "120")),
            20, interval=0.5)
        assert "(warn >2); SQL thread: " in ran.stdout and ran.stdout.startswith("MYSQL-REPLICATION WARNING: lag ")
        assert int(mi.perfdata(ran.stdout)["lag"].rstrip("s")) > 2
    finally:
        blocker.rollback()
        blocker.close()
    ran = mi.wait_until(lambda: (lambda r: r if r.returncode == 0 else None)(
        run_cli("check", "mysql-replication", *REPLICA, "--defaults-file", root_cnf, "-w", "2", "-c", "120")), 20)
    assert topo.replica.one(f"SELECT v FROM {topo_table}.t WHERE id = 1")["v"] == "from the primary"


@pytest.mark.integration
def test_multi_source_connections_are_each_checked(topo, run_cli, root_cnf):
    topo.second_source()
    replica = ["-H", "127.0.0.1", "-P", str(rt.PORTS["replica"]), "--defaults-file", root_cnf]
    ran = run_cli("check", "mysql-replication", *replica)
    assert ran.returncode == 0, ran
    assert "[default] replicating from 127.0.0.1:3311" in ran.stdout and "[east] replicating from 127.0.0.1:3313" \
        in ran.stdout
    assert "east.lag" in mi.perfdata(ran.stdout)
    topo.replica.sql("STOP SLAVE 'east'")
    ran = run_cli("check", "mysql-replication", *replica)
    assert ran.returncode == 2 and "[east] IO thread stopped (no error)" in ran.stdout
    only_default = run_cli("check", "mysql-replication", *replica, "--connection", "")
    assert only_default.returncode == 0, only_default
    missing = run_cli("check", "mysql-replication", *replica, "--connection", "west")
    assert missing.returncode == 2 and "replication connection 'west' is not configured" in missing.stdout
    lld = run_cli("check", "mysql-replication", *replica, "--discover")
    assert {r["{#MYSQL.CONNECTION}"] for r in lld.json} == {"", "east"}


@pytest.mark.integration
def test_a_server_without_replication(topo, run_cli, root_cnf):
    primary = ["-H", "127.0.0.1", "-P", str(rt.PORTS["source"]), "--defaults-file", root_cnf]
    ran = run_cli("check", "mysql-replication", *primary)
    assert ran.returncode == 2 and "not a replica: SHOW ALL REPLICAS STATUS returned nothing" in ran.stdout
    assert run_cli("check", "mysql-replication", *primary, "--not-replica", "ok").returncode == 0


@pytest.mark.integration
def test_writable_replica_warns_when_read_only_is_required(topo, run_cli, root_cnf):
    ran = run_cli("check", "mysql-replication", *REPLICA, "--defaults-file", root_cnf, "--require-read-only")
    assert ran.returncode == 1 and "the replica accepts writes (read_only=OFF)" in ran.stdout
    topo.replica.sql("SET GLOBAL read_only = ON")
    try:
        assert run_cli("check", "mysql-replication", *REPLICA, "--defaults-file", root_cnf,
                       "--require-read-only").returncode == 0
    finally:
        topo.replica.sql("SET GLOBAL read_only = OFF")


# --- bad input: UNKNOWN with the reason, never a traceback -------------------------------------

@pytest.fixture(scope="module")
def limited_user(topology):
    """A login without SLAVE MONITOR (created without binlogging it on the replica)."""
    topology.replica.sql("SET SESSION sql_log_bin=0", "CREATE USER IF NOT EXISTS 'nopriv'@'127.0.0.1' IDENTIFIED BY 'pw'")
    return "nopriv", "pw"


@pytest.mark.integration
@pytest.mark.parametrize("case, expected", [
    ("wrong password", "cannot connect to 127.0.0.1:3312 as 'root': error 1045: Access denied"),
    ("server gone", "cannot connect to 127.0.0.1:3319 as 'root': error 2003"),
    ("no privilege", "permission denied: SHOW ALL REPLICAS STATUS on 127.0.0.1:3312: error 1227"),
    ("missing option file", "option file /nonexistent/my.cnf: no such file"),
    ("unknown server name", "mysql.servers.nope: no such server in the configuration"),
    ("bad configuration", "mysql.servers.replica.prot: unknown key"),
])
def test_bad_input_is_unknown_with_the_reason(topo, limited_user, run_cli, root_cnf, tmp_path, topo_config,
                                              make_config,
                                              case, expected):
    def cnf(user, password):
        path = tmp_path / "login.cnf"
        path.write_text(f"[client]\nuser={user}\npassword={password}\n")
        return str(path)
    argv = {
        "wrong password": lambda: [*REPLICA, "--defaults-file", cnf("root", "wrong")],
        "server gone": lambda: ["-H", "127.0.0.1", "-P", "3319", "--defaults-file", root_cnf],
        "no privilege": lambda: [*REPLICA, "--defaults-file", cnf(*limited_user)],
        "missing option file": lambda: [*REPLICA, "--defaults-file", "/nonexistent/my.cnf"],
        "unknown server name": lambda: ["--server", "nope", "--config", topo_config()],
        "bad configuration": lambda: ["--server", "replica", "--config", make_config(
            {"mysql": {"option_file": root_cnf, "servers": {"replica": {"host": "127.0.0.1", "prot": 1}}}})],
    }[case]()
    ran = run_cli("check", "mysql-replication", *argv)
    assert ran.returncode == 3, ran
    assert ran.stdout.startswith("MYSQL-REPLICATION UNKNOWN: ") and expected in ran.stdout, ran
    assert "Traceback" not in ran.stdout + ran.stderr and len(ran.stdout.splitlines()) == 1


@pytest.mark.integration
def test_zabbix_output_is_a_value_even_when_the_server_is_gone(run_cli, root_cnf):
    ran = run_cli("check", "mysql-replication", "-P", "3319", "--defaults-file", root_cnf, "--format", "zabbix",
                  "--field", "status")
    assert (ran.returncode, ran.stdout.strip()) == (0, "3")


def test_check_start_up_imports_no_heavy_library(tmp_path):
    """Only PyMySQL: no requests, pika, yaml or openstack on the check's path."""
    import subprocess
    import sys
    code = ("import sys; from autoremedy.cli import main\n"
            "main(['check', 'mysql-replication', '-P', '3319', '--defaults-file', sys.argv[1]])\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'requests', 'pika', 'yaml', 'openstack', 'urllib3'})\n"
            "print('HEAVY', heavy, 'pymysql' in sys.modules)")
    cnf = tmp_path / "c.cnf"
    cnf.write_text("[client]\nuser=x\n")
    # cwd away from the repository: the source tree must not shadow the installed package.
    out = subprocess.run([sys.executable, "-c", code, str(cnf)], capture_output=True, text=True, cwd=tmp_path,
                         env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)}).stdout
    assert "HEAVY [] True" in out, out
