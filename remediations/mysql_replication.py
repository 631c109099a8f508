"""Repair MySQL/MariaDB replication where that is safe; otherwise escalate with evidence and the procedure.

Configuration (nothing is touched unless its replica is listed here)::

    mysql:
      servers:
        db-primary:   {host: 10.0.0.11, option_file: /etc/autoremedy/db-admin.cnf}
        db-replica-1: {host: 10.0.0.12, option_file: /etc/autoremedy/db-admin.cnf}
    remediations:
      mysql-replication:
        enabled: true
        targets:
          db-replica-1:                     # the name on the command line and in routes
            server: db-replica-1            # mysql.servers entry of the replica
            primary: db-primary             # mysql.servers entry of its primary (checksums, resync)
            connections: ['']               # which connections / channels (default: all)
            reconnect: {attempts: 4, backoff: 2s, max_backoff: 30s}
            duplicate_key:
              tables: [nova.instance_faults, 'keystone.*']
              action: delete-row            # or: skip (the tables stay divergent)
              max_per_hour: 3
            resync: {allowed: false, databases: [nova, keystone]}

What it does, per replication connection:

- IO and/or SQL thread stopped without an error: START SLAVE / START REPLICA of that thread.
- IO thread cannot reach the primary (2002/2003/2005/2006/2013) or is stuck
  "Connecting": only once the primary answers again, restart the IO thread with
  backoff until it is connected; while it is down, escalate.
- SQL thread stopped by a duplicate key (1062) on an allowlisted table:
  ``delete-row`` deletes the replica's conflicting row with sql_log_bin=0 and lets
  the event re-apply (the replica ends equal to the primary); ``skip`` skips the
  event (only where configured: the tables stay divergent). Capped per hour; every
  row, GTID and position in the audit log; the table's checksum compared on both
  sides afterwards.
- Purged binlogs (1236), drift (1032, 1950, other 1062s): escalate with the
  evidence and the exact resync procedure; resync only where ``resync.allowed``
  says so (MariaDB with GTID).
- Relay log damage, authentication (1045), lag, anything else: escalate.

Every run ends with a verification: the replication check until it is OK
(``catch_up_timeout``), plus the checksums above.
"""
import itertools
import os
import re
import time

from autoremedy import config as configmod
from autoremedy import execute, mysql, statefile
from autoremedy.guard import Refused
from autoremedy.remediation import Remediation, RemediationError, Step
from autoremedy.result import Result, Status

from autoremedy.checks import mysql_replication as check

DUPLICATE_KEY = 1062
RESYNCABLE = {1236, 1032, 1950, 1062}     # drift or lost binlogs: a copy of the primary fixes them
DEFAULTS = {
    "restart_threads": True,
    "reconnect": {"attempts": 4, "backoff": 2.0, "max_backoff": 30.0},
    "duplicate_key": {"tables": [], "action": "delete-row", "max_per_hour": 3, "checksum_max_rows": 1000000},
    "resync": {"allowed": False, "databases": [], "timeout": 3600.0},
    "catch_up_timeout": 60.0,
    "lock_wait": 10.0,
    "warning": "300",
    "critical": "600",
}
ACTIONS = ("delete-row", "skip")
SYSTEM_DATABASES = ("mysql", "information_schema", "performance_schema", "sys")


class ReplicationRepair(Remediation):
    name = "mysql-replication"
    scope = "api"
    schema = {
        "targets": configmod.Map({
            "server": str,
            "primary": str,
            "connections": configmod.List(str),
            "restart_threads": bool,
            "reconnect": {"attempts": int, "backoff": configmod.Duration, "max_backoff": configmod.Duration},
            "duplicate_key": {"tables": configmod.List(str), "action": str, "max_per_hour": int,
                              "checksum_max_rows": int},
            "resync": {"allowed": bool, "databases": configmod.List(str), "timeout": configmod.Duration},
            "catch_up_timeout": configmod.Duration,
            "lock_wait": configmod.Duration,
            "warning": (int, str),
            "critical": (int, str),
        }),
    }

    def __init__(self, config, runner=execute.run, audit=None, sleep=time.sleep, clock=time.time):
        super().__init__(config, runner, audit)
        self.sleep, self.clock = sleep, clock

    # -- configuration ------------------------------------------------------------
    def entry(self, target):
        return configmod.merge(DEFAULTS, self.allowlist()[target])

    def resolve(self, name):
        target = super().resolve(name)
        entry = self.entry(target)
        where = f"remediations.mysql-replication.targets.{target}"
        if not entry.get("server"):
            raise configmod.ConfigError(f"{where}.server: required (a mysql.servers entry)")
        servers = mysql.settings(self.config).get("servers") or {}
        for key in ("server", "primary"):
            if entry.get(key) and entry[key] not in servers:
                raise configmod.ConfigError(f"{where}.{key}: {entry[key]!r} is not in mysql.servers")
        dup = entry["duplicate_key"]
        if dup["action"] not in ACTIONS:
            raise configmod.ConfigError(f"{where}.duplicate_key.action: {dup['action']!r} is not one of "
                                        f"{', '.join(ACTIONS)}")
        for pattern in dup["tables"]:
            if pattern.count(".") != 1 or not all(pattern.split(".")):
                raise configmod.ConfigError(f"{where}.duplicate_key.tables: {pattern!r} is not 'db.table' "
                                            "or 'db.*'")
        if (dup["tables"] or entry["resync"]["allowed"]) and not entry.get("primary"):
            raise configmod.ConfigError(f"{where}.primary: required for duplicate_key repairs and resync "
                                        "(both are verified against the primary)")
        if entry["resync"]["allowed"] and not entry["resync"]["databases"]:
            raise configmod.ConfigError(f"{where}.resync.databases: list the databases a resync copies")
        return target

    def server(self, target, role="server"):
        name = self.entry(target).get(role)
        return mysql.resolve(self.config, name) if name else None

    def session(self, target, role="server"):
        return mysql.connect(self.server(target, role), lock_wait=self.entry(target)["lock_wait"])

    def channels(self, session, target):
        _, found = check.read_status(session)
        wanted = self.entry(target).get("connections")
        return [c for c in found if wanted is None or c.name in wanted]

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("target", help="a key of remediations.mysql-replication.targets")

    # -- plan -----------------------------------------------------------------------
    def plan(self, target):
        entry = self.entry(target)
        with self.session(target) as session:
            channels = self.channels(session, target)
            if not channels:
                self.escalate(target, session, [], ["replication is not configured on the replica "
                                                    "(no connection matches the configuration)"])
            steps, problems = [], []
            for channel in channels:
                findings = check.diagnose(channel)
                if not findings:
                    lag = self._lag_problem(channel, entry)
                    if lag:
                        problems.append(lag)
                    continue
                mine = []
                for finding in findings:
                    step = self._step_for(session, target, channel, finding)
                    if isinstance(step, str):
                        problems.append(step)
                    elif step is not None:
                        mine.append(step)
                # A resync rebuilds and restarts the whole connection: nothing else to do there.
                resync = [s for s in mine if getattr(s, "resync", False)]
                steps.extend(resync[:1] or mine)
            if problems:
                self.escalate(target, session, channels, problems)
            return steps

    def _lag_problem(self, channel, entry):
        from autoremedy.ranges import Range
        warn = Range.parse(str(entry["warning"]))
        if channel.lag is not None and warn is not None and warn.alerts(channel.lag):
            return (f"[{channel.label}] lag {channel.lag}s with both threads running "
                    f"(SQL thread: {channel.sql_state or '-'}): nothing to repair automatically; "
                    "look for long transactions or locks on the replica (evidence)")
        return None

    def _step_for(self, session, target, channel, finding):
        """A Step that fixes ``finding``, None when another step covers it, or a
        string saying why a human must decide."""
        entry = self.entry(target)
        label = f"[{channel.label}] {finding.text}"
        if finding.kind in (check.IO_STOPPED, check.SQL_STOPPED):
            if not entry["restart_threads"]:
                return f"{label}: restart_threads is off"
            thread = "IO_THREAD" if finding.kind == check.IO_STOPPED else "SQL_THREAD"
            return Step(f"start the {thread.split('_')[0]} thread of connection {channel.label!r}",
                        action=self._starter(target, channel.name, thread),
                        details=[thread_statement(session, "START", channel.name, thread)])
        if finding.kind in (check.PRIMARY_UNREACHABLE, check.IO_CONNECTING):
            reachable, why = self._primary_reachable(target, channel)
            if not reachable:
                return (f"{label}: the primary is still unreachable ({why}); the replica retries by "
                        f"itself every {channel.connect_retry}s, reconnecting now would not help")
            rc = entry["reconnect"]
            return Step(f"reconnect the IO thread of connection {channel.label!r} to {channel.primary} "
                        f"(up to {rc['attempts']} attempts, backoff {rc['backoff']:g}s)",
                        action=self._reconnector(target, channel.name),
                        details=[thread_statement(session, "STOP", channel.name, "IO_THREAD"),
                                 thread_statement(session, "START", channel.name, "IO_THREAD")])
        if finding.kind == check.SQL_ERROR and finding.errno == DUPLICATE_KEY:
            step = self._duplicate_key_step(session, target, channel, label)
            if not isinstance(step, str) or not entry["resync"]["allowed"]:
                return step
            # Not repairable row by row, but this replica may be resynced.
        if finding.kind in (check.SQL_ERROR, check.IO_ERROR) and finding.errno in RESYNCABLE:
            if entry["resync"]["allowed"]:
                return self._resync_step(session, target, channel)
            return f"{label}: a resync from the primary is needed (a human decision: resync.allowed is off)"
        return f"{label}: no safe automatic repair"

    # -- threads ---------------------------------------------------------------------
    def _starter(self, target, name, thread):
        def start():
            with self.session(target) as session:
                statement = thread_statement(session, "START", name, thread)
                session.execute(statement)
            return statement
        return start

    def _primary_reachable(self, target, channel):
        """Proof the primary answers again: a login when it is configured, else a
        TCP connection to the address the replica uses."""
        primary = self.server(target, "primary")
        if primary is not None:
            try:
                with mysql.connect(primary, timeout=5) as session:
                    session.value("SELECT 1")
                return True, None
            except mysql.SQLError as exc:
                return False, str(exc)
        import socket
        try:
            with socket.create_connection((channel.primary_host, channel.primary_port), timeout=5):
                return True, None
        except OSError as exc:
            return False, f"{channel.primary}: {exc.strerror or exc}"

    def _reconnector(self, target, name):
        rc = self.entry(target)["reconnect"]

        def reconnect():
            delay = rc["backoff"]
            last = None
            for attempt in range(1, rc["attempts"] + 1):
                with self.session(target) as session:
                    session.execute(thread_statement(session, "STOP", name, "IO_THREAD"))
                    session.execute(thread_statement(session, "START", name, "IO_THREAD"))
                    deadline = time.monotonic() + delay
                    while True:
                        last = self._channel(session, name)
                        if last is not None and last.io == "Yes":
                            return f"IO thread connected on attempt {attempt}"
                        if time.monotonic() >= deadline:
                            break
                        self.sleep(0.2)
                delay = min(delay * 2, rc["max_backoff"])
            state = "gone" if last is None else f"{last.io}, error {last.io_errno}: {last.io_error}"
            raise RemediationError(f"IO thread not connected after {rc['attempts']} attempts ({state})")
        return reconnect

    def _channel(self, session, name):
        _, found = check.read_status(session)
        return next((c for c in found if c.name == name), None)

    # -- duplicate keys -----------------------------------------------------------------
    def _duplicate_key_step(self, session, target, channel, label):
        entry = self.entry(target)
        dup = entry["duplicate_key"]
        conflict = parse_duplicate(channel.sql_error) or parse_duplicate(worker_error(session, channel))
        if conflict is None:
            return f"{label}: cannot tell which table and key the duplicate is on"
        db, table = conflict["db"], conflict["table"]
        if not table_allowed(db, table, dup["tables"]):
            return f"{label}: table {db}.{table} is not in duplicate_key.tables"
        used = self._repairs_last_hour(target)
        if used >= dup["max_per_hour"]:
            return (f"{label}: {used} duplicate-key repairs on {target} in the last hour "
                    f"(max_per_hour {dup['max_per_hour']}): the replica keeps diverging")
        event = failing_event(session, channel)
        if dup["action"] == "delete-row":
            located = locate_row(session, db, table, conflict["key"], conflict["value"])
            if isinstance(located, str):
                return f"{label}: {located}"
            where, params, row = located
            return Step(f"delete the replica's conflicting row {db}.{table} {conflict['key']}="
                        f"{conflict['value']!r} without binlogging it, re-apply GTID {event.get('gtid') or '?'}, "
                        "compare checksums with the primary",
                        action=self._row_repairer(target, channel, conflict, event),
                        details=[f"row: {row}", f"DELETE FROM {mysql.quote_ident(db, table)} WHERE {where} "
                                 f"LIMIT 1  -- with sql_log_bin=0, params {params}"])
        return Step(f"skip the event GTID {event.get('gtid') or '?'} on {db}.{table} "
                    "(configured: the tables stay divergent)",
                    action=self._skipper(target, channel, conflict, event),
                    details=[f"duplicate {conflict['key']}={conflict['value']!r}", f"event {event}"])

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
        allowlisted duplicate (a replica with several local rows) and the hourly cap
        allows; then wait for catch-up and compare checksums of the touched tables."""
        dup = self.entry(target)["duplicate_key"]

        def repair():
            notes, touched = [], set()
            conflict, event = first_conflict, first_event
            with self.session(target) as session:
                while True:
                    located = locate_row(session, conflict["db"], conflict["table"], conflict["key"],
                                         conflict["value"])
                    if isinstance(located, str):
                        raise RemediationError(located)
                    where, params, row = located
                    delete_row(session, conflict["db"], conflict["table"], where, params)
                    self._count_repair(target)
                    touched.add((conflict["db"], conflict["table"]))
                    self._audit_row("delete-row", target, channel, conflict, event, row)
                    notes.append(f"deleted {conflict['db']}.{conflict['table']} row {row} (GTID "
                                 f"{event.get('gtid') or '?'})")
                    session.execute(thread_statement(session, "START", channel.name, "SQL_THREAD"))
                    current = self._settle_sql(session, channel.name)
                    if current is None or current.sql == "Yes" or current.sql_errno != DUPLICATE_KEY:
                        break
                    conflict = parse_duplicate(current.sql_error) or parse_duplicate(worker_error(session, current))
                    if (conflict is None or not table_allowed(conflict["db"], conflict["table"], dup["tables"])
                            or self._repairs_last_hour(target) >= dup["max_per_hour"]):
                        raise RemediationError(f"the SQL thread stopped again: error {current.sql_errno}: "
                                               f"{current.sql_error}")
                    event = failing_event(session, current)
            notes.append(self._compare_tables(target, channel.name, touched, expect_equal=True))
            return "; ".join(notes)
        return repair

    def _skipper(self, target, channel, conflict, event):
        def skip():
            with self.session(target) as session:
                skip_event(session, channel, event)
                self._count_repair(target)
                self._audit_row("skip", target, channel, conflict, event, None)
                current = self._settle_sql(session, channel.name)
                if current is not None and current.sql != "Yes":
                    raise RemediationError(f"SQL thread stopped again after the skip: error "
                                           f"{current.sql_errno}: {current.sql_error}")
            note = self._compare_tables(target, channel.name, {(conflict["db"], conflict["table"])},
                                        expect_equal=False)
            return f"skipped GTID {event.get('gtid') or '?'}; {note}"
        return skip

    def _settle_sql(self, session, name, seconds=3.0):
        """The connection once the SQL thread has had time to apply or fail."""
        deadline = time.monotonic() + seconds
        while True:
            current = self._channel(session, name)
            if current is None or current.sql != "Yes" or time.monotonic() >= deadline:
                return current
            if current.lag == 0 and current.exec_pos == current.read_pos:
                return current
            self.sleep(0.1)

    def _audit_row(self, action, target, channel, conflict, event, row):
        if self.audit is None:
            return
        self.audit.record("mysql-replication", "ok", action=action, cls=self.name, target=target,
                          connection=channel.name, table=f"{conflict['db']}.{conflict['table']}",
                          key=conflict["key"], value=conflict["value"], row=row, gtid=event.get("gtid"),
                          position=f"{channel.exec_file}:{channel.exec_pos}",
                          relay=f"{channel.relay_log_file}:{channel.relay_log_pos}",
                          statement=event.get("statement"))

    def _compare_tables(self, target, name, tables, expect_equal):
        """Wait until the connection has applied what the primary has, then
        CHECKSUM TABLE on both sides (a few tries: the primary may be busy)."""
        entry = self.entry(target)
        results = []
        with self.session(target) as replica, self.session(target, "primary") as primary:
            for db, table in sorted(tables):
                rows = table_rows(primary, db, table)
                if rows is not None and rows > entry["duplicate_key"]["checksum_max_rows"]:
                    results.append(f"{db}.{table}: ~{rows} rows, above checksum_max_rows: not checksummed")
                    continue
                for attempt in range(3):
                    wait_caught_up(replica, primary, name, entry["catch_up_timeout"], self.sleep)
                    mine, theirs = checksum(replica, db, table), checksum(primary, db, table)
                    if mine == theirs or not expect_equal:
                        break
                    self.sleep(0.5)
                same = mine == theirs
                results.append(f"{db}.{table} checksum replica {mine} primary {theirs}: "
                               f"{'equal' if same else 'DIFFERENT'}")
                if expect_equal and not same:
                    raise RemediationError("; ".join(results) + ": the replica still differs from the primary")
        return "; ".join(results)

    # -- resync -------------------------------------------------------------------------
    def _resync_step(self, session, target, channel):
        if session.flavour != "mariadb" or channel.using_gtid in ("No", ""):
            return (f"[{channel.label}] a resync is needed; automatic resync is implemented for MariaDB "
                    "with GTID only (see the procedure in the evidence)")
        databases = self.entry(target)["resync"]["databases"]
        step = Step(f"resync {', '.join(databases)} of connection {channel.label!r} from the primary "
                    "(dump with --gtid, load with sql_log_bin=0, restart from the dump's GTID)",
                    action=self._resyncer(target, channel.name), details=resync_procedure(
                        self.server(target, "primary"), self.server(target), channel.name, databases))
        step.resync = True
        return step

    def _resyncer(self, target, name):
        entry = self.entry(target)

        def resync():
            return run_resync(self, target, name, entry)
        return resync

    # -- escalation ---------------------------------------------------------------------
    def escalate(self, target, session, channels, problems):
        """Collect the evidence, write it down, and refuse: a human decides."""
        payload = {"class": self.name, "target": target, "server": session.server.describe(),
                   "version": session.version_string, "problems": problems,
                   "connections": [c.raw for c in channels], "time": self.clock()}
        try:
            payload["gtid"] = check.server_state(session)
            payload["long_transactions"] = session.rows(
                "SELECT trx_mysql_thread_id, trx_started, trx_state, LEFT(trx_query, 300) AS trx_query "
                "FROM information_schema.INNODB_TRX ORDER BY trx_started LIMIT 20")
            for channel in channels:
                if channel.sql_errno:
                    payload.setdefault("failing_events", {})[channel.name] = failing_event(session, channel)
        except mysql.SQLError as exc:
            payload["evidence_error"] = str(exc)
        primary = self.server(target, "primary")
        databases = self.entry(target)["resync"]["databases"] or ["<databases>"]
        payload["procedures"] = {c.label: procedure_for(c) for c in channels if procedure_for(c)}
        payload["resync_procedure"] = [
            resync_procedure(primary, session.server, c.name, databases) for c in channels] or None
        path = mysql.save_evidence(self.config.state_dir, self.name, target, payload)
        if self.audit is not None:
            self.audit.record("evidence", "escalated", cls=self.name, target=target, path=path, problems=problems)
        raise Refused("precondition", f"{'; '.join(problems)} (evidence and resync procedure: {path})")

    # -- verify -------------------------------------------------------------------------
    def verify(self, target):
        entry = self.entry(target)
        return self.poll(lambda: self.check(target), entry["catch_up_timeout"], sleep=self.sleep)

    def check(self, target):
        """The replication check on this target's replica and connections."""
        import argparse
        from autoremedy.ranges import Range
        entry = self.entry(target)
        args = argparse.Namespace(spelling="auto", lag_null="warning", not_replica="critical",
                                  relay_log_space_warning=None, relay_log_space_critical=None,
                                  require_read_only=False, connection=entry.get("connections") or [],
                                  warning=Range.parse(str(entry["warning"])),
                                  critical=Range.parse(str(entry["critical"])))
        try:
            with self.session(target) as session:
                return check.evaluate(args, session)
        except mysql.SQLError as exc:
            return Result(check.NAME, str(exc), status=Status.UNKNOWN)


REMEDIATION = ReplicationRepair


# --- statements spelled for the server ---------------------------------------------------

def thread_statement(session, verb, name, thread=None):
    """START/STOP of one connection's thread(s): MariaDB ``START SLAVE 'name' SQL_THREAD``
    (REPLICA from 10.5.1), MySQL ``START REPLICA SQL_THREAD FOR CHANNEL 'name'`` (8.0.22+)."""
    literal = session.literal(name)
    if session.flavour == "mariadb":
        word = "REPLICA" if session.version >= (10, 5, 1) else "SLAVE"
        return f"{verb} {word} {literal}" + (f" {thread}" if thread else "")
    word = "REPLICA" if session.version >= (8, 0, 22) else "SLAVE"
    return f"{verb} {word}" + (f" {thread}" if thread else "") + f" FOR CHANNEL {literal}"


def failing_event(session, channel):
    """The GTID and statement of the event the SQL thread stopped on, read from the
    relay log at its position (the 10.11 error text carries no GTID; reference §4)."""
    out = {"relay_log": f"{channel.relay_log_file}:{channel.relay_log_pos}",
           "master_log": f"{channel.exec_file}:{channel.exec_pos}"}
    match = re.search(r"transaction '([^']+)'", channel.sql_error or "")
    if match:
        out["gtid"] = match.group(1)
    if not channel.relay_log_file:
        return out
    if session.flavour == "mariadb":
        sql = f"SHOW RELAYLOG {session.literal(channel.name)} EVENTS IN %s FROM %s LIMIT 4"
    else:
        sql = f"SHOW RELAYLOG EVENTS IN %s FROM %s LIMIT 4 FOR CHANNEL {session.literal(channel.name)}"
    try:
        rows = session.rows(sql, (channel.relay_log_file, channel.relay_log_pos))
    except mysql.SQLError as exc:
        out["error"] = str(exc)
        return out
    for row in rows:
        info = str(row.get("Info") or "")
        kind = row.get("Event_type")
        if kind == "Gtid" and "gtid" not in out:
            found = re.search(r"GTID (\d+-\d+-\d+)", info) or re.search(r"GTID_NEXT\s*=\s*'([^']+)'", info)
            if found:
                out["gtid"] = found.group(1)
        elif kind in ("Annotate_rows", "Rows_query", "Query") and "statement" not in out:
            out["statement"] = info[:500]
    return out


def skip_event(session, channel, event):
    """Skip the failing event: MariaDB's per-connection skip counter (allowed with
    GTID), MySQL GTID's empty transaction, else the skip counter."""
    if session.flavour == "mariadb":
        session.execute(f"SET @@session.default_master_connection = {session.literal(channel.name)}")
        session.execute("SET GLOBAL sql_slave_skip_counter = 1")
    elif channel.using_gtid not in ("No", "") and event.get("gtid"):
        session.execute("SET GTID_NEXT = %s", (event["gtid"],))
        session.execute("BEGIN")
        session.execute("COMMIT")
        session.execute("SET GTID_NEXT = 'AUTOMATIC'")
    else:
        session.execute("SET GLOBAL sql_slave_skip_counter = 1")
    session.execute(thread_statement(session, "START", channel.name, "SQL_THREAD"))


# --- duplicate keys ---------------------------------------------------------------------

_DUPLICATE = re.compile(r"on table (?P<db>[^.\s;]+)\.(?P<table>[^\s;]+?);.*?"
                        r"Duplicate entry '(?P<value>.*)' for key '(?P<key>[^']*)'", re.S)


def parse_duplicate(text):
    """{db, table, key, value} from a 1062 replication error, or None.
    MySQL 8 names the key 'table.KEY'; MariaDB just 'KEY'."""
    match = _DUPLICATE.search(text or "")
    if not match:
        return None
    out = match.groupdict()
    prefix = out["table"] + "."
    if out["key"].startswith(prefix):
        out["key"] = out["key"][len(prefix):]
    return out


def worker_error(session, channel):
    """MySQL's multi-threaded applier hides the row error in performance_schema."""
    if session.flavour != "mysql":
        return ""
    try:
        row = session.row("SELECT LAST_ERROR_MESSAGE AS m FROM performance_schema.replication_applier_status_by_worker "
                          "WHERE CHANNEL_NAME = %s AND LAST_ERROR_NUMBER <> 0 LIMIT 1", (channel.name,))
    except mysql.SQLError:
        return ""
    return (row or {}).get("m") or ""


def table_allowed(db, table, patterns):
    return any(p == f"{db}.{table}" or p == f"{db}.*" for p in patterns)


MAX_SPLITS = 256


def locate_row(session, db, table, key, value):
    """(where, params, row) of the one replica row holding the duplicate ``value`` of
    unique key ``key``, or a string saying why it cannot be pinned down.

    The error shows a composite key's parts joined by '-', which is ambiguous
    when the values contain '-': every split is tried and exactly one must match
    exactly one row. A prefix key or a truncated value never matches: escalate."""
    columns = session.rows(
        "SELECT COLUMN_NAME AS col, SUB_PART AS sub FROM information_schema.STATISTICS "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND INDEX_NAME = %s AND NON_UNIQUE = 0 "
        "ORDER BY SEQ_IN_INDEX", (db, table, key))
    if not columns:
        return f"no unique key {key!r} on {db}.{table} on the replica"
    if any(c["sub"] for c in columns):
        return f"key {key!r} on {db}.{table} is a prefix index: the row cannot be pinned down exactly"
    names = [c["col"] for c in columns]
    dashes = [i for i, ch in enumerate(value) if ch == "-"]
    splits = itertools.combinations(dashes, len(names) - 1)
    where = " AND ".join(f"{mysql.quote_ident(n)} = %s" for n in names)
    found = []
    for count, cut in enumerate(splits):
        if count >= MAX_SPLITS:
            return f"duplicate value {value!r} splits too many ways over {len(names)} columns"
        bounds = [-1] + list(cut) + [len(value)]
        params = tuple(value[bounds[i] + 1:bounds[i + 1]] for i in range(len(names)))
        rows = session.rows(f"SELECT * FROM {mysql.quote_ident(db, table)} WHERE {where} LIMIT 2", params)
        if rows:
            found.append((params, rows))
    if len(found) != 1 or len(found[0][1]) != 1:
        return (f"duplicate {key}={value!r} on {db}.{table} matches {sum(len(r) for _, r in found)} replica "
                "rows: cannot pin down the conflicting row")
    params, rows = found[0]
    return where, params, {k: _plain(v) for k, v in rows[0].items()}


def _plain(value):
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    return value if isinstance(value, (int, float, str, type(None))) else str(value)


def delete_row(session, db, table, where, params):
    """Delete exactly one row without binlogging it (the replica's own binlog must not
    get a GTID the primary never had). Re-checked under a row lock first."""
    name = mysql.quote_ident(db, table)
    session.execute("SET SESSION sql_log_bin = 0")
    try:
        session.execute("BEGIN")
        locked = session.rows(f"SELECT * FROM {name} WHERE {where} LIMIT 2 FOR UPDATE", params)
        if len(locked) != 1:
            session.execute("ROLLBACK")
            raise RemediationError(f"{len(locked)} rows match {where} {params} now: nothing deleted")
        deleted = session.execute(f"DELETE FROM {name} WHERE {where} LIMIT 1", params)
        if deleted != 1:
            session.execute("ROLLBACK")
            raise RemediationError(f"DELETE matched {deleted} rows: rolled back")
        session.execute("COMMIT")
    finally:
        session.execute("SET SESSION sql_log_bin = 1")


# --- catch-up and checksums ---------------------------------------------------------------

def table_rows(session, db, table):
    return session.value("SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                         "AND TABLE_NAME = %s", (db, table))


def checksum(session, db, table):
    row = session.row(f"CHECKSUM TABLE {mysql.quote_ident(db, table)}")
    return None if row is None else row.get("Checksum")


def wait_caught_up(replica, primary, name, timeout, sleep=time.sleep):
    """Until connection ``name`` has applied everything the primary has written in
    the GTID domains it replicates (MariaDB), or its executed position equals the
    primary's binlog position (otherwise). Raises RemediationError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        channel = next((c for c in check.read_status(replica)[1] if c.name == name), None)
        if channel is None:
            raise RemediationError(f"connection {name!r} disappeared")
        if channel.sql != "Yes":
            raise RemediationError(f"SQL thread stopped: error {channel.sql_errno}: {channel.sql_error}")
        if _caught_up(replica, primary, channel):
            return channel
        if time.monotonic() >= deadline:
            raise RemediationError(f"connection {name!r} did not catch up within {timeout:g}s "
                                   f"(lag {channel.lag}, GTID {channel.gtid_io_pos})")
        sleep(0.2)


def _caught_up(replica, primary, channel):
    if replica.flavour == "mariadb" and channel.using_gtid not in ("No", ""):
        wanted = check.parse_gtid_list(primary.value("SELECT @@global.gtid_binlog_pos"))
        applied = check.parse_gtid_list(replica.value("SELECT @@global.gtid_slave_pos"))
        domains = check.parse_gtid_list(channel.gtid_io_pos) or wanted
        return all(applied.get(d, (0, 0))[1] >= wanted[d][1] for d in domains if d in wanted)
    status = primary.row("SHOW MASTER STATUS") or {}
    return (channel.exec_file == channel.read_file == status.get("File")
            and channel.exec_pos == channel.read_pos == int(status.get("Position") or -1))


# --- the procedures a human follows ---------------------------------------------------------

def procedure_for(channel):
    """The fix for errors that need a human but not a resync, or None."""
    conn = f"'{channel.name}'"
    if channel.io_errno == 1045:
        return [f"the replication user's password no longer matches the primary's: STOP SLAVE {conn}; "
                f"CHANGE MASTER {conn} TO MASTER_PASSWORD='<the current one>'; START SLAVE {conn};"]
    if channel.sql_errno in (1594, 1595) or channel.io_errno in (1594, 1595):
        return [f"relay log damage: with GTID, STOP SLAVE {conn}; RESET SLAVE {conn}; START SLAVE {conn}; "
                "fetches the events again (only while the primary still has its binlogs), else resync"]
    if channel.sql_errno == 1950:
        return ["errant local transaction under gtid_strict_mode: delete the replica-local change with "
                "sql_log_bin=0, then on a leaf replica RESET MASTER and SET GLOBAL gtid_slave_pos to the value "
                "before it (reference §4), or resync"]
    return None



def resync_procedure(primary, replica, name, databases):
    """The exact commands a human runs to rebuild this replica's data from the primary."""
    def address(server):
        if server is None:
            return "-h <primary> -P <port>"
        return f"-S {server.socket}" if server.socket else f"-h {server.host} -P {server.port}"
    conn = f"'{name}'"
    dbs = " ".join(databases)
    return [
        f"on the replica ({replica.describe()}): STOP SLAVE {conn};",
        f"mariadb-dump --defaults-file=<primary login .cnf> {address(primary)} --single-transaction --gtid "
        f"--master-data=2 --add-drop-database --routines --triggers --events --databases {dbs} > resync.sql",
        f"mariadb --defaults-file=<replica login .cnf> {address(replica)} "
        f"--init-command='SET SESSION sql_log_bin=0' < resync.sql",
        "take the position from the dump's line \"-- SET GLOBAL gtid_slave_pos='...'\"; with every replication "
        "connection stopped: SET GLOBAL gtid_slave_pos='<that position, keeping other domains>';",
        f"START SLAVE {conn}; then: autoremedy check mysql-replication --server <replica> and CHECKSUM TABLE "
        "on both sides",
        "or let autoremedy do it: remediations.mysql-replication.targets.<target>.resync.allowed: true",
    ]


def run_resync(rem, target, name, entry):
    """Rebuild the configured databases of a MariaDB GTID replica from its primary:
    stop the connection, ``mariadb-dump --single-transaction --gtid`` from the
    primary, load it with ``sql_log_bin=0`` (no replica-local GTIDs: reference §4),
    set ``gtid_slave_pos`` to the dump's position (keeping the other domains), start
    again, then compare the checksums of every copied table. Logins go to the tools
    in 0600 option files, never in argv."""
    primary, replica = rem.server(target, "primary"), rem.server(target)
    databases = entry["resync"]["databases"]
    timeout = entry["resync"]["timeout"]
    workdir = os.path.join(rem.config.state_dir, "mysql", "resync")
    dump = os.path.join(workdir, f"{target}-{int(time.time())}.sql")
    primary_cnf, primary_addr = mysql.client_option_file(primary, workdir)
    replica_cnf, replica_addr = mysql.client_option_file(replica, workdir)
    try:
        with rem.session(target) as session:
            session.execute(thread_statement(session, "STOP", name))
        tool = _tool("mariadb-dump", "mysqldump")
        rem.run_step(Step("dump from the primary", [
            tool, f"--defaults-file={primary_cnf}", *primary_addr, "--single-transaction", "--gtid",
            "--master-data=2", "--add-drop-database", "--routines", "--triggers", "--events",
            f"--result-file={dump}", "--databases", *databases], timeout=timeout))
        position = dump_position(dump)
        if not position:
            raise RemediationError(f"{dump}: no gtid_slave_pos line: the dump is unusable for GTID replication")
        size = os.path.getsize(dump)
        rem.run_step(Step("load into the replica", [
            _tool("mariadb", "mysql"), f"--defaults-file={replica_cnf}", *replica_addr, "--batch",
            "--init-command=SET SESSION sql_log_bin=0", f"--execute=source {dump}"], timeout=timeout))
        with rem.session(target) as session:
            # gtid_slave_pos can only be set while every connection is stopped.
            others = [c for c in check.read_status(session)[1]
                      if c.name != name and (c.io != "No" or c.sql == "Yes")]
            for other in others:
                session.execute(thread_statement(session, "STOP", other.name))
            current = check.parse_gtid_list(session.value("SELECT @@global.gtid_slave_pos"))
            current.update(check.parse_gtid_list(position))
            merged = ",".join(f"{d}-{s}-{n}" for d, (s, n) in sorted(current.items()))
            session.execute("SET GLOBAL gtid_slave_pos = %s", (merged,))
            for conn in [name] + [o.name for o in others]:
                session.execute(thread_statement(session, "START", conn))
        with rem.session(target, "primary") as source:
            tables = {(r["db"], r["t"]) for r in source.rows(
                "SELECT TABLE_SCHEMA AS db, TABLE_NAME AS t FROM information_schema.TABLES "
                "WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA IN (" + ",".join(["%s"] * len(databases)) + ")",
                tuple(databases))}
        note = rem._compare_tables(target, name, tables, expect_equal=True) if tables else "no tables to compare"
        os.unlink(dump)
        if rem.audit is not None:
            rem.audit.record("mysql-replication", "ok", action="resync", cls=rem.name, target=target,
                             connection=name, databases=databases, gtid=position, dump_bytes=size)
        return f"resynced {', '.join(databases)} ({size} bytes) from {primary.describe()} at GTID {position}; {note}"
    finally:
        for path in (primary_cnf, replica_cnf):
            try:
                os.unlink(path)
            except OSError:
                pass


def _tool(*names):
    import shutil
    path = os.environ.get("AUTOREMEDY_EXEC_PATH", execute.SAFE_PATH)
    return next((n for n in names if shutil.which(n, path=path)), names[0])


def dump_position(path):
    """The GTID position mariadb-dump --gtid --master-data=2 wrote (at the end of the
    file, as "-- SET GLOBAL gtid_slave_pos='0-1-28';")."""
    pattern = re.compile(rb"SET GLOBAL gtid_slave_pos\s*=\s*'([0-9,\- ]*)'")
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 65536))
        found = pattern.findall(handle.read())
        if not found:
            handle.seek(0)
            found = pattern.findall(handle.read(1 << 20))
    return found[-1].decode().replace(" ", "") if found else None
