"""mysql-replication through the shared no-harm harness, on the real topology with a steady writer.

The snapshot is read without autoremedy: the writer paused, each replica
brought to the source's GTID position (MASTER_GTID_WAIT), then every table of
every user database hashed on both sides (ordered rows, in Python), plus each
replica's thread states and errant GTIDs. Nothing may differ after the run.

- no harm: a truncated relay log is fetched again from the source: remediated,
  every table equal on the replica and on its own replica;
- harm: the same fault with the plan of before issue 22 (a bare START of the
  SQL thread: the relay log applied with its hole) must end ``failed``, naming
  the tables that differ; and a widened delete-row that also deletes a row of a
  table it never named must end ``failed`` naming that table.
"""
import pytest

from autoremedy.clients import mysql
from autoremedy.contract.remediation import Step
from autoremedy.remediations import _replication_sql as sql
from autoremedy.remediations import mysql_replication as rem
from autoremedy.remediations._replication_plan import keyed

import replication_helpers as h
import replication_topology as rt
from noharm_harness import Case, expect_harm, expect_no_harm


class ReplicationCase(Case):
    cls_name = "mysql-replication"

    def __init__(self, topo, path, inject, klass=None, replicas=("replica", "chained")):
        self.topo, self.path, self._inject, self.klass = topo, path, inject, klass
        self.replicas = replicas
        self.writer = None

    def snapshot(self):
        self.writer.pause()
        try:
            out = {}
            for name in self.replicas:
                node = self.topo.nodes[name]
                try:
                    self.topo.caught_up(name, timeout=10)
                    out[f"{name}: position"] = "reached"
                except AssertionError as exc:
                    out[f"{name}: position"] = str(exc)[:200]
                row = node.status("") or {}
                out[f"{name}: threads"] = f"IO {row.get('Slave_IO_Running')}, SQL {row.get('Slave_SQL_Running')}"
                out[f"{name}: errant"] = rt.errant(self.topo.source, node)
                for table, state in rt.compare(self.topo.source, node).items():
                    out[f"{name}: {table}"] = state
            return out
        finally:
            self.writer.resume()

    def inject(self):
        self._inject()

    def remediate(self):
        outcome, _ = h.repair(self.path, klass=self.klass)
        h.heal_time(f"no-harm case ({(self.klass or rem.REMEDIATION).__name__})", outcome)
        return outcome.to_dict()


class BareStart(rem.ReplicationRepair):
    """The plan before issue 22: "SQL thread stopped, no error" is always a bare
    START, whatever the relay log holds."""

    def _refetch_step(self, session, target, channel, why):
        return keyed(Step(f"start the SQL thread of connection {channel.label!r}",
                          action=self._starter(target, channel.name, "SQL_THREAD"),
                          details=[sql.thread_statement(session, "START", channel.name, "SQL_THREAD")]),
                     "start", channel.name, "SQL_THREAD")


class WidenedDelete(rem.ReplicationRepair):
    """A delete-row whose run also deletes a row of app2.t2, which its plan never named."""

    def _row_repairer(self, target, channel, conflict, event):
        repair = super()._row_repairer(target, channel, conflict, event)

        def widened():
            with mysql.connect(self.server(target)) as session:
                session.execute("SET SESSION sql_log_bin = 0")
                session.execute("DELETE FROM app2.t2 ORDER BY id LIMIT 1")
            return repair()
        return widened


@pytest.fixture
def case(topo, topo_config):
    def make(inject, klass=None, **target):
        h.make_app(topo)
        made = ReplicationCase(topo, topo_config(**target), inject, klass)
        made.writer = h.writer(topo)
        return made
    made = []

    def tracked(*args, **kw):
        made.append(make(*args, **kw))
        return made[-1]
    yield tracked
    for c in made:
        c.writer.stop()


@pytest.mark.integration
def test_refetching_a_truncated_relay_log_harms_nothing(topo, case):
    c = case(lambda: h.truncate_relay_log(topo.replica, None))
    run = expect_no_harm(c)
    assert run.outcome["plan"][0]["step"].startswith("fetch the relay log of connection 'default' again")
    assert {i["name"].split(": ", 1)[0] for i in run.outcome["invariants"]} >= {
        "replica (127.0.0.1:3312) [default]"}
    assert all(v == "equal" for k, v in run.after.items() if ": app" in k)


@pytest.mark.integration
def test_a_bare_start_over_a_truncated_relay_log_is_failed_naming_the_tables(topo, case):
    c = case(lambda: h.truncate_relay_log(topo.replica, None), klass=BareStart)
    run = expect_harm(c, named=["app.t_log", "app2.t2", "differs from the source"])
    assert run.outcome["outcome"] == "failed"
    assert any(d.startswith("replica: app.t_log:") for d in run.differences), run.differences
    print("\nHARM", run.outcome["reason"][:600], run.outcome["harm"][:2])


@pytest.mark.integration
def test_a_delete_row_that_reaches_an_unnamed_table_is_failed_naming_it(topo, case):
    def conflict():
        # The row the widened run deletes, on the replica before replication stops (the
        # steady writer may not have reached app2.t2 yet on a busy machine: nothing to delete).
        topo.source.sql("INSERT INTO app2.t2 (v, n) VALUES ('bystander', 0)")
        topo.caught_up("replica")
        h.duplicate(topo, topo.replica, ["INSERT INTO app.t_pk VALUES (100, 'replica', 0, NULL)"],
                    ["INSERT INTO app.t_pk VALUES (100, 'source', 0, NULL)"])
    c = case(conflict, klass=WidenedDelete, duplicate_key={"tables": ["app.t_pk"]})
    run = expect_harm(c, named=["app2.t2"])
    assert run.outcome["outcome"] == "failed"
    assert any(d.startswith("replica: app2.t2:") for d in run.differences), run.differences
