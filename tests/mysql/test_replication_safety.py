"""The replication repairs never leave a replica different from its source while saying "remediated".

Each case of issue 22 on the real topology (source 3311 -> replica 3312 ->
chained 3314, source -> sibling 3313; GTID, gtid_strict_mode, log_slave_updates)
with a steady writer on the source during the repair; afterwards every table of
every user database is compared with the source, read without autoremedy.
A success outcome with any difference anywhere fails the test; a refusal names
what is at stake and changes nothing.
"""
import glob
import json
import os
import subprocess
import sys
import time

import pytest

from autoremedy.contract import execute

import mysql_instances as mi
import replication_helpers as h
import replication_topology as rt

AUTOREMEDY = os.path.join(os.path.dirname(sys.executable), "autoremedy")


# --- 1. a truncated relay log is fetched again, never started with a hole -----------------------

@pytest.mark.integration
def test_a_truncated_relay_log_is_fetched_again_from_the_source(topo, topo_config):
    h.make_app(topo)
    w = h.writer(topo)
    h.truncate_relay_log(topo.replica, w)
    path = topo_config()
    dry, _ = h.repair(path, dry_run=True)
    assert dry.status == "dry-run", dry.to_dict()
    assert dry.plan[0].description.startswith("fetch the relay log of connection 'default' again from the source")
    assert dry.plan[0].details == ["STOP REPLICA ''", "RESET REPLICA ''", "START REPLICA ''"]
    assert topo.replica.status("")["Slave_SQL_Running"] == "No"          # the dry-run changed nothing
    outcome, _ = h.repair(path)
    h.heal_time("relay log truncated -> re-fetched by GTID", outcome)
    assert outcome.status == "remediated", outcome.to_dict()
    assert "equal to the source at GTID" in outcome.notes[-1]
    assert h.differing(h.settle_and_compare(topo, w, ("replica", "chained"))) == {}


# --- 2. a resync covers the whole GTID domain --------------------------------------------------

@pytest.mark.integration
def test_a_resync_of_part_of_the_gtid_domain_is_refused_and_the_whole_domain_heals(topo, topo_config):
    h.make_app(topo)
    w = h.writer(topo)
    h.purge_source_binlogs(topo, topo.sibling)
    before = rt.table_digests(topo.sibling)
    refused, _ = h.repair(topo_config(server="sibling", resync={"allowed": True, "databases": ["app"]}))
    assert refused.status == "refused", refused.to_dict()
    assert "refusing to resync app alone: app2 share the GTID domain" in refused.reason
    assert rt.table_digests(topo.sibling) == before                       # nothing touched
    outcome, config = h.repair(topo_config(server="sibling", resync={"allowed": True, "databases": ["*"]}))
    h.heal_time("1236 resync of the whole domain (sibling)", outcome)
    assert outcome.status == "remediated", outcome.to_dict()
    assert outcome.notes[0].split(": ", 1)[1].startswith("resynced app, app2 ")
    assert h.differing(h.settle_and_compare(topo, w, ("sibling",))) == {}
    assert rt.errant(topo.source, topo.sibling) == []
    assert not os.listdir(os.path.join(config.state_dir, "mysql", "resync"))   # dump and logins removed


@pytest.mark.integration
def test_a_resync_works_where_it_verified_though_mysql_is_swapped_for_a_link(topo, topo_config, tmp_path):
    """<state_dir>/mysql sits in the group's state directory: swapped for a link to a
    tree of a group member's own between the verification of the work directory and
    the dump, it steers nothing. The dump and the logins (passwords) stay in the
    directory verified, the load reads them from there, and are removed from there."""
    h.make_app(topo)
    w = h.writer(topo)
    h.purge_source_binlogs(topo, topo.sibling)
    path = topo_config(server="sibling", resync={"allowed": True, "databases": ["*"]})
    from autoremedy.config import Config
    state_dir = Config.load(path).state_dir
    evil = str(tmp_path / "evil")
    dry, _ = h.repair(path, dry_run=True)
    assert dry.status == "dry-run", dry.to_dict()
    runner = h.swapping_runner(state_dir, evil, ("mariadb-dump", "mysqldump"))
    outcome, _ = h.repair(path, runner=runner)
    assert runner.swapped
    # the dry-run printed exactly the commands the run gave the tools (files by name in the work directory)
    shown = [line.split("   (in ")[0] for step in dry.plan for line in step.details or []
             if line.split(" ", 1)[0] in ("mariadb-dump", "mysqldump", "mariadb", "mysql")]
    assert shown and shown == [" ".join(argv) for argv in runner.argvs], (shown, runner.argvs)
    assert outcome.status == "remediated", outcome.to_dict()
    assert h.files_under(evil) == []                                     # nothing written, nothing read there
    assert h.files_under(os.path.join(state_dir, "mysql.away")) == []    # and removed where it was
    assert h.differing(h.settle_and_compare(topo, w, ("sibling",))) == {}


# --- 3. skip only whole truths -------------------------------------------------------------------

@pytest.mark.integration
def test_skip_is_refused_unless_every_row_change_is_already_on_the_replica(topo, topo_config):
    h.make_app(topo)
    w = h.writer(topo)
    h.duplicate(topo, topo.sibling, ["INSERT INTO app.t_pk VALUES (100, 'replica', 0, NULL)"],
                ["INSERT INTO app.t_pk VALUES (100, 'source', 0, NULL)",
                 "INSERT INTO app.t_log (v, n) VALUES ('same transaction', 7)",
                 "INSERT INTO app2.t2 (v, n) VALUES ('same transaction', 7)"])
    path = topo_config(server="sibling", duplicate_key={"tables": ["app.*"], "action": "skip"})
    refused, _ = h.repair(path)
    assert refused.status == "refused", refused.to_dict()
    assert "refusing to skip GTID 0-11-" in refused.reason and "the replica lacks 3 of them" in refused.reason
    for row in ("app.t_pk INSERT id=100", "app.t_log INSERT id=", "app2.t2 INSERT id="):
        assert row in refused.reason, refused.reason
    assert topo.sibling.status("")["Last_SQL_Errno"] == 1062            # nothing skipped
    # Once the replica holds every change of the transaction, skipping it loses nothing.
    w.pause()
    log = topo.source.one("SELECT * FROM app.t_log WHERE v = 'same transaction'")
    t2 = topo.source.one("SELECT * FROM app2.t2 WHERE v = 'same transaction'")
    topo.sibling.sql("SET SESSION sql_log_bin=0", "UPDATE app.t_pk SET v = 'source' WHERE id = 100",
                     f"INSERT INTO app.t_log VALUES ({log['id']}, 'same transaction', 7)",
                     f"INSERT INTO app2.t2 VALUES ({t2['id']}, 'same transaction', 7)")
    w.resume()
    outcome, config = h.repair(path)
    h.heal_time("1062 skip of a transaction already on the replica", outcome)
    assert outcome.status == "remediated", outcome.to_dict()
    assert outcome.plan[0].details[1] == "SET GLOBAL sql_slave_skip_counter = 1"
    [record] = h.audit_records(config, "mysql-replication")
    assert record["action"] == "skip" and record["gtid"].startswith("0-11-")
    assert h.differing(h.settle_and_compare(topo, w, ("sibling",))) == {}


# --- 4. the configured primary must be the replica's source ------------------------------------------

@pytest.mark.integration
def test_a_primary_that_is_not_the_replicas_source_is_refused(topo, topo_config):
    h.make_app(topo)
    h.purge_source_binlogs(topo, topo.replica)
    before = rt.table_digests(topo.replica)
    outcome, _ = h.repair(topo_config(primary="sibling", resync={"allowed": True, "databases": ["*"],
                                                                 "downstream": ["chained"]}))
    assert outcome.status == "refused", outcome.to_dict()
    assert "the configured source sibling (127.0.0.1:3313) is not the replica's source 127.0.0.1:3311" \
        in outcome.reason
    assert "server_id 11" in outcome.reason and "server_id 13" in outcome.reason
    assert rt.table_digests(topo.replica) == before
    assert topo.replica.status("")["Last_IO_Errno"] == 1236               # untouched


# --- 5. a replica with replicas of its own -------------------------------------------------------------

@pytest.mark.integration
def test_a_replica_with_its_own_replica_is_resynced_only_with_it(topo, topo_config):
    h.make_app(topo)
    w = h.writer(topo)
    h.purge_source_binlogs(topo, topo.replica)
    refused, _ = h.repair(topo_config(resync={"allowed": True, "databases": ["*"]}))
    assert refused.status == "refused", refused.to_dict()
    assert "the replica has replicas of its own (server_id 14 at 127.0.0.1:3314)" in refused.reason
    outcome, _ = h.repair(topo_config(resync={"allowed": True, "databases": ["*"], "downstream": ["chained"]}))
    h.heal_time("1236 resync of a replica and its own replica", outcome)
    assert outcome.status == "remediated", outcome.to_dict()
    assert [i["holds"] for i in outcome.to_dict()["invariants"]] == [True] * 4
    assert h.differing(h.settle_and_compare(topo, w, ("replica", "chained"))) == {}
    assert rt.errant(topo.source, topo.replica) == [] and rt.errant(topo.replica, topo.chained) == []


# --- 6. events stay SLAVESIDE_DISABLED ------------------------------------------------------------------

@pytest.mark.integration
def test_a_resync_keeps_events_disabled_on_the_replica(topo, topo_config):
    h.make_app(topo, ["CREATE EVENT app.tick ON SCHEDULE EVERY 1 SECOND DO "
                      "INSERT INTO app.t_log (v, n) VALUES ('tick', 0)"])
    assert topo.sibling.one("SELECT STATUS FROM information_schema.EVENTS WHERE EVENT_NAME='tick'")["STATUS"] \
        == "SLAVESIDE_DISABLED"
    topo.sibling.sql("SET GLOBAL event_scheduler = ON")       # the source's scheduler stays off
    w = h.writer(topo)
    h.purge_source_binlogs(topo, topo.sibling)
    outcome, _ = h.repair(topo_config(server="sibling", resync={"allowed": True, "databases": ["*"]}))
    h.heal_time("1236 resync with an event, event scheduler on", outcome)
    assert outcome.status == "remediated", outcome.to_dict()
    assert topo.sibling.one("SELECT STATUS FROM information_schema.EVENTS WHERE EVENT_NAME='tick'")["STATUS"] \
        == "SLAVESIDE_DISABLED"
    time.sleep(2.5)         # an enabled event would have written local rows by now
    assert topo.sibling.status("")["Slave_SQL_Running"] == "Yes"
    assert h.differing(h.settle_and_compare(topo, w, ("sibling",))) == {}
    assert rt.errant(topo.source, topo.sibling) == []           # read with the writer stopped


# --- 7. delete-row never deletes a row the source has ----------------------------------------------------

@pytest.mark.integration
def test_delete_row_refuses_a_replica_row_the_source_has_by_another_key(topo, topo_config):
    h.make_app(topo)
    w = h.writer(topo)
    # The replica updated row 5 locally; the source then inserts row 9 with that e-mail.
    h.duplicate(topo, topo.replica, ["UPDATE app.t_pk SET email = 'taken@x' WHERE id = 5"],
                ["INSERT INTO app.t_pk VALUES (9, 'nine', 0, 'taken@x')"])
    path = topo_config(duplicate_key={"tables": ["app.t_pk"]})
    outcome, _ = h.repair(path)
    assert outcome.status == "refused", outcome.to_dict()
    assert "refusing to delete the replica's row {'id': 5, 'v': 'five', 'n': 0, 'email': 'taken@x'}" \
        in outcome.reason
    assert "the source also has the replica's row by key PRIMARY (id=5)" in outcome.reason
    assert topo.replica.one("SELECT email FROM app.t_pk WHERE id = 5")["email"] == "taken@x"   # not deleted
    w.stop()


# --- 8. one repair per server -------------------------------------------------------------------------------

def _concurrently(commands):
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PATH": os.environ.get("PATH", "")}) for c in commands]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        try:
            outs.append(json.loads(out))
        except ValueError:
            raise AssertionError(f"no JSON outcome: {out!r} {err!r}") from None
    return outs


@pytest.mark.integration
@pytest.mark.parametrize("how", ["two target names", "two state directories"])
def test_two_resyncs_of_one_server_at_once_run_once(topo, topo_config, tmp_path, how):
    h.make_app(topo)
    w = h.writer(topo)
    h.purge_source_binlogs(topo, topo.sibling)
    spec = {"server": "sibling", "resync": {"allowed": True, "databases": ["*"]}}
    if how == "two target names":
        first = topo_config(name="db-a", **spec)
        second = topo_config(name="db-b", **spec)
    else:
        first = topo_config(name="db-a", state_dir=tmp_path / "one", **spec)
        second = topo_config(name="db-a", state_dir=tmp_path / "two", **spec)
    for d in ("one", "two"):
        (tmp_path / d).mkdir(exist_ok=True)
    cmd = [AUTOREMEDY, "remediate", "mysql-replication", "--json", "--config"]
    outcomes = _concurrently([cmd + [first, "db-a"], cmd + [second, "db-b" if how == "two target names" else "db-a"]])
    statuses = sorted(o["outcome"] for o in outcomes)
    for o in outcomes:
        h.heal_time(f"concurrent resync ({how}): one of two", o)
    assert statuses.count("remediated") == 1, outcomes
    other = next(o for o in outcomes if o["outcome"] != "remediated")
    assert other["outcome"] in ("noop", "refused"), outcomes
    if other["outcome"] == "refused":
        assert "another remediation of sibling (127.0.0.1:3313)" in other["reason"], other
    compared = h.settle_and_compare(topo, w, ("sibling",))
    assert h.differing(compared) == {} and compared["sibling"]["app.nopk"] == "equal"


# --- 9. errant transactions -------------------------------------------------------------------------------

@pytest.mark.integration
def test_errant_transactions_are_reported_and_refused(topo, topo_config, run_cli, root_cnf):
    h.make_app(topo)
    sibling = ["-H", "127.0.0.1", "-P", str(rt.PORTS["sibling"]), "--defaults-file", root_cnf]
    assert run_cli("check", "mysql-replication", *sibling).returncode == 0
    # A write on the replica in another GTID domain: replication never stops over it.
    topo.sibling.sql("SET SESSION gtid_domain_id = 7", "INSERT INTO app.t_log (v, n) VALUES ('local', 0)")
    ran = run_cli("check", "mysql-replication", *sibling)
    assert ran.returncode == 2, ran
    assert "errant transactions on the replica (not from its source): 7-13-1" in ran.stdout
    assert mi.perfdata(ran.stdout)["errant_transactions"] == "1"
    healthy, _ = h.repair(topo_config(server="sibling"))          # threads running: not "healthy" either
    assert healthy.status == "refused" and "errant transactions on the replica (its source never had them): " \
        "7-13-1: nothing to repair automatically" in healthy.reason, healthy.to_dict()
    topo.sibling.sql("STOP SLAVE SQL_THREAD")
    outcome, _ = h.repair(topo_config(server="sibling"))
    assert outcome.status == "refused", outcome.to_dict()
    assert "errant transactions on the replica (its source never had them): 7-13-1" in outcome.reason
    assert topo.sibling.status("")["Slave_SQL_Running"] == "No"          # nothing done over them


@pytest.mark.integration
def test_an_errant_transaction_hidden_by_later_ones_is_found_against_the_source(topo, run_cli, root_cnf):
    """Without gtid_strict_mode a local write in the replicated domain is followed by
    the source's next transaction with the same sequence number: seen from the
    replica alone it looks applied; against the source's GTID state it is not."""
    h.make_app(topo)
    topo.sibling.sql("SET GLOBAL gtid_strict_mode = 0")
    topo.sibling.sql("INSERT INTO app.nopk (v, n) VALUES ('local', 0)")
    topo.source.sql("INSERT INTO app.t_log (v, n) VALUES ('source', 1)")
    topo.caught_up("sibling")
    sibling = ["-H", "127.0.0.1", "-P", str(rt.PORTS["sibling"]), "--defaults-file", root_cnf]
    local = run_cli("check", "mysql-replication", *sibling)
    against = run_cli("check", "mysql-replication", *sibling, "--source", f"127.0.0.1:{rt.PORTS['source']}")
    errant = rt.errant(topo.source, topo.sibling)
    assert len(errant) == 1 and errant[0].startswith("0-13-")
    assert local.returncode == 0, local                      # the replica alone cannot tell
    assert against.returncode == 2 and f"errant transactions on the replica (not from its source): {errant[0]}" \
        in against.stdout, against


# --- 10. the source dies during a resync --------------------------------------------------------------------

@pytest.mark.integration
def test_the_source_dying_during_a_resync_leaves_the_replica_as_found(topo, topo_config):
    h.make_app(topo)
    h.purge_source_binlogs(topo, topo.sibling)
    before = rt.table_digests(topo.sibling)
    found = topo.sibling.status("")

    def dies_during_the_dump(argv, **kw):
        if "mariadb-dump" in argv[0] or "mysqldump" in argv[0]:
            topo.source.kill()
        return execute.run(argv, **kw)
    path = topo_config(server="sibling", resync={"allowed": True, "databases": ["*"]})
    outcome, config = h.repair(path, runner=dies_during_the_dump)
    h.heal_time("source killed during a 1236 resync (must fail, replica as found)", outcome)
    assert outcome.status == "failed", outcome.to_dict()
    assert "dump from the source: exit" in outcome.reason
    now = topo.sibling.status("")
    assert (now["Slave_SQL_Running"], now["Slave_IO_Running"]) == (found["Slave_SQL_Running"],
                                                                  found["Slave_IO_Running"])
    assert rt.table_digests(topo.sibling) == before
    assert glob.glob(os.path.join(config.state_dir, "mysql", "resync", "**", "*"), recursive=True) == []
