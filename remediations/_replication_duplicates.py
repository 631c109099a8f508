"""Duplicate-key (1062) repairs of mysql-replication: delete the replica's row, or skip a transaction.

A mixin of ``ReplicationRepair`` (mysql_replication.py): ``delete-row`` deletes
the replica's conflicting row only when the source does not have it by any
unique key; ``skip`` skips a transaction only when every one of its row changes
is already on the replica (_replication_rows). Both are capped per hour and
audited row by row; the comparison step verifies afterwards.
"""
import contextlib
import os

from autoremedy.contract import execute
from autoremedy.clients import mysql
from autoremedy import statefile
from autoremedy.contract.remediation import RemediationError, Step

from autoremedy.remediations import _replication_rows as rows
from autoremedy.remediations import _replication_source as origin
from autoremedy.remediations import _replication_sql as sql
from autoremedy.remediations._replication_plan import Scope, keyed

DUPLICATE_KEY = 1062


class DuplicateKeyRepairs:
    def _duplicate_key_step(self, session, source, target, channel, label):
        entry = self.entry(target)
        dup = entry["duplicate_key"]
        conflict = sql.parse_duplicate(channel.sql_error) or sql.parse_duplicate(sql.worker_error(session, channel))
        if conflict is None:
            return f"{label}: cannot tell which table and key the duplicate is on"
        db, table = conflict["db"], conflict["table"]
        if not sql.table_allowed(db, table, dup["tables"]):
            return f"{label}: table {db}.{table} is not in duplicate_key.tables"
        used = self._repairs_last_hour(target)
        if used >= dup["max_per_hour"]:
            return (f"{label}: {used} duplicate-key repairs on {target} in the last hour "
                    f"(max_per_hour {dup['max_per_hour']}): the replica keeps diverging")
        event = sql.failing_event(session, channel)
        if dup["action"] == "delete-row":
            located = sql.locate_row(session, db, table, conflict["key"], conflict["value"])
            if isinstance(located, str):
                return f"{label}: {located}"
            where, params, row = located
            claim = rows.source_claims(session, source, db, table, where, params)
            if claim:
                return f"{label}: refusing to delete the replica's row {row} of {db}.{table}: {claim}"
            name = mysql.quote_ident(db, table)
            step = Step(f"delete the replica's conflicting row {db}.{table} {conflict['key']}="
                        f"{conflict['value']!r} without binlogging it (the source does not have it), "
                        f"re-apply GTID {event.get('gtid') or '?'}",
                        action=self._row_repairer(target, channel, conflict, event),
                        details=[f"row: {row}", "SET SESSION sql_log_bin = 0; BEGIN",
                                 f"SELECT * FROM {name} WHERE {where} LIMIT 2 FOR UPDATE  -- params {params}",
                                 f"DELETE FROM {name} WHERE {where} LIMIT 1; COMMIT; SET SESSION sql_log_bin = 1",
                                 sql.thread_statement(session, "START", channel.name, "SQL_THREAD"),
                                 "repeated for a next allowlisted duplicate the source does not have either, "
                                 f"within max_per_hour {dup['max_per_hour']}"])
            step.scope = Scope(channel.name, channel.label, tables={(db, table)})
            return keyed(step, "delete-row", channel.name, db, table, conflict["key"], conflict["value"])
        return self._skip_step(session, source, target, channel, conflict, event, label)

    def _skip_step(self, session, source, target, channel, conflict, event, label):
        """Skip only a transaction whose every row change the replica already has."""
        below = origin.downstream(session)
        if below:
            return (f"{label}: refusing to skip: the replica has replicas of its own "
                    f"({origin.describe_downstream(below)}) and a skipped transaction never reaches them")
        transaction = origin.transaction_at(source, channel.exec_file, channel.exec_pos)
        if transaction["gtid"] is None or transaction["end"] is None:
            return f"{label}: the failed transaction cannot be read from the source's binlog at " \
                   f"{channel.exec_file}:{channel.exec_pos}"
        if event.get("gtid") and transaction["gtid"] != event["gtid"]:
            return (f"{label}: the source's binlog at {channel.exec_file}:{channel.exec_pos} holds GTID "
                    f"{transaction['gtid']}, the relay log {event['gtid']}: refusing to skip")
        if not transaction["rows_only"]:
            return f"{label}: GTID {transaction['gtid']} holds statements, not only row changes: cannot verify a skip"
        try:
            with self._workdir("rows") as workdir:
                changes = rows.read_transaction(self.runner, self.source_server(target, channel.name),
                                                workdir, transaction)
        except (rows.RowsUnreadable, execute.CommandError, OSError) as exc:
            return f"{label}: cannot read the rows of GTID {transaction['gtid']} from the source: {exc}"
        missing = rows.missing_changes(session, changes)
        if missing:
            tables = sorted({f"{c.db}.{c.table}" for c in changes})
            return (f"{label}: refusing to skip GTID {transaction['gtid']} ({len(changes)} row changes on "
                    f"{', '.join(tables)}): the replica lacks {len(missing)} of them, a skip would lose them: "
                    + "; ".join(missing[:20]) + (" ..." if len(missing) > 20 else ""))
        statements = sql.skip_statements(session, channel, event)
        step = Step(f"skip GTID {transaction['gtid']}: all its {len(changes)} row changes are already on the "
                    "replica", action=self._skipper(target, channel, conflict, event), details=statements)
        step.scope = Scope(channel.name, channel.label, tables=set(transaction["tables"]))
        return keyed(step, "skip", channel.name, transaction["gtid"])

    @contextlib.contextmanager
    def _workdir(self, what):
        """<state_dir>/mysql/<what>: root's own, 0700, made without following anything
        planted, held open while the block runs and named by its pinned path (mysql/
        sits in the group's state directory: swapped for a link meanwhile, it
        redirects nothing)."""
        from autoremedy import safefs
        with safefs.open_dir(os.path.join(self.config.state_dir, "mysql", what),
                             create=True, private=True) as directory:
            yield safefs.pinned_path(directory)

    def _ledger_path(self):
        return os.path.join(self.config.state_dir, "mysql", "row-repairs.json")

    def _repairs_last_hour(self, target):
        now = self.clock()
        ledger = statefile.load(self._ledger_path(), {}) or {}
        return len([t for t in ledger.get(target, []) if now - t <= 3600])

    def _count_repair(self, target):
        now = self.clock()
        with statefile.updating(self._ledger_path()) as ledger:
            ledger[target] = [t for t in ledger.get(target, []) if now - t <= 3600] + [now]

    def _row_repairer(self, target, channel, first_conflict, first_event):
        """Delete the conflicting row, re-apply, repeat while the next error is another
        allowlisted duplicate whose row the source does not have and the hourly cap
        allows. The comparison step verifies afterwards."""
        dup = self.entry(target)["duplicate_key"]
        source_server = self.source_server(target, channel.name)

        def repair():
            notes = []
            conflict, event = first_conflict, first_event
            with self.session(target) as session, mysql.connect(source_server) as source:
                while True:
                    located = sql.locate_row(session, conflict["db"], conflict["table"], conflict["key"],
                                             conflict["value"])
                    if isinstance(located, str):
                        raise RemediationError(located)
                    where, params, row = located
                    claim = rows.source_claims(session, source, conflict["db"], conflict["table"], where, params)
                    if claim:
                        raise RemediationError(f"not deleting {conflict['db']}.{conflict['table']} row {row}: {claim}")
                    sql.delete_row(session, conflict["db"], conflict["table"], where, params)
                    self._count_repair(target)
                    self._audit_row("delete-row", target, channel, conflict, event, row)
                    notes.append(f"deleted {conflict['db']}.{conflict['table']} row {row} (GTID "
                                 f"{event.get('gtid') or '?'})")
                    session.execute(sql.thread_statement(session, "START", channel.name, "SQL_THREAD"))
                    current = sql.settle_sql(session, channel.name, sleep=self.sleep)
                    if current is None or current.sql == "Yes" or current.sql_errno != DUPLICATE_KEY:
                        break
                    conflict = sql.parse_duplicate(current.sql_error) or sql.parse_duplicate(
                        sql.worker_error(session, current))
                    if (conflict is None or not sql.table_allowed(conflict["db"], conflict["table"], dup["tables"])
                            or self._repairs_last_hour(target) >= dup["max_per_hour"]):
                        raise RemediationError(f"the SQL thread stopped again: error {current.sql_errno}: "
                                               f"{current.sql_error}")
                    event = sql.failing_event(session, current)
            return "; ".join(notes)
        return repair

    def _skipper(self, target, channel, conflict, event):
        def skip():
            with self.session(target) as session:
                sql.skip_event(session, channel, event)
                self._count_repair(target)
                self._audit_row("skip", target, channel, conflict, event, None)
                current = sql.settle_sql(session, channel.name, sleep=self.sleep)
                if current is not None and current.sql != "Yes":
                    raise RemediationError(f"SQL thread stopped again after the skip: error "
                                           f"{current.sql_errno}: {current.sql_error}")
            return f"skipped GTID {event.get('gtid') or '?'} (every row change of it already on the replica)"
        return skip

    def _audit_row(self, action, target, channel, conflict, event, row):
        if self.audit is None:
            return
        self.audit.record("mysql-replication", "ok", action=action, cls=self.name, target=target,
                          connection=channel.name, table=f"{conflict['db']}.{conflict['table']}",
                          key=conflict["key"], value=conflict["value"], row=row, gtid=event.get("gtid"),
                          position=f"{channel.exec_file}:{channel.exec_pos}",
                          relay=f"{channel.relay_log_file}:{channel.relay_log_pos}",
                          statement=event.get("statement"))
