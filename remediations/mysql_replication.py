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
            primary: db-primary             # its source (must be the replica's actual source)
            sources: {east: db-east}        # other connections' sources (multi-source)
            connections: ['']               # which connections / channels (default: all)
            reconnect: {attempts: 4, backoff: 2s, max_backoff: 30s}
            duplicate_key:
              tables: [nova.instance_faults, 'keystone.*']
              action: delete-row            # or: skip (only when the replica already has every change)
              max_per_hour: 3
            resync: {allowed: false, databases: ['*'], downstream: []}
            verify: {chunk_rows: 10000, max_rows: 5000000, max_events: 200000}

What it does, per replication connection, after proving that the configured
source *is* the replica's source (address and server_id) and that the replica
has no errant transactions (refused otherwise, naming the GTIDs):

- IO and/or SQL thread stopped without an error: START of that thread — unless
  the relay log does not continue where the SQL thread stopped (truncated,
  unreadable): then the events are fetched again from the source by GTID
  (STOP; RESET SLAVE 'conn'; START), never applied with a hole.
- IO thread cannot reach the source: only once it answers again, restart the
  IO thread with backoff until it is connected; while it is down, escalate.
- Duplicate key (1062) on an allowlisted table: ``delete-row`` deletes the
  replica's conflicting row (sql_log_bin=0) only when the source does not have
  that row by its primary key or any unique key (other than as the row the
  event inserts); ``skip`` only when every row change of the skipped transaction
  is already on the replica (read from the source's binlog). Otherwise refused
  with the rows at stake.
- Purged binlogs (1236), drift (1032, 1950, other 1062s): escalate, or resync
  where ``resync.allowed`` — the whole GTID domain, events' replica status kept,
  replicas of the replica only when ``resync.downstream`` lists them.
- Authentication (1045), lag, anything else: escalate.

Every repair ends with a comparison: every table it could have affected (the
tables of the transactions it replayed or skipped, read from the source's
binlog; every table of the domain for a resync) against the source at one
consistent GTID position, in chunked checksums. Any difference is ``failed``
with the tables and counts (_replication_compare).

One repair per replica server at a time: the per-target lock is keyed by the
server's address, and the run holds ``GET_LOCK`` in the replica itself, so two
target names, two state directories or two hosts cannot repair it at once.
"""
import time

from autoremedy import config as configmod
from autoremedy.contract import execute
from autoremedy.clients import mysql
from autoremedy.contract.guard import Refused
from autoremedy.contract.remediation import Noop, Remediation, RemediationError, Step
from autoremedy.contract.result import Result, Status

from autoremedy.checks import mysql_replication as check
from autoremedy.remediations import _replication_compare as compare
from autoremedy.remediations import _replication_resync as resync
from autoremedy.remediations import _replication_source as origin
from autoremedy.remediations import _replication_sql as sql
from autoremedy.remediations._replication_declarations import NoHarmDeclarations
from autoremedy.remediations._replication_duplicates import DUPLICATE_KEY, DuplicateKeyRepairs
from autoremedy.remediations._replication_plan import Scope, keyed

RESYNCABLE = {1236, 1032, 1950, 1062}     # drift or lost binlogs: a copy of the source fixes them
DEFAULTS = {
    "restart_threads": True,
    "reconnect": {"attempts": 4, "backoff": 2.0, "max_backoff": 30.0},
    "duplicate_key": {"tables": [], "action": "delete-row", "max_per_hour": 3},
    "resync": {"allowed": False, "databases": [], "timeout": 3600.0, "downstream": []},
    "verify": {"chunk_rows": 10000, "max_rows": 5000000, "max_events": 200000},
    "catch_up_timeout": 60.0,
    "lock_wait": 10.0,
    "warning": "300",
    "critical": "600",
}
ACTIONS = ("delete-row", "skip")


class ReplicationRepair(NoHarmDeclarations, DuplicateKeyRepairs, Remediation):
    name = "mysql-replication"
    scope = "api"
    schema = {
        "targets": configmod.Map({
            "server": str,
            "primary": str,
            "sources": configmod.Map(str),
            "connections": configmod.List(str),
            "restart_threads": bool,
            "reconnect": {"attempts": int, "backoff": configmod.Duration, "max_backoff": configmod.Duration},
            "duplicate_key": {"tables": configmod.List(str), "action": str, "max_per_hour": int},
            "resync": {"allowed": bool, "databases": configmod.List(str), "timeout": configmod.Duration,
                       "downstream": configmod.List(str)},
            "verify": {"chunk_rows": int, "max_rows": int, "max_events": int},
            "catch_up_timeout": configmod.Duration,
            "lock_wait": configmod.Duration,
            "warning": (int, str),
            "critical": (int, str),
        }),
    }

    def __init__(self, config, runner=execute.run, audit=None, sleep=time.sleep, clock=time.time):
        super().__init__(config, runner, audit)
        self.sleep, self.clock = sleep, clock
        self._compared = {}         # (target, connection) -> Comparison of this run

    # -- configuration ------------------------------------------------------------
    def entry(self, target):
        return configmod.merge(DEFAULTS, self.allowlist()[target])

    def resolve(self, name):
        target = super().resolve(name)
        entry = self.entry(target)
        where = f"remediations.mysql-replication.targets.{target}"
        if not entry.get("server"):
            raise configmod.ConfigError(f"{where}.server: required (a mysql.servers entry)")
        if not entry.get("primary"):
            raise configmod.ConfigError(f"{where}.primary: required: every repair is verified against the "
                                        "replica's source")
        servers = mysql.settings(self.config).get("servers") or {}
        named = [("server", entry["server"]), ("primary", entry["primary"])]
        named += [(f"sources.{k}", v) for k, v in (entry.get("sources") or {}).items()]
        named += [("resync.downstream", v) for v in entry["resync"]["downstream"]]
        for key, value in named:
            if value not in servers:
                raise configmod.ConfigError(f"{where}.{key}: {value!r} is not in mysql.servers")
        dup = entry["duplicate_key"]
        if dup["action"] not in ACTIONS:
            raise configmod.ConfigError(f"{where}.duplicate_key.action: {dup['action']!r} is not one of "
                                        f"{', '.join(ACTIONS)}")
        for pattern in dup["tables"]:
            if pattern.count(".") != 1 or not all(pattern.split(".")):
                raise configmod.ConfigError(f"{where}.duplicate_key.tables: {pattern!r} is not 'db.table' "
                                            "or 'db.*'")
        if entry["resync"]["allowed"] and not entry["resync"]["databases"]:
            raise configmod.ConfigError(f"{where}.resync.databases: list every database of the GTID domain, "
                                        "or '*' for all of the source's")
        return target

    def server(self, target, role="server"):
        name = self.entry(target).get(role)
        return mysql.resolve(self.config, name) if name else None

    def source_server(self, target, connection):
        """The configured source of one connection (``sources``, else ``primary``)."""
        entry = self.entry(target)
        name = (entry.get("sources") or {}).get(connection) or entry["primary"]
        return mysql.resolve(self.config, name)

    def session(self, target, role="server"):
        return mysql.connect(self.server(target, role), lock_wait=self.entry(target)["lock_wait"])

    def channels(self, session, target):
        _, found = check.read_status(session)
        wanted = self.entry(target).get("connections")
        return [c for c in found if wanted is None or c.name in wanted]

    def lock_key(self, target):
        """One lock per replica server, whatever the target is called (its address;
        the entry's name when the address cannot be read now — GET_LOCK in the
        server still keeps two runs apart)."""
        try:
            return f"mysql-server {self.server(target).address}"
        except Exception:       # an unreadable option file: the plan will say so
            return f"mysql-server-entry {self.entry(target)['server']}"

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("target", help="a key of remediations.mysql-replication.targets")

    # -- plan -----------------------------------------------------------------------
    def plan(self, target):
        entry = self.entry(target)
        with self.session(target) as session:
            holder = origin.ServerLock.holder(session)
            if holder is not None:
                raise Refused("lock", f"another remediation of {session.server.describe()} is running "
                                      f"(it holds {origin.LOCK_NAME}, connection {holder})")
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
                mine, trouble = self._channel_steps(session, target, channel, findings)
                problems.extend(trouble)
                steps.extend(mine)
            if not steps and not problems:
                # Threads running is not "healthy" when the replica holds transactions
                # its source never had (the check reports them): a human decides.
                problems.extend(self._errant_problems(session, target, channels))
            if problems:
                self.escalate(target, session, channels, problems)
            return steps

    def _errant_problems(self, session, target, channels):
        if session.flavour != "mariadb":
            return []
        out = []
        for channel in channels:
            try:
                with mysql.connect(self.source_server(target, channel.name), timeout=5) as source:
                    errant = origin.errant(session, source, channel)
            except mysql.SQLError:
                continue            # the check says what it can; nothing to repair here
            if errant:
                out.append(f"[{channel.label}] errant transactions on the replica (its source never had "
                           f"them): {', '.join(errant)}: nothing to repair automatically; remove them by hand "
                           "or resync (see the evidence)")
        return out

    def _channel_steps(self, session, target, channel, findings):
        """(steps, problems) for one broken connection: first the proofs every repair
        needs (the real source, no errant transactions), then one step per finding,
        then the comparison."""
        label = f"[{channel.label}]"
        source_server = self.source_server(target, channel.name)
        unreachable = [f for f in findings if f.kind in (check.PRIMARY_UNREACHABLE, check.IO_CONNECTING)]
        try:
            source = mysql.connect(source_server, timeout=5)
        except mysql.SQLError as exc:
            if unreachable:
                return [], [f"{label} {unreachable[0].text}: the source is still unreachable ({exc}); the replica "
                            f"retries by itself every {channel.connect_retry}s, reconnecting now would not help"]
            return [], [f"{label} the source {source_server.describe()} cannot be reached to verify a repair "
                        f"against: {exc}"]
        with source:
            wrong = origin.identify(channel, source)
            if wrong:
                return [], [wrong]
            if session.flavour == "mariadb":
                errant = origin.errant(session, source, channel)
                if errant:
                    return [], [f"{label} errant transactions on the replica (its source never had them): "
                                f"{', '.join(errant)}: a repair would build on data the source does not have; "
                                "a human decides (see the evidence)"]
            steps, problems = [], []
            for finding in findings:
                step = self._step_for(session, source, target, channel, finding)
                if isinstance(step, str):
                    problems.append(step)
                elif step is not None:
                    steps.append(step)
            if problems or not steps:
                return [], problems
            # A resync or a re-fetch restarts the whole connection: nothing else to do there.
            whole = [s for s in steps if getattr(s, "whole", False)]
            steps = whole[:1] or steps
            scope = getattr(steps[0], "scope", None) or Scope(channel.name, channel.label)
            for step in steps[1:]:
                scope.tables |= getattr(step, "scope", Scope("", "")).tables
            if scope.since is None and scope.databases is None and channel.exec_file:
                scope.since = (channel.exec_file, channel.exec_pos)
            return steps + [self._compare_step(session, target, channel, scope)], []

    def _lag_problem(self, channel, entry):
        from autoremedy.contract.ranges import Range
        warn = Range.parse(str(entry["warning"]))
        if channel.lag is not None and warn is not None and warn.alerts(channel.lag):
            return (f"[{channel.label}] lag {channel.lag}s with both threads running "
                    f"(SQL thread: {channel.sql_state or '-'}): nothing to repair automatically; "
                    "look for long transactions or locks on the replica (evidence)")
        return None

    def _step_for(self, session, source, target, channel, finding):
        """A Step that fixes ``finding``, None when another step covers it, or a
        string saying why a human must decide."""
        entry = self.entry(target)
        label = f"[{channel.label}] {finding.text}"
        if finding.kind in (check.IO_STOPPED, check.SQL_STOPPED):
            if not entry["restart_threads"]:
                return f"{label}: restart_threads is off"
            if finding.kind == check.SQL_STOPPED and channel.using_gtid not in ("No", ""):
                gap = origin.relay_gap(session, channel)
                if gap:
                    return self._refetch_step(session, target, channel, gap)
            thread = "IO_THREAD" if finding.kind == check.IO_STOPPED else "SQL_THREAD"
            return keyed(Step(f"start the {thread.split('_')[0]} thread of connection {channel.label!r}",
                              action=self._starter(target, channel.name, thread),
                              details=[sql.thread_statement(session, "START", channel.name, thread)]),
                         "start", channel.name, thread)
        if finding.kind in (check.PRIMARY_UNREACHABLE, check.IO_CONNECTING):
            rc = entry["reconnect"]
            return keyed(Step(f"reconnect the IO thread of connection {channel.label!r} to {channel.primary} "
                              f"(up to {rc['attempts']} attempts, backoff {rc['backoff']:g}s)",
                              action=self._reconnector(target, channel.name),
                              details=[sql.thread_statement(session, "STOP", channel.name, "IO_THREAD"),
                                       sql.thread_statement(session, "START", channel.name, "IO_THREAD")]),
                         "reconnect", channel.name)
        if finding.kind == check.SQL_ERROR and finding.errno == DUPLICATE_KEY:
            step = self._duplicate_key_step(session, source, target, channel, label)
            if not isinstance(step, str) or not entry["resync"]["allowed"]:
                return step
            # Not repairable row by row, but this replica may be resynced.
        if finding.kind in (check.SQL_ERROR, check.IO_ERROR) and finding.errno in RESYNCABLE:
            if entry["resync"]["allowed"]:
                return self._resync_step(session, source, target, channel)
            return f"{label}: a resync from the source is needed (a human decision: resync.allowed is off)"
        if finding.kind == check.SQL_ERROR and finding.errno in (1594, 1595) and channel.using_gtid not in ("No", ""):
            return self._refetch_step(session, target, channel, f"relay log error {finding.errno}")
        return f"{label}: no safe automatic repair"

    # -- threads ---------------------------------------------------------------------
    def _starter(self, target, name, thread):
        def start():
            with self.session(target) as session:
                statement = sql.thread_statement(session, "START", name, thread)
                session.execute(statement)
            return statement
        return start

    def _refetch_step(self, session, target, channel, why):
        """Relay log short or unreadable: fetch the events again from the source by
        GTID (RESET SLAVE drops the relay logs, keeps the connection's settings)."""
        statements = [sql.thread_statement(session, "STOP", channel.name), sql.reset_statement(session, channel.name),
                      sql.thread_statement(session, "START", channel.name)]

        def refetch():
            with self.session(target) as replica:
                for statement in statements:
                    replica.execute(statement)
            return "; ".join(statements)
        step = Step(f"fetch the relay log of connection {channel.label!r} again from the source by GTID "
                    f"({why})", action=refetch, details=statements)
        step.whole = True
        return keyed(step, "refetch", channel.name)

    def _reconnector(self, target, name):
        rc = self.entry(target)["reconnect"]

        def reconnect():
            delay = rc["backoff"]
            last = None
            for attempt in range(1, rc["attempts"] + 1):
                with self.session(target) as session:
                    session.execute(sql.thread_statement(session, "STOP", name, "IO_THREAD"))
                    session.execute(sql.thread_statement(session, "START", name, "IO_THREAD"))
                    deadline = time.monotonic() + delay
                    while True:
                        last = sql.channel(session, name)
                        if last is not None and last.io == "Yes":
                            return f"IO thread connected on attempt {attempt}"
                        if time.monotonic() >= deadline:
                            break
                        self.sleep(0.2)
                delay = min(delay * 2, rc["max_backoff"])
            state = "gone" if last is None else f"{last.io}, error {last.io_errno}: {last.io_error}"
            raise RemediationError(f"IO thread not connected after {rc['attempts']} attempts ({state})")
        return reconnect

    # -- resync -------------------------------------------------------------------------
    def _resync_step(self, session, source, target, channel):
        label = f"[{channel.label}]"
        if session.flavour != "mariadb" or channel.using_gtid in ("No", ""):
            return (f"{label} a resync is needed; automatic resync is implemented for MariaDB "
                    "with GTID only (see the procedure in the evidence)")
        entry = self.entry(target)
        configured = entry["resync"]["databases"]
        domain = resync.domain_databases(source, channel)
        missing = resync.left_out(configured, domain)
        if missing:
            return (f"{label} refusing to resync {', '.join(configured)} alone: "
                    f"{', '.join(missing)} share the GTID domain (gtid_slave_pos moves for the whole domain, "
                    "so they would silently lose transactions); list them too or use databases: ['*']")
        databases = resync.chosen(configured, domain)
        if not databases:
            return f"{label} the source has no database to resync from"
        below = origin.downstream(session)
        planned = []
        for name in entry["resync"]["downstream"]:
            server = mysql.resolve(self.config, name)
            with mysql.connect(server, timeout=5) as other:
                conn = next((c for c in check.read_status(other)[1] if c.primary_port == int(
                    session.value("SELECT @@global.port"))), None)
                ident = other.value("SELECT @@global.server_id")
            if conn is None:
                return f"{label} resync.downstream {name}: it does not replicate from this replica"
            planned.append((server, conn.name, int(ident)))
        unplanned = [d for d in below if d["server_id"] not in {p[2] for p in planned}]
        if unplanned:
            return (f"{label} refusing to resync: the replica has replicas of its own "
                    f"({origin.describe_downstream(unplanned)}); a load with sql_log_bin=0 never reaches them and "
                    "they would differ: list them in resync.downstream (they get the same load) or resync by hand")
        downstream = [(s, c) for s, c, _ in planned]
        at_risk = sorted(f"{d}.{t}" for d, t in compare.database_tables(session, databases)
                         - compare.database_tables(source, databases))
        directory = resync.workdir(self.config.state_dir, target)
        details = [f"drops and reloads on the replica: databases {', '.join(databases)}"
                   + (f"; tables only the replica has there (lost): {', '.join(at_risk)}" if at_risk else "")]
        details += resync.commands(self.server(target), self.source_server(target, channel.name), downstream,
                                   channel.name, databases, directory, session)
        step = Step(f"resync {', '.join(databases)} (the whole GTID domain) of connection {channel.label!r} from "
                    f"the source{' and into ' + ', '.join(s.describe() for s, _ in downstream) if downstream else ''}",
                    action=self._resyncer(target, channel, databases, downstream), details=details)
        step.whole = True
        step.scope = Scope(channel.name, channel.label, databases=databases, downstream=downstream)
        return keyed(step, "resync", channel.name, tuple(databases))

    def _resyncer(self, target, channel, databases, downstream):
        def run():
            return resync.Resync(self, target, channel, databases, downstream).run()
        return run

    # -- verification: equal to the source -----------------------------------------------
    def _compare_step(self, session, target, channel, scope):
        verify = self.entry(target)["verify"]
        details = [f"compare with the source: {scope.describe()}"]
        details += compare.statements(session, channel.name, verify["chunk_rows"])
        for server, conn in scope.downstream:
            details.append(f"the same comparison of {server.describe()} (connection {conn!r}) with the source")
        step = Step(f"verify connection {channel.label!r}: the tables the repair could affect equal the source "
                    "at one GTID position", action=self._comparer(target, scope), details=details)
        step.scope = scope
        step.compare = True
        return keyed(step, "compare", channel.name)

    def _comparer(self, target, scope):
        def run():
            results = []
            for server, conn in [(self.server(target), scope.connection)] + scope.downstream:
                result = self.compare_now(target, server, conn, scope)
                results.append(result)
                if not result.ok:
                    raise RemediationError(f"{server.describe()}: {result.summary()}")
            return "; ".join(r.summary() for r in results)
        return run

    def compare_now(self, target, server, connection, scope):
        """Wait until the connection runs, then compare at a consistent position."""
        entry = self.entry(target)
        verify = entry["verify"]
        self._wait_running(server, connection, entry["catch_up_timeout"])
        try:
            result = compare.compare(server, self.source_server(target, scope.connection), connection,
                                     tables=scope.tables, databases=scope.databases, since=scope.since,
                                     chunk_rows=verify["chunk_rows"], max_rows=verify["max_rows"],
                                     max_events=verify["max_events"], timeout=entry["catch_up_timeout"],
                                     sleep=self.sleep)
        except compare.Unreachable as exc:
            raise RemediationError(f"{server.describe()}: no consistent position to compare at: {exc}") from None
        self._compared[(target, server.address, connection)] = result
        return result

    def _wait_running(self, server, connection, timeout):
        deadline = time.monotonic() + timeout
        with mysql.connect(server) as session:
            while True:
                now = sql.channel(session, connection)
                if now is not None and now.io == "Yes" and now.sql == "Yes":
                    return
                if now is not None and (now.sql_errno or now.io_errno not in (0, *check.UNREACHABLE)):
                    raise RemediationError(f"connection {now.label!r} stopped: SQL error {now.sql_errno} "
                                           f"{now.sql_error}; IO error {now.io_errno} {now.io_error}")
                if time.monotonic() >= deadline:
                    state = "gone" if now is None else f"IO {now.io}, SQL {now.sql}"
                    raise RemediationError(f"connection {connection!r} not running after {timeout:g}s ({state})")
                self.sleep(0.1)

    # -- the run ---------------------------------------------------------------------------
    def run(self, target, plan):
        """Under GET_LOCK in the replica: whoever else repairs this server (another
        target name, state directory or host) finishes first; then, if the replica
        is healthy, nothing is left to do; if its state changed, the plan is stale."""
        entry = self.entry(target)
        self._compared = {}
        try:
            lock = origin.ServerLock(self.server(target), wait=entry["lock_wait"])
            lock.__enter__()
        except origin.LockHeld as exc:
            raise RemediationError(str(exc)) from None
        try:
            fresh = self.plan_under_lock(target)
            if not fresh:
                raise Noop("another remediation repaired the replica meanwhile")
            if [s.key for s in fresh] != [s.key for s in plan]:
                raise RemediationError("the replica changed since the plan was made; now: "
                                       + "; ".join(s.description for s in fresh))
            return super().run(target, plan)
        finally:
            lock.__exit__(None, None, None)

    def plan_under_lock(self, target):
        """The plan again (our own lock is held now, so no lock check)."""
        with self.session(target) as session:
            steps = []
            for channel in self.channels(session, target):
                findings = check.diagnose(channel)
                if findings:
                    mine, trouble = self._channel_steps(session, target, channel, findings)
                    if trouble:
                        raise RemediationError("; ".join(trouble))
                    steps.extend(mine)
            return steps

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
                    payload.setdefault("failing_events", {})[channel.name] = sql.failing_event(session, channel)
        except mysql.SQLError as exc:
            payload["evidence_error"] = str(exc)
        primary = self.server(target, "primary")
        databases = self.entry(target)["resync"]["databases"] or ["<every database of the GTID domain>"]
        payload["procedures"] = {c.label: procedure_for(c) for c in channels if procedure_for(c)}
        payload["resync_procedure"] = [
            resync.resync_procedure(primary, session.server, c.name, databases) for c in channels] or None
        path = mysql.save_evidence(self.config.state_dir, self.name, target, payload)
        if self.audit is not None:
            self.audit.record("evidence", "escalated", cls=self.name, target=target, path=path, problems=problems)
        raise Refused("precondition", f"{'; '.join(problems)} (evidence and resync procedure: {path})")

    # -- verify -------------------------------------------------------------------------
    def verify(self, target):
        entry = self.entry(target)
        return self.poll(lambda: self.check(target), entry["catch_up_timeout"], sleep=self.sleep)

    def check(self, target):
        """The replication check on this target's replica and connections; errant
        transactions are judged against the configured source."""
        from autoremedy.contract import checkrun
        entry = self.entry(target)
        # The check's own options table and defaults (autoremedy/contract/checkrun.py), with
        # this target's thresholds and connections.
        argv = [f"--warning={entry['warning']}", f"--critical={entry['critical']}"]
        argv += [f"--connection={name}" for name in entry.get("connections") or []]
        args = checkrun.thresholds(checkrun.options(check.NAME, argv, check))
        try:
            with self.session(target) as session:
                return check.evaluate(args, session, lambda: mysql.connect(self.server(target, "primary")))
        except mysql.SQLError as exc:
            return Result(check.NAME, str(exc), status=Status.UNKNOWN)

REMEDIATION = ReplicationRepair


# --- the procedures a human follows ---------------------------------------------------------

def procedure_for(channel):
    """The fix for errors that need a human but not a resync, or None."""
    conn = f"'{channel.name}'"
    if channel.io_errno == 1045:
        return [f"the replication user's password no longer matches the source's: STOP SLAVE {conn}; "
                f"CHANGE MASTER {conn} TO MASTER_PASSWORD='<the current one>'; START SLAVE {conn};"]
    if channel.sql_errno in (1594, 1595) or channel.io_errno in (1594, 1595):
        return [f"relay log damage: with GTID, STOP SLAVE {conn}; RESET SLAVE {conn}; START SLAVE {conn}; "
                "fetches the events again (only while the source still has its binlogs), else resync"]
    if channel.sql_errno == 1950:
        return ["errant local transaction under gtid_strict_mode: delete the replica-local change with "
                "sql_log_bin=0, then on a leaf replica RESET MASTER and SET GLOBAL gtid_slave_pos to the value "
                "before it, or resync"]
    return None
