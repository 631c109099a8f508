"""The no-harm declarations of mysql-replication (docs/noharm.md): what a run may change, what must hold.

A mixin of ``ReplicationRepair`` (mysql_replication.py). Reach: the replication
connections the plan acts on (each must end running) and the tables it names
(no other table of the replica may be recreated). Invariants: the affected
tables equal to the source at one GTID position (the run's own comparison),
no errant transactions, every event's status kept on the replica.
"""
from autoremedy.clients import mysql
from autoremedy.contract.noharm import Invariant, Reach

from autoremedy.checks import mysql_replication as check
from autoremedy.remediations import _replication_compare as compare
from autoremedy.remediations import _replication_resync as resync
from autoremedy.remediations import _replication_source as origin
from autoremedy.remediations import _replication_sql as sql


class NoHarmDeclarations:
    def reach(self, target, plan):
        scopes = [s.scope for s in plan if getattr(s, "compare", False)]
        replica = self.server(target)
        named_tables = set()
        for scope in scopes:
            named_tables |= {f"{d}.{t}" for d, t in scope.tables}
            if scope.databases:
                with mysql.connect(replica) as session, \
                        mysql.connect(self.source_server(target, scope.connection)) as source:
                    both = compare.database_tables(session, scope.databases) | \
                        compare.database_tables(source, scope.databases)
                named_tables |= {f"{d}.{t}" for d, t in both}
        running = lambda b, a: bool(a) and a.get("io") == "Yes" and a.get("sql") == "Yes"  # noqa: E731
        return [
            Reach("replication connection", [s.label for s in scopes], read=lambda: self._connections(replica),
                  how=f"SHOW ALL REPLICAS STATUS on {replica.describe()}",
                  expect={s.label: running for s in scopes}),
            Reach("table", sorted(named_tables), read=lambda: self._tables(replica),
                  how=f"information_schema.TABLES (CREATE_TIME) of every user database on {replica.describe()}"),
        ]

    def _connections(self, server):
        with mysql.connect(server) as session:
            return {c.label: {"io": c.io, "sql": c.sql, "source": c.primary}
                    for c in check.read_status(session)[1]}

    def _tables(self, server):
        with mysql.connect(server) as session:
            found = session.rows(
                "SELECT TABLE_SCHEMA AS db, TABLE_NAME AS t, CREATE_TIME AS c FROM information_schema.TABLES "
                "WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN "
                f"({','.join(['%s'] * len(compare.SYSTEM_DATABASES))})", compare.SYSTEM_DATABASES)
        return {f"{r['db']}.{r['t']}": str(r["c"]) for r in found}

    def invariants(self, target, plan):
        scopes = [s.scope for s in plan if getattr(s, "compare", False)]
        replica = self.server(target)
        out = []
        for scope in scopes:
            source = self.source_server(target, scope.connection)
            for server, conn in [(replica, scope.connection)] + scope.downstream:
                out.append(Invariant(
                    f"{server.describe()} [{conn or 'default'}]: {scope.describe()} equal to "
                    f"{source.describe()}, the source, at one GTID position",
                    "chunked checksums inside two consistent snapshots at the same GTID position "
                    "(source snapshot + BINLOG_GTID_POS; replica START SLAVE UNTIL + MASTER_GTID_WAIT); "
                    "before the run: the source answers and the replica's position",
                    self._equality_reader(target, server, conn, scope),
                    holds=lambda before, after: isinstance(after, dict) and not after.get("differ")
                    and not after.get("not_compared") and "position" in after,
                    rule="equal to the source"))
            out.append(Invariant(
                f"{replica.describe()} [{scope.label}]: no errant transactions",
                "@@gtid_binlog_state of the replica against the source's, in the connection's domains",
                self._errant_reader(replica, source, scope.connection),
                holds=lambda before, after: after == [], rule="none"))
        out.append(Invariant(
            f"{replica.describe()}: event states (SLAVESIDE_DISABLED stays)",
            "information_schema.EVENTS on the replica",
            lambda: self._events(replica),
            holds=lambda before, after: all(after.get(k, v) == v for k, v in before.items())
            and all(v != "ENABLED" for k, v in after.items() if k not in before),
            rule="every event keeps its status; no new event runs on the replica"))
        return out

    def _events(self, server):
        with mysql.connect(server) as session:
            return resync.event_states(session)

    def _equality_reader(self, target, server, connection, scope):
        state = {"reads": 0}

        def read():
            state["reads"] += 1
            source = self.source_server(target, scope.connection)
            if state["reads"] == 1:
                # Before the run the connection is broken: it cannot reach the source's
                # position. What can be read is that the evidence will be readable.
                with mysql.connect(source) as theirs:
                    position = theirs.value("SELECT @@global.gtid_binlog_pos")
                with mysql.connect(server) as mine:
                    applied = mine.value("SELECT @@global.gtid_slave_pos")
                return {"source_position": position, "replica_applied": applied,
                        "compared": "after the run"}
            done = self._compared.get((target, server.address, connection))
            if done is None:
                done = self.compare_now(target, server, connection, scope)
            return done.to_dict()
        return read

    def _errant_reader(self, replica, source, connection):
        def read():
            with mysql.connect(replica) as mine, mysql.connect(source) as theirs:
                channel = sql.channel(mine, connection)
                return origin.errant(mine, theirs, channel) if channel is not None else []
        return read
