"""remediate mysql-replication: statements and parsing (tables), then every repair and refusal on the real pair."""
import glob
import json
import os

import pytest

from autoremedy.audit import Audit
from autoremedy.config import Config
from autoremedy.remediation import Trigger, perform
from autoremedy.remediations import mysql_replication as rem

import mysql_instances as mi


# --- statements and parsing ------------------------------------------------------------

class FakeSession:
    """Spelling needs only flavour, version and literal; execute() is recorded."""

    def __init__(self, flavour, version):
        self.flavour, self.version = flavour, version
        self.executed = []

    def literal(self, value):
        return "'" + str(value).replace("'", "''") + "'"

    def execute(self, sql, args=None):
        self.executed.append(sql if args is None else (sql, args))
        return 0


@pytest.mark.parametrize("flavour, version, thread, expected", [
    ("mariadb", (10, 11, 19), "SQL_THREAD", "START REPLICA 'east' SQL_THREAD"),
    ("mariadb", (10, 4, 30), "IO_THREAD", "START SLAVE 'east' IO_THREAD"),
    ("mariadb", (10, 11, 19), None, "START REPLICA 'east'"),
    ("mysql", (8, 0, 36), "SQL_THREAD", "START REPLICA SQL_THREAD FOR CHANNEL 'east'"),
    ("mysql", (5, 7, 44), "IO_THREAD", "START SLAVE IO_THREAD FOR CHANNEL 'east'"),
])
def test_thread_statements_are_spelled_for_the_server(flavour, version, thread, expected):
    assert rem.thread_statement(FakeSession(flavour, version), "START", "east", thread) == expected


@pytest.mark.parametrize("text, expected", [
    ("Could not execute Write_rows_v1 event on table app.t; Duplicate entry '100' for key 'PRIMARY', "
     "Error_code: 1062; handler error HA_ERR_FOUND_DUPP_KEY; the event's master log binlog.000001, end_log_pos 1388",
     {"db": "app", "table": "t", "key": "PRIMARY", "value": "100"}),
    ("Could not execute Write_rows_v1 event on table app.c; Duplicate entry '1-x-y' for key 'PRIMARY', "
     "Error_code: 1062;", {"db": "app", "table": "c", "key": "PRIMARY", "value": "1-x-y"}),
    # MySQL 8's worker message (performance_schema) names the key 'table.KEY'.
    ("Worker 1 failed executing transaction 'uuid:4' at source log b.000001, end_log_pos 1240; Could not "
     "execute Write_rows event on table app.t; Duplicate entry 'it's' for key 't.uk_name', Error_code: 1062;",
     {"db": "app", "table": "t", "key": "uk_name", "value": "it's"}),
    ("Coordinator stopped because there were error(s) in the worker(s).", None),
])
def test_duplicate_key_errors_are_parsed(text, expected):
    assert rem.parse_duplicate(text) == expected


def test_mysql_gtid_skip_is_an_empty_transaction():
    session = FakeSession("mysql", (8, 0, 36))
    channel = type("C", (), {"name": "east", "using_gtid": "Yes"})()
    rem.skip_event(session, channel, {"gtid": "73f86016-978b-11ee-ade5-8d2a2a562feb:4"})
    assert session.executed == [("SET GTID_NEXT = %s", ("73f86016-978b-11ee-ade5-8d2a2a562feb:4",)),
                                "BEGIN", "COMMIT", "SET GTID_NEXT = 'AUTOMATIC'",
                                "START REPLICA SQL_THREAD FOR CHANNEL 'east'"]


def test_mariadb_skip_uses_the_connection_skip_counter():
    session = FakeSession("mariadb", (10, 11, 19))
    channel = type("C", (), {"name": "east", "using_gtid": "Slave_Pos"})()
    rem.skip_event(session, channel, {"gtid": "0-1-6"})
    assert session.executed == ["SET @@session.default_master_connection = 'east'",
                                "SET GLOBAL sql_slave_skip_counter = 1", "START REPLICA 'east' SQL_THREAD"]


def test_dump_position_is_read_from_the_end_of_the_dump(tmp_path):
    dump = tmp_path / "d.sql"
    dump.write_text("-- header\n" + "INSERT INTO t VALUES (1);\n" * 10000 +
                    "-- SET GLOBAL gtid_slave_pos='0-1-28,5-11-3';\n")
    assert rem.dump_position(str(dump)) == "0-1-28,5-11-3"


def test_table_allowlist_patterns():
    assert rem.table_allowed("nova", "instances", ["nova.*"])
    assert rem.table_allowed("nova", "instances", ["keystone.x", "nova.instances"])
    assert not rem.table_allowed("nova", "instances", ["nova.instance"])


# --- helpers for the real pair ------------------------------------------------------------

def target_config(mysql_config, **target):
    spec = {"server": "replica", "primary": "primary", "catch_up_timeout": 20}
    spec.update(target)
    return mysql_config({"mysql-replication": {"enabled": True, "targets": {"replica": spec}}})


def repair(path, dry_run=False):
    config = Config.load(path)
    remediation = rem.REMEDIATION(config, audit=Audit(os.path.join(config.state_dir, "audit.log"),
                                                      use_syslog=False))
    return perform(remediation, "replica", Trigger(source="test"), dry_run=dry_run), config


def audit_records(config, what):
    with open(os.path.join(config.state_dir, "audit.log")) as handle:
        return [r for r in map(json.loads, handle) if r["what"] == what]


def duplicate(replication, db, local_rows, primary_rows):
    """Rows written on the replica alone (not binlogged), then conflicting ones on the primary."""
    for row in local_rows:
        replication.replica.sql("SET SESSION sql_log_bin=0", f"INSERT INTO {db}.t VALUES {row}")
    replication.primary.sql(f"INSERT INTO {db}.t VALUES {', '.join(primary_rows)}")
    mi.wait_until(lambda: (replication.replica.status() or {}).get("Last_SQL_Errno") == 1062, 10)


def rows(instance, db, table="t"):
    return instance.sql(f"SELECT * FROM {db}.{table} ORDER BY 1")


# --- threads ---------------------------------------------------------------------------------

@pytest.mark.integration
def test_stopped_threads_are_restarted_and_verified(replication, mysql_config, run_cli):
    path = target_config(mysql_config)
    replication.replica.sql("STOP SLAVE")
    ran = run_cli("remediate", "mysql-replication", "--config", path, "--json", "replica")
    assert ran.returncode == 0, ran
    out = ran.json
    assert out["outcome"] == "remediated" and out["verify"]["status"] == "OK"
    assert "START REPLICA '' IO_THREAD" in " ".join(out["notes"])
    row = replication.replica.status()
    assert row["Slave_IO_Running"] == row["Slave_SQL_Running"] == "Yes"


@pytest.mark.integration
def test_a_healthy_replica_is_a_noop(replication, mysql_config, run_cli):
    ran = run_cli("remediate", "mysql-replication", "--config", target_config(mysql_config), "replica")
    assert ran.returncode == 0 and "noop: already healthy" in ran.stdout, ran


@pytest.mark.integration
def test_only_the_broken_multi_source_connection_is_restarted(replication, second_source, mysql_config):
    replication.replica.sql("STOP SLAVE 'east' SQL_THREAD")
    outcome, _ = repair(target_config(mysql_config))
    assert outcome.status == "remediated", outcome.to_dict()
    assert [s.description for s in outcome.plan] == ["start the SQL thread of connection 'east'"]
    assert replication.replica.status("east")["Slave_SQL_Running"] == "Yes"


# --- duplicate keys ---------------------------------------------------------------------------

@pytest.mark.integration
def test_duplicate_key_delete_row_leaves_the_replica_equal_to_the_primary(replication, table, mysql_config):
    path = target_config(mysql_config, duplicate_key={"tables": [f"{table}.t"]})
    duplicate(replication, table, ["(100, 'replica')"], ["(100, 'primary')", "(101, 'next')"])
    dry, _ = repair(path, dry_run=True)
    assert dry.status == "dry-run" and "{'id': 100, 'v': 'replica'}" in " ".join(dry.plan[0].details)
    assert replication.replica.status()["Slave_SQL_Running"] == "No"          # dry-run changed nothing
    outcome, config = repair(path)
    assert outcome.status == "remediated", outcome.to_dict()
    assert "checksum replica" in outcome.notes[0] and ": equal" in outcome.notes[0]
    assert rows(replication.replica, table) == rows(replication.primary, table)
    [record] = audit_records(config, "mysql-replication")
    assert record["action"] == "delete-row" and record["row"] == {"id": 100, "v": "replica"}
    assert record["gtid"].startswith("0-1-") and record["table"] == f"{table}.t"
    assert record["statement"].startswith(f"INSERT INTO {table}.t VALUES (100, 'primary')")


@pytest.mark.integration
def test_several_conflicts_on_a_composite_key_are_repaired_in_one_run(replication, mysql_config):
    db = "comp_" + os.urandom(4).hex()
    replication.primary.sql(f"CREATE DATABASE {db}",
                            f"CREATE TABLE {db}.t (a INT, b VARCHAR(20), v INT, PRIMARY KEY (a, b))")
    replication.wait_caught_up()
    # '-' inside the values makes the error's "1-x-y" ambiguous; the row lookup must still be exact.
    duplicate(replication, db, ["(1, 'x-y', 10)", "(2, '-', 20)"], ["(1, 'x-y', 11)"])
    replication.primary.sql(f"INSERT INTO {db}.t VALUES (2, '-', 21)")
    path = target_config(mysql_config, duplicate_key={"tables": [f"{db}.*"], "max_per_hour": 5})
    outcome, config = repair(path)
    assert outcome.status == "remediated", outcome.to_dict()
    assert rows(replication.replica, db) == rows(replication.primary, db)
    assert [r["row"] for r in audit_records(config, "mysql-replication")] == [
        {"a": 1, "b": "x-y", "v": 10}, {"a": 2, "b": "-", "v": 20}]


@pytest.mark.integration
def test_duplicate_on_a_table_not_allowlisted_escalates_with_evidence(replication, table, mysql_config):
    path = target_config(mysql_config, duplicate_key={"tables": ["other.*"]})
    duplicate(replication, table, ["(100, 'replica')"], ["(100, 'primary')"])
    outcome, config = repair(path)
    assert outcome.escalate and f"table {table}.t is not in duplicate_key.tables" in outcome.reason
    evidence = outcome.reason.rsplit("evidence and resync procedure: ", 1)[1].rstrip(")")
    with open(evidence) as handle:
        payload = json.load(handle)
    assert payload["failing_events"][""]["gtid"].startswith("0-1-")
    assert any("mariadb-dump" in line for line in payload["resync_procedure"][0])
    assert replication.replica.one(f"SELECT v FROM {table}.t WHERE id = 100")["v"] == "replica"   # untouched


@pytest.mark.integration
def test_skip_only_where_configured_leaves_the_tables_divergent(replication, table, mysql_config):
    path = target_config(mysql_config, duplicate_key={"tables": [f"{table}.t"], "action": "skip"})
    duplicate(replication, table, ["(100, 'replica')"], ["(100, 'primary')"])
    outcome, config = repair(path)
    assert outcome.status == "remediated", outcome.to_dict()
    assert "DIFFERENT" in outcome.notes[0]           # said out loud: the skip leaves drift
    assert replication.replica.one(f"SELECT v FROM {table}.t WHERE id = 100")["v"] == "replica"
    [record] = audit_records(config, "mysql-replication")
    assert record["action"] == "skip" and record["gtid"].startswith("0-1-")


@pytest.mark.integration
def test_duplicate_key_repairs_are_capped_per_hour(replication, table, mysql_config):
    path = target_config(mysql_config, duplicate_key={"tables": [f"{table}.t"], "max_per_hour": 1})
    duplicate(replication, table, ["(100, 'replica')"], ["(100, 'primary')"])
    assert repair(path)[0].status == "remediated"
    duplicate(replication, table, ["(200, 'replica')"], ["(200, 'primary')"])
    outcome, _ = repair(path)
    assert outcome.escalate and "max_per_hour 1" in outcome.reason


# --- the primary goes away and comes back --------------------------------------------------------

@pytest.mark.integration
def test_reconnects_only_once_the_primary_is_back(replication, mysql_config):
    path = target_config(mysql_config, reconnect={"attempts": 3, "backoff": 1})
    replication.primary.kill()
    try:
        mi.wait_until(lambda: (replication.replica.status() or {}).get("Last_IO_Errno") in (2003, 2013), 15)
        outcome, _ = repair(path)
        assert outcome.escalate and "the primary is still unreachable" in outcome.reason
    finally:
        replication.primary.start()
    # MASTER_CONNECT_RETRY is 60 s: without the remediation the replica would stay down.
    assert replication.replica.status()["Slave_IO_Running"] != "Yes"
    outcome, _ = repair(path)
    assert outcome.status == "remediated", outcome.to_dict()
    assert "IO thread connected on attempt 1" in outcome.notes[0]
    assert replication.replica.status()["Slave_IO_Running"] == "Yes"


# --- escalations and resync ---------------------------------------------------------------------

@pytest.mark.integration
def test_lag_is_escalated_with_the_blocking_transaction(replication, table, mysql_config):
    path = target_config(mysql_config, warning=2, critical=100)
    blocker = replication.replica.connect(autocommit=False)
    try:
        with blocker.cursor() as cur:
            cur.execute("SET SESSION sql_log_bin=0")
            cur.execute(f"UPDATE {table}.t SET v = 'held' WHERE id = 1")
        replication.primary.sql(f"UPDATE {table}.t SET v = 'primary' WHERE id = 1")
        mi.wait_until(lambda: ((replication.replica.status() or {}).get("Seconds_Behind_Master") or 0) > 2, 20)
        outcome, _ = repair(path)
        assert outcome.escalate and "nothing to repair automatically" in outcome.reason
        with open(outcome.reason.rsplit(": ", 1)[1].rstrip(")")) as handle:
            evidence = json.load(handle)
        assert any(t["trx_query"] is None or "UPDATE" in (t["trx_query"] or "") for t in evidence["long_transactions"])
        assert len(evidence["long_transactions"]) >= 1
    finally:
        blocker.rollback()
        blocker.close()


def purge_primary_binlogs(replication):
    """1236: the replica is stopped, the primary writes and purges every binlog but the current."""
    replication.replica.sql("STOP SLAVE")
    primary = replication.primary
    for _ in range(20):
        current = primary.sql("FLUSH BINARY LOGS", "SHOW MASTER STATUS")[0]["File"]
        primary.sql(f"PURGE BINARY LOGS TO '{current}'")
        if len(primary.sql("SHOW BINARY LOGS")) == 1:
            break
    replication.replica.sql("START SLAVE")
    mi.wait_until(lambda: (replication.replica.status() or {}).get("Last_IO_Errno") == 1236, 10)


@pytest.mark.integration
def test_purged_binlogs_escalate_then_resync_where_allowed(replication, table, mysql_config, run_cli):
    replication.replica.sql("STOP SLAVE")
    replication.primary.sql(f"INSERT INTO {table}.t VALUES (300, 'missed'), (301, 'missed too')")
    purge_primary_binlogs(replication)

    refused = run_cli("remediate", "mysql-replication", "--config", target_config(mysql_config), "replica")
    assert refused.returncode == 1 and "error 1236" in refused.stdout
    assert "a resync from the primary is needed (a human decision: resync.allowed is off)" in refused.stdout

    path = target_config(mysql_config, resync={"allowed": True, "databases": [table]})
    outcome, config = repair(path)
    assert outcome.status == "remediated", outcome.to_dict()
    assert f"resynced {table}" in outcome.notes[0] and f"{table}.t checksum" in outcome.notes[0]
    assert rows(replication.replica, table) == rows(replication.primary, table)
    # Loaded with sql_log_bin=0: no replica-local GTID in its binlog (strict mode would trip on it).
    assert "0-2-" not in replication.replica.one("SELECT @@gtid_binlog_pos AS p")["p"]
    assert not glob.glob(os.path.join(config.state_dir, "mysql", "resync", "*"))     # dump and logins removed


@pytest.mark.integration
def test_refusals_for_configuration(replication, mysql_config):
    cases = [
        (mysql_config({"mysql-replication": {"enabled": False, "targets": {"replica": {"server": "replica"}}}}),
         "enabled"),
        (mysql_config({"mysql-replication": {"enabled": True, "targets": {"other": {"server": "replica"}}}}),
         "not in remediations.mysql-replication.targets"),
        (mysql_config({"mysql-replication": {"enabled": True, "targets": {"replica": {
            "server": "replica", "duplicate_key": {"tables": ["a.b"]}}}}}),
         "primary: required for duplicate_key repairs"),
        (mysql_config({"mysql-replication": {"enabled": True, "targets": {"replica": {
            "server": "replica", "primary": "primary", "duplicate_key": {"tables": ["nodot"]}}}}}),
         "'nodot' is not 'db.table'"),
    ]
    for path, reason in cases:
        outcome, _ = repair(path)
        assert outcome.status == "refused" and reason in outcome.reason, outcome.to_dict()


@pytest.mark.integration
def test_a_duplicate_that_cannot_be_repaired_row_by_row_is_resynced_where_allowed(replication, table, mysql_config):
    path = target_config(mysql_config, duplicate_key={"tables": ["other.*"]},
                         resync={"allowed": True, "databases": [table]})
    duplicate(replication, table, ["(100, 'replica')"], ["(100, 'primary')"])
    outcome, _ = repair(path)
    assert outcome.status == "remediated", outcome.to_dict()
    assert [s.description.split(" ")[0] for s in outcome.plan] == ["resync"]
    assert rows(replication.replica, table) == rows(replication.primary, table)


def test_config_check_validates_the_mysql_sections(mysql_config, run_cli):
    good = mysql_config({"mysql-replication": {"enabled": True, "targets": {"replica": {
        "server": "replica", "primary": "primary", "duplicate_key": {"tables": ["app.*"]}}}},
        "galera": {"enabled": True, "targets": {"c": {"nodes": {"g1": {"server": "g1"}, "g2": {"server": "g2"}}}}}})
    ran = run_cli("config", "check", "--config", good)
    assert ran.returncode == 0 and ran.stdout.strip().endswith(": OK"), ran
    bad = mysql_config({"galera": {"enabled": True, "targets": {"c": {"nodes": {"g1": {"server": "g9"}}}}}})
    ran = run_cli("config", "check", "--config", bad)
    assert ran.returncode == 3 and "remediations.galera.targets.c.nodes: list every member" in ran.stderr, ran
