"""Statements and parsing for the replication repairs: spelled for the server, no policy.

Everything here reads or changes one server through an open ``mysql.Session``;
what to do and when is decided in ``mysql_replication.py``.
"""
import itertools
import os
import re
import time

from autoremedy.contract import execute
from autoremedy.clients import mysql
from autoremedy.contract.remediation import RemediationError

from autoremedy.checks import mysql_replication as check

MAX_SPLITS = 256


# --- threads -----------------------------------------------------------------------

def thread_statement(session, verb, name, thread=None, until=None):
    """START/STOP of one connection's thread(s): MariaDB ``START SLAVE 'name' SQL_THREAD``
    (REPLICA from 10.5.1), MySQL ``START REPLICA SQL_THREAD FOR CHANNEL 'name'`` (8.0.22+).
    ``until``: a MariaDB GTID position for ``UNTIL master_gtid_pos``."""
    literal = session.literal(name)
    if session.flavour == "mariadb":
        word = "REPLICA" if session.version >= (10, 5, 1) else "SLAVE"
        text = f"{verb} {word} {literal}" + (f" {thread}" if thread else "")
        return text + (f" UNTIL master_gtid_pos = {session.literal(until)}" if until is not None else "")
    word = "REPLICA" if session.version >= (8, 0, 22) else "SLAVE"
    return f"{verb} {word}" + (f" {thread}" if thread else "") + f" FOR CHANNEL {literal}"


def reset_statement(session, name):
    """RESET SLAVE 'name': drops the relay logs, keeps the connection's settings."""
    if session.flavour == "mariadb":
        word = "REPLICA" if session.version >= (10, 5, 1) else "SLAVE"
        return f"RESET {word} {session.literal(name)}"
    word = "REPLICA" if session.version >= (8, 0, 22) else "SLAVE"
    return f"RESET {word} FOR CHANNEL {session.literal(name)}"


def channel(session, name):
    """One connection's status now (None when it is gone)."""
    _, found = check.read_status(session)
    return next((c for c in found if c.name == name), None)


def settle_sql(session, name, seconds=3.0, sleep=time.sleep):
    """The connection once the SQL thread has had time to apply or fail."""
    deadline = time.monotonic() + seconds
    while True:
        current = channel(session, name)
        if current is None or current.sql != "Yes" or time.monotonic() >= deadline:
            return current
        if current.lag == 0 and current.exec_pos == current.read_pos:
            return current
        sleep(0.1)


def skip_event(session, channel_, event):
    """Skip the failing transaction: MariaDB's per-connection skip counter (allowed
    with GTID), MySQL GTID's empty transaction, else the skip counter."""
    if session.flavour == "mariadb":
        session.execute(f"SET @@session.default_master_connection = {session.literal(channel_.name)}")
        session.execute("SET GLOBAL sql_slave_skip_counter = 1")
    elif channel_.using_gtid not in ("No", "") and event.get("gtid"):
        session.execute("SET GTID_NEXT = %s", (event["gtid"],))
        session.execute("BEGIN")
        session.execute("COMMIT")
        session.execute("SET GTID_NEXT = 'AUTOMATIC'")
    else:
        session.execute("SET GLOBAL sql_slave_skip_counter = 1")
    session.execute(thread_statement(session, "START", channel_.name, "SQL_THREAD"))


def skip_statements(session, channel_, event):
    """What ``skip_event`` runs, for the dry-run."""
    if session.flavour == "mariadb":
        return [f"SET @@session.default_master_connection = {session.literal(channel_.name)}",
                "SET GLOBAL sql_slave_skip_counter = 1",
                thread_statement(session, "START", channel_.name, "SQL_THREAD")]
    return [f"SET GTID_NEXT = '{event.get('gtid')}'; BEGIN; COMMIT; SET GTID_NEXT = 'AUTOMATIC'",
            thread_statement(session, "START", channel_.name, "SQL_THREAD")]


# --- the failed transaction --------------------------------------------------------------

def failing_event(session, channel_):
    """The GTID and statement of the event the SQL thread stopped on, read from the
    relay log at its position (the 10.11 error text carries no GTID)."""
    out = {"relay_log": f"{channel_.relay_log_file}:{channel_.relay_log_pos}",
           "master_log": f"{channel_.exec_file}:{channel_.exec_pos}"}
    match = re.search(r"transaction '([^']+)'", channel_.sql_error or "")
    if match:
        out["gtid"] = match.group(1)
    if not channel_.relay_log_file:
        return out
    try:
        rows = relay_events(session, channel_, limit=4)
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


def relay_events(session, channel_, limit, file=None, pos=None):
    """SHOW RELAYLOG EVENTS of one connection from the SQL thread's position."""
    file = file or channel_.relay_log_file
    pos = channel_.relay_log_pos if pos is None else pos
    if session.flavour == "mariadb":
        sql = f"SHOW RELAYLOG {session.literal(channel_.name)} EVENTS IN %s FROM %s LIMIT {int(limit)}"
    else:
        sql = f"SHOW RELAYLOG EVENTS IN %s FROM %s LIMIT {int(limit)} FOR CHANNEL {session.literal(channel_.name)}"
    return session.rows(sql, (file, pos))


# --- duplicate keys ------------------------------------------------------------------------

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


def worker_error(session, channel_):
    """MySQL's multi-threaded applier hides the row error in performance_schema."""
    if session.flavour != "mysql":
        return ""
    try:
        row = session.row("SELECT LAST_ERROR_MESSAGE AS m FROM performance_schema.replication_applier_status_by_worker "
                          "WHERE CHANNEL_NAME = %s AND LAST_ERROR_NUMBER <> 0 LIMIT 1", (channel_.name,))
    except mysql.SQLError:
        return ""
    return (row or {}).get("m") or ""


def table_allowed(db, table, patterns):
    return any(p == f"{db}.{table}" or p == f"{db}.*" for p in patterns)


def unique_keys(session, db, table):
    """{key name: [columns]} of every unique key of ``db.table`` (PRIMARY first);
    prefix keys are left out (they cannot identify a row by its values)."""
    rows = session.rows(
        "SELECT INDEX_NAME AS k, COLUMN_NAME AS col, SUB_PART AS sub FROM information_schema.STATISTICS "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND NON_UNIQUE = 0 ORDER BY INDEX_NAME = 'PRIMARY' DESC, "
        "INDEX_NAME, SEQ_IN_INDEX", (db, table))
    keys, prefixed = {}, set()
    for row in rows:
        keys.setdefault(row["k"], []).append(row["col"])
        if row["sub"]:
            prefixed.add(row["k"])
    return {k: cols for k, cols in keys.items() if k not in prefixed}


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
    return where, params, {k: plain(v) for k, v in rows[0].items()}


def plain(value):
    """A JSON-able rendering of a column value (bytes as 0x-hex)."""
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


# --- GTID positions ---------------------------------------------------------------------------

def gtid_text(positions):
    """{domain: (server_id, seq)} -> '0-1-5,1-2-9'."""
    return ",".join(f"{d}-{s}-{n}" for d, (s, n) in sorted(positions.items()))


def merged_position(current, position):
    """``current`` gtid_slave_pos with the domains of ``position`` replaced (the
    other connections' domains kept)."""
    merged = check.parse_gtid_list(current)
    merged.update(check.parse_gtid_list(position))
    return gtid_text(merged)


# --- command-line tools -------------------------------------------------------------------------

def tool(*names):
    """The first of ``names`` found on the fixed PATH of the subprocess boundary."""
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


def dump_complete(path):
    """mariadb-dump's last line says the dump completed: a dump cut short (the source
    died, the disk filled) must never be loaded."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 4096))
            return b"-- Dump completed" in handle.read()
    except OSError:
        return False
