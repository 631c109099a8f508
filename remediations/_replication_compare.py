"""Equal to the source at one consistent position: the verification of every replication repair.

A replica that "runs again" can still differ from its source (a skip that lost
rows, a relay log applied with a hole, a resync of half a GTID domain). So after
a repair the tables it could have affected are compared with the source, both
sides read at the *same* GTID position while the source keeps writing:

1. ``STOP SLAVE 'conn'`` on the replica (its position is now behind the source's);
2. on the source, ``START TRANSACTION WITH CONSISTENT SNAPSHOT`` and
   ``BINLOG_GTID_POS(Binlog_snapshot_file, Binlog_snapshot_position)``: the GTID
   position of exactly that snapshot (what mariadb-dump --single-transaction --gtid
   uses);
3. ``START SLAVE 'conn' UNTIL master_gtid_pos = <that position>`` and
   ``MASTER_GTID_WAIT``: the replica applies up to the snapshot and stops there;
4. on the replica, its own consistent snapshot; then ``START SLAVE 'conn'`` at
   once (the replica is paused only from 1 to here: milliseconds when it is
   caught up);
5. inside both snapshots, chunked checksums of every table: primary-key ranges
   of ``chunk_rows`` rows walked on the source; per chunk ``COUNT(*)`` and the sum
   of a 64-bit slice of each row's MD5 (a sum, not an XOR: a duplicated row
   changes it; every column cast to binary, NULLs marked).

Any difference — content, row count, a table missing on one side, a different
table definition — is reported with the table and the counts. Tables beyond the
``max_rows`` budget are reported as not compared (the repair is then not
verified). Cost: one pass over the compared rows on each side (bench/).
"""
import time

from autoremedy.clients import mysql

from autoremedy.checks import mysql_replication as check

SYSTEM_DATABASES = ("mysql", "information_schema", "performance_schema", "sys")


class Comparison:
    """The outcome of one comparison, small and JSON-able (the invariant's value)."""

    def __init__(self, position=None):
        self.position = position
        self.equal, self.differ, self.not_compared = [], {}, {}
        self.rows = 0
        self.seconds = 0.0

    @property
    def ok(self):
        return not self.differ and not self.not_compared

    def to_dict(self):
        # "differ" sorts first in the JSON the harm line shows: the news first.
        return {"differ": dict(sorted(self.differ.items())),
                "not_compared": dict(sorted(self.not_compared.items())),
                "equal": len(self.equal), "rows": self.rows, "position": self.position}

    def summary(self):
        if self.ok:
            return (f"{len(self.equal)} tables ({self.rows} rows) equal to the source at {self._where()}")
        parts = [f"{t}: {why}" for t, why in sorted(self.differ.items())]
        parts += [f"{t}: not compared ({why})" for t, why in sorted(self.not_compared.items())]
        return (f"the replica differs from the source at {self._where()}: " + "; ".join(parts)
                + f" ({len(self.equal)} tables equal)")

    def _where(self):
        text = str(self.position or "")
        return f"binlog position {text}" if ":" in text else f"GTID {text}"


class Unreachable(Exception):
    """No consistent position could be reached (a thread stopped, a timeout)."""


# --- the consistent position ------------------------------------------------------------------

def statements(session, name, chunk_rows):
    """What a comparison runs, for the dry-run (one line each)."""
    from autoremedy.remediations import _replication_sql as sql
    return [f"replica: {sql.thread_statement(session, 'STOP', name)}",
            "source: START TRANSACTION WITH CONSISTENT SNAPSHOT; SHOW STATUS LIKE 'binlog_snapshot_%'; "
            "SELECT BINLOG_GTID_POS(<file>, <pos>)",
            f"replica: {sql.thread_statement(session, 'START', name, until='<that position>')}; "
            "SELECT MASTER_GTID_WAIT('<that position>', <timeout>)",
            "replica: START TRANSACTION WITH CONSISTENT SNAPSHOT; "
            f"{sql.thread_statement(session, 'START', name)}",
            f"both: per table, per primary-key range of {chunk_rows} rows: SELECT COUNT(*), "
            "SUM(CAST(CONV(SUBSTRING(MD5(CONCAT_WS('#', <columns as binary>, <null flags>)), 1, 16), 16, 10) "
            "AS UNSIGNED)) FROM <table> WHERE <range>; COMMIT"]


def _domains_position(position, channel):
    """The part of the source's GTID position the connection replicates (UNTIL waits
    for every domain it names, and only those are applied)."""
    from autoremedy.remediations import _replication_sql as sql
    domains = check.domains_of(channel)
    parsed = check.parse_gtid_list(position)
    return sql.gtid_text({d: g for d, g in parsed.items() if check.in_domains(d, domains)})


def open_snapshots(replica_server, source_server, name, timeout, sleep=time.sleep):
    """(source snapshot session, replica snapshot session, position, binlog (file,
    pos) of the source snapshot, the connection). The caller closes both sessions.

    With GTID the replica stops at the snapshot's GTID position (UNTIL
    master_gtid_pos, MASTER_GTID_WAIT); without, at its binlog file and position
    (UNTIL MASTER_LOG_FILE/MASTER_LOG_POS, MASTER_POS_WAIT)."""
    from autoremedy.remediations import _replication_sql as sql
    control = mysql.connect(replica_server)
    source = replica = None
    stopped = False
    try:
        if control.flavour != "mariadb":
            raise Unreachable("the comparison at a consistent position is implemented for MariaDB only "
                              "(MySQL: compare by hand)")
        channel = sql.channel(control, name)
        if channel is None:
            raise Unreachable(f"connection {name!r} is not configured on the replica")
        if channel.sql != "Yes" or channel.io != "Yes":
            raise Unreachable(f"connection {channel.label!r} is not running (IO {channel.io}, SQL {channel.sql}"
                              f"{', error ' + str(channel.sql_errno) if channel.sql_errno else ''})")
        control.execute(sql.thread_statement(control, "STOP", name))
        stopped = True
        source = mysql.connect(source_server)
        source.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        status = {r["Variable_name"].lower(): r["Value"] for r in
                  source.rows("SHOW STATUS LIKE 'binlog_snapshot_%'")}
        where = (status.get("binlog_snapshot_file"), int(status.get("binlog_snapshot_position") or 0))
        if channel.using_gtid in ("No", ""):
            position = _stop_at_file_position(control, channel, where, timeout, sleep)
        else:
            full = source.value("SELECT BINLOG_GTID_POS(%s, %s)", where) or ""
            position = _stop_at_gtid(control, channel, _domains_position(full, channel), timeout, sleep)
        replica = mysql.connect(replica_server)
        replica.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        control.execute(sql.thread_statement(control, "START", name))
        stopped = False
        channel.others = len(check.read_status(control)[1]) - 1
        return source, replica, position, where, channel
    except BaseException:
        for session in (source, replica):
            if session is not None:
                session.close()
        raise
    finally:
        if stopped:   # whatever happened: replication runs again
            try:
                control.execute(sql.thread_statement(control, "START", name))
            except mysql.SQLError:
                pass
        control.close()


def _stop_at_gtid(control, channel, position, timeout, sleep):
    from autoremedy.remediations import _replication_sql as sql
    name = channel.name
    if position:
        control.execute(sql.thread_statement(control, "START", name, until=position))
        waited = control.value("SELECT MASTER_GTID_WAIT(%s, %s)", (position, float(timeout)))
        if waited != 0:
            now = sql.channel(control, name)
            raise Unreachable(f"the replica did not reach GTID {position} within {timeout:g}s "
                              f"(SQL {now.sql if now else '?'}, error "
                              f"{now.sql_errno if now else '?'}: {now.sql_error if now else ''})")
        _wait_stopped(control, name, sleep)
    applied = check.parse_gtid_list(control.value("SELECT @@global.gtid_slave_pos"))
    wanted = check.parse_gtid_list(position)
    if any(applied.get(d) != g for d, g in wanted.items()):
        raise Unreachable(f"the replica stopped at {sql.gtid_text(applied)}, not at {position}")
    return position


def _stop_at_file_position(control, channel, where, timeout, sleep):
    """Without GTID: the source's snapshot as binlog coordinates. UNTIL stops the SQL
    thread once it has executed up to there (at once when it is there already)."""
    from autoremedy.remediations import _replication_sql as sql
    name = channel.name
    control.execute(f"{sql.thread_statement(control, 'START', name)} UNTIL MASTER_LOG_FILE = "
                    f"{control.literal(where[0])}, MASTER_LOG_POS = {int(where[1])}")
    _wait_stopped(control, name, sleep, timeout)
    now = sql.channel(control, name)
    if now is None or (now.exec_file, now.exec_pos) != (where[0], where[1]):
        raise Unreachable(f"the replica stopped at {now.exec_file if now else '?'}:{now.exec_pos if now else '?'}, "
                          f"not at {where[0]}:{where[1]}")
    return f"{where[0]}:{where[1]}"


def _wait_stopped(control, name, sleep, seconds=10.0):
    """UNTIL stops the threads just after the position is applied."""
    seconds = float(seconds)
    from autoremedy.remediations import _replication_sql as sql
    deadline = time.monotonic() + seconds
    while True:
        now = sql.channel(control, name)
        if now is None or now.sql != "Yes":
            if now is not None and now.sql_errno:
                raise Unreachable(f"the SQL thread stopped by error {now.sql_errno}: {now.sql_error}")
            return
        if time.monotonic() >= deadline:
            raise Unreachable(f"the SQL thread did not reach the UNTIL position within {seconds:g}s")
        sleep(0.02)


# --- what to compare ------------------------------------------------------------------------------------

def database_tables(session, databases=None):
    """{(db, table)} of every base table of ``databases`` (None: every user database)."""
    if databases is None:
        rows = session.rows("SELECT TABLE_SCHEMA AS db, TABLE_NAME AS t FROM information_schema.TABLES "
                            "WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN "
                            f"({','.join(['%s'] * len(SYSTEM_DATABASES))})", SYSTEM_DATABASES)
    elif not databases:
        return set()
    else:
        rows = session.rows("SELECT TABLE_SCHEMA AS db, TABLE_NAME AS t FROM information_schema.TABLES "
                            "WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA IN "
                            f"({','.join(['%s'] * len(databases))})", tuple(databases))
    return {(r["db"], r["t"]) for r in rows}


def user_databases(session):
    return [r["Database"] for r in session.rows("SHOW DATABASES") if r["Database"] not in SYSTEM_DATABASES]


# --- chunked checksums ------------------------------------------------------------------------------------

def definition(session, db, table):
    """(columns [(name, type, collation)], primary key columns) or None when absent."""
    cols = session.rows("SELECT COLUMN_NAME AS c, COLUMN_TYPE AS t, COLLATION_NAME AS k FROM "
                        "information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
                        "ORDER BY ORDINAL_POSITION", (db, table))
    if not cols:
        return None
    pk = [r["c"] for r in session.rows(
        "SELECT COLUMN_NAME AS c FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s AND "
        "TABLE_NAME = %s AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX", (db, table))]
    return [(r["c"], r["t"], r["k"]) for r in cols], pk


def _row_hash(columns):
    cast = ", ".join(f"CAST({mysql.quote_ident(c)} AS BINARY)" for c in columns)
    nulls = ", ".join(f"ISNULL({mysql.quote_ident(c)})" for c in columns)
    return f"MD5(CONCAT_WS('#', {cast}, CONCAT({nulls})))"


def _after(pk, bound):
    """SQL and params for "(pk) > bound" expanded (MariaDB does not range-scan row
    constructors): a > x OR (a = x AND b > y) ..."""
    ors, params = [], []
    for i in range(len(pk)):
        parts = [f"{mysql.quote_ident(c)} = %s" for c in pk[:i]] + [f"{mysql.quote_ident(pk[i])} > %s"]
        ors.append("(" + " AND ".join(parts) + ")")
        params.extend(bound[:i + 1])
    return "(" + " OR ".join(ors) + ")", params


def _range(pk, low, high):
    conds, params = [], []
    if low is not None:
        sql, args = _after(pk, low)
        conds.append(sql)
        params.extend(args)
    if high is not None:
        sql, args = _after(pk, high)
        conds.append("NOT " + sql)
        params.extend(args)
    return (" AND ".join(conds) or "1"), tuple(params)


def chunk_sums(session, name, columns, where, params):
    row = session.row(f"SELECT COUNT(*) AS n, COALESCE(SUM(CAST(CONV(SUBSTRING({_row_hash(columns)}, 1, 16), "
                      f"16, 10) AS UNSIGNED)), 0) AS s FROM {name} WHERE {where}", params)
    return int(row["n"]), int(row["s"])


class _Beside:
    """Runs the replica's half of each chunk in a thread while the source's half
    runs here: the two servers work at the same time (PyMySQL waits on the socket
    without the GIL), the comparison takes the time of the slower side."""

    def __init__(self):
        from concurrent.futures import ThreadPoolExecutor
        self.pool = ThreadPoolExecutor(max_workers=1)

    def both(self, left, right):
        later = self.pool.submit(right)
        return left(), later.result()

    def close(self):
        self.pool.shutdown(wait=True)


def compare_table(source, replica, db, table, chunk_rows, beside=None):
    """None when equal, else a line saying how the table differs. Returns
    (difference, rows on the source)."""
    theirs, mine = definition(source, db, table), definition(replica, db, table)
    if theirs is None and mine is None:
        return None, 0
    if mine is None:
        return "missing on the replica", 0
    if theirs is None:
        rows = replica.value(f"SELECT COUNT(*) FROM {mysql.quote_ident(db, table)}")
        return f"not on the source; the replica has it with {rows} rows", 0
    if theirs != mine:
        return "table definitions differ (columns or primary key)", 0
    columns, pk = [c[0] for c in theirs[0]], theirs[1]
    name = mysql.quote_ident(db, table)
    total_src = total_rep = 0
    bad = chunks = 0
    low = None
    order = ", ".join(mysql.quote_ident(c) for c in pk)
    while True:
        high = None
        if pk:
            where, params = _range(pk, low, None)
            row = source.row(f"SELECT {order} FROM {name} WHERE {where} ORDER BY {order} "
                             f"LIMIT 1 OFFSET {int(chunk_rows) - 1}", params)
            high = None if row is None else [row[c] for c in pk]
        where, params = _range(pk, low, high) if pk else ("1", ())
        src, rep = (beside or _Serial()).both(lambda: chunk_sums(source, name, columns, where, params),
                                               lambda: chunk_sums(replica, name, columns, where, params))
        chunks += 1
        total_src += src[0]
        total_rep += rep[0]
        if src != rep:
            bad += 1
        if high is None:
            break
        low = high
    if bad:
        return (f"replica {total_rep} rows, source {total_src} rows; {bad} of {chunks} chunks differ",
                total_src)
    return None, total_src


class _Serial:
    @staticmethod
    def both(left, right):
        return left(), right()


def estimated_rows(source, tables):
    """{(db, table): TABLE_ROWS} (InnoDB's estimate: for the budget only)."""
    out = {}
    for db, table in tables:
        out[(db, table)] = int(source.value("SELECT TABLE_ROWS FROM information_schema.TABLES WHERE "
                                            "TABLE_SCHEMA = %s AND TABLE_NAME = %s", (db, table)) or 0)
    return out


def compare(replica_server, source_server, name, tables=None, databases=None, since=None,
            chunk_rows=10000, max_rows=5000000, max_events=200000, timeout=60.0, sleep=time.sleep):
    """Compare the replica with its source at one consistent position.

    tables     {(db, table)} named by the repair
    databases  every table of these databases too (None: none; "all": every user database)
    since      (file, pos) on the source: also every table the binlog touches from
               there to the consistent position (the transactions the repair replayed)
    """
    from autoremedy.remediations import _replication_source as origin
    started = time.monotonic()
    source, replica, position, where, channel = open_snapshots(replica_server, source_server, name, timeout,
                                                               sleep)
    result = Comparison(position)
    beside = _Beside()
    try:
        wanted = set(tables or ())
        scope = databases
        if since is not None:
            touched = origin.binlog_tables(source, since, where, max_events, check.domains_of(channel))
            wanted |= touched.tables
            if not touched.complete and channel.others:
                # Other connections write this replica too: "every database of the
                # source" would compare their data at another position. Say so.
                result.not_compared["(replayed transactions)"] = (
                    f"{touched.why}, and {channel.others} other connection(s) write this replica")
            elif not touched.complete:
                scope = "all"          # the replayed range cannot be told: compare everything
        if scope == "all":
            # Every database of the source (the domain's); databases only the replica
            # has belong to other connections and are not this source's to judge.
            scope = user_databases(source)
        if scope:
            wanted |= database_tables(source, scope) | database_tables(replica, scope)
        budget = max_rows
        sizes = estimated_rows(source, wanted)
        for db, table in sorted(wanted, key=lambda t: (sizes.get(t, 0), t)):
            key = f"{db}.{table}"
            if sizes.get((db, table), 0) > budget:
                result.not_compared[key] = f"~{sizes[(db, table)]} rows, beyond max_rows {max_rows}"
                continue
            difference, rows = compare_table(source, replica, db, table, chunk_rows, beside)
            budget -= rows
            result.rows += rows
            if difference:
                result.differ[key] = difference
            else:
                result.equal.append(key)
    finally:
        beside.close()
        for session in (source, replica):
            try:
                session.execute("COMMIT")
            except mysql.SQLError:
                pass
            session.close()
    result.seconds = time.monotonic() - started
    return result
