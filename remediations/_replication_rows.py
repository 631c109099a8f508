"""Row-level truth for the duplicate-key repairs: what a transaction changed, what the replica holds.

- ``read_transaction``: the row images of one transaction of the source's binlog,
  read with ``mariadb-binlog --read-from-remote-server -vv`` (the SQL interface
  shows row events only as "table_id: N flags: STMT_END_F").
- ``missing_changes``: a skip is allowed only when every row change of the
  skipped transaction is already on the replica — inserted and updated rows
  present with every column equal, deleted rows absent — otherwise the skip
  would leave the replica different from the source.
- ``source_claims``: ``delete-row`` deletes the replica's conflicting row only
  when the source does not have that row — by its primary key and by every
  unique key — except as the incoming row the failed event re-applies.
"""
import os
import re
from decimal import Decimal, InvalidOperation

from autoremedy.clients import mysql

MAX_ROWS = 10000

_ROW_START = re.compile(rb"^### (INSERT INTO|UPDATE|DELETE FROM) `((?:[^`]|``)+)`\.`((?:[^`]|``)+)`$")
_VALUE = re.compile(rb"^###   @(\d+)=(.*)$")
_HEX = re.compile(rb"\\x([0-9a-f]{2})")


class Change:
    """One row change: kind (insert/update/delete), table, before/after images
    ({ordinal: (value, type)})."""

    def __init__(self, kind, db, table):
        self.kind, self.db, self.table = kind, db, table
        self.before, self.after = {}, {}

    def image(self):
        return self.before if self.kind == "delete" else self.after

    def __repr__(self):
        return f"Change({self.kind} {self.db}.{self.table} {self.image()})"


def decode_value(raw):
    """(value, type) from one '@N=' line of ``mariadb-binlog -vv``: the value, then
    ' /* TYPE meta=.. nullable=.. is_null=.. */'. Strings are printed raw with
    control bytes as \\xHH (log_event_client.cc my_b_write_quoted); unsigned
    integers as 'signed (unsigned)'."""
    text, _, comment = raw.rpartition(b" /* ")
    if not _:
        text, comment = raw, b""
    kind = comment.split(b" ", 1)[0].decode("ascii", "replace").upper()
    text = text.rstrip(b" ")
    if text == b"NULL":
        return None, kind
    if text.startswith(b"'") and text.endswith(b"'") and len(text) >= 2:
        body = _HEX.sub(lambda m: bytes([int(m.group(1), 16)]) if int(m.group(1), 16) < 0x20
                        else m.group(0), text[1:-1])
        return body, kind
    match = re.fullmatch(rb"(-?\d+) \((\d+)\)", text)
    if match:                                   # unsigned: "-1 (4294967295)"
        return int(match.group(2)), kind
    try:
        if re.fullmatch(rb"-?\d+", text):
            return int(text), kind
        return Decimal(text.decode("ascii")), kind
    except (InvalidOperation, UnicodeDecodeError):
        return text, kind


def parse_verbose(data):
    """[Change] from the bytes ``mariadb-binlog -vv --base64-output=DECODE-ROWS`` wrote."""
    changes, current, section = [], None, None
    for line in data.split(b"\n"):
        start = _ROW_START.match(line)
        if start:
            kind = {b"INSERT INTO": "insert", b"UPDATE": "update", b"DELETE FROM": "delete"}[start.group(1)]
            current = Change(kind, start.group(2).decode().replace("``", "`"),
                             start.group(3).decode().replace("``", "`"))
            changes.append(current)
            section = None
            continue
        if current is None:
            continue
        if line == b"### WHERE":
            section = current.before
        elif line == b"### SET":
            section = current.after
        else:
            value = _VALUE.match(line)
            if value and section is not None:
                section[int(value.group(1))] = decode_value(value.group(2))
            elif not line.startswith(b"###"):
                current, section = None, None
    return changes


def read_transaction(runner, source_server, workdir, transaction, timeout=120):
    """[Change] of ``transaction`` (from _replication_source.transaction_at) read from
    the source's binlog. The login goes to mariadb-binlog in a 0600 option file."""
    from autoremedy.remediations import _replication_sql as sql
    cnf, address = mysql.client_option_file(source_server, workdir)
    out = os.path.join(workdir, f".rows-{os.getpid()}.txt")
    try:
        argv = binlog_argv(sql.tool("mariadb-binlog", "mysqlbinlog"), cnf, address, transaction, out)
        done = runner(argv, timeout=timeout)
        if done.returncode != 0:
            raise RowsUnreadable(f"mariadb-binlog exit {done.returncode}: {done.brief()}")
        with open(out, "rb") as handle:
            return parse_verbose(handle.read())
    finally:
        for path in (cnf, out):
            try:
                os.unlink(path)
            except OSError:
                pass


def binlog_argv(tool, cnf, address, transaction, out):
    return [tool, f"--defaults-file={cnf}", *address, "--read-from-remote-server", "-vv",
            "--base64-output=DECODE-ROWS", f"--start-position={transaction['start']}",
            f"--stop-position={transaction['end']}", f"--result-file={out}", transaction["file"]]


class RowsUnreadable(Exception):
    pass


# --- is every change of the transaction already on the replica? ----------------------------------

def columns(session, db, table):
    """{ordinal: (name, data_type)} of a table on this server."""
    rows = session.rows("SELECT ORDINAL_POSITION AS o, COLUMN_NAME AS c, DATA_TYPE AS t FROM "
                        "information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", (db, table))
    return {int(r["o"]): (r["c"], str(r["t"]).lower()) for r in rows}


def _condition(name, value, kind, data_type):
    """(SQL, params) saying column ``name`` holds ``value`` as the binlog printed it."""
    col = mysql.quote_ident(name)
    if value is None:
        return f"{col} IS NULL", ()
    if kind.startswith("TIMESTAMP"):
        return f"UNIX_TIMESTAMP({col}) = %s", (value,)
    if data_type in ("enum", "set"):
        return f"({col} + 0) = %s", (value,)
    if data_type in ("float", "double", "real"):
        # printed with %g: equal within the printed precision
        return f"ABS({col} - %s) <= ABS(%s) * 1e-5", (value, value)
    if data_type == "bit":
        raise RowsUnreadable(f"column {name}: BIT values are not compared")
    return f"{col} = %s", (value,)


def _where(cols, image, only=None):
    parts, params = [], []
    for ordinal, (value, kind) in sorted(image.items()):
        if ordinal not in cols:
            raise RowsUnreadable(f"column @{ordinal} is not in the replica's table")
        name, data_type = cols[ordinal]
        if only is not None and name not in only:
            continue
        sql, args = _condition(name, value, kind, data_type)
        parts.append(sql)
        params.extend(args)
    return " AND ".join(parts) or "1", tuple(params)


def describe(change, cols, keys):
    """'app.t INSERT id=7' — the row named by its primary key, else its first columns."""
    image = change.image()
    names = {cols[o][0]: v for o, (v, _) in image.items() if o in cols}
    key = keys.get("PRIMARY") or list(names)[:3]
    shown = ", ".join(f"{k}={_short(names.get(k))}" for k in key)
    return f"{change.db}.{change.table} {change.kind.upper()} {shown}"


def _short(value):
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError:
            return "0x" + value[:16].hex()
    text = str(value)
    return text if len(text) <= 40 else text[:40] + "..."


def missing_changes(session, changes):
    """The row changes of a transaction the replica does not have yet, one line each
    (empty: every change is already there, so skipping it loses nothing)."""
    from autoremedy.remediations import _replication_sql as sql
    if len(changes) > MAX_ROWS:
        return [f"{len(changes)} row changes: more than {MAX_ROWS}, not verified one by one"]
    missing, schema = [], {}
    for change in changes:
        key = (change.db, change.table)
        if key not in schema:
            schema[key] = (columns(session, *key), sql.unique_keys(session, *key))
        cols, keys = schema[key]
        if not cols:
            if change.kind != "delete":
                missing.append(f"{change.db}.{change.table}: the table is not on the replica")
            continue
        name = mysql.quote_ident(change.db, change.table)
        try:
            if change.kind == "delete":
                only = set(keys["PRIMARY"]) if "PRIMARY" in keys else None
                where, params = _where(cols, change.before, only)
                if session.value(f"SELECT COUNT(*) FROM {name} WHERE {where}", params):
                    missing.append(describe(change, cols, keys) + ": the row is still on the replica")
            else:
                where, params = _where(cols, change.after)
                if not session.value(f"SELECT COUNT(*) FROM {name} WHERE {where}", params):
                    missing.append(describe(change, cols, keys) + ": not on the replica with these values")
        except RowsUnreadable as exc:
            missing.append(f"{describe(change, cols, keys)}: cannot be compared ({exc})")
    return missing


# --- does the source have the replica's conflicting row? ---------------------------------------------

def source_claims(replica, source, db, table, where, params):
    """Why the replica's row (``where``/``params``: its duplicate key) must not be
    deleted, or None. The source may hold one row with the duplicate key value —
    the row the failed event inserts; any source row found by the replica row's
    primary key or another unique key that is not that row means the replica's
    row is (a local change of) a row the source has: deleting it loses data."""
    from autoremedy.remediations import _replication_sql as sql
    name = mysql.quote_ident(db, table)
    mine = replica.row(f"SELECT * FROM {name} WHERE {where} LIMIT 1", params)
    if mine is None:
        return "the conflicting row is no longer on the replica"
    incoming = {_identity(r) for r in source.rows(f"SELECT * FROM {name} WHERE {where} LIMIT 5", params)}
    for key, cols in sql.unique_keys(replica, db, table).items():
        values = [mine.get(c) for c in cols]
        if any(v is None for v in values):
            continue            # NULLs never collide in a unique key
        cond = " AND ".join(f"{mysql.quote_ident(c)} = %s" for c in cols)
        for row in source.rows(f"SELECT * FROM {name} WHERE {cond} LIMIT 5", tuple(values)):
            if _identity(row) not in incoming:
                shown = ", ".join(f"{c}={sql.plain(v)!r}" for c, v in zip(cols, values))
                return (f"the source also has the replica's row by key {key} ({shown}): "
                        f"{ {k: sql.plain(v) for k, v in row.items()} }; deleting it would lose a row the source has")
    return None


def _identity(row):
    return tuple(sorted((k, repr(v)) for k, v in row.items()))
