"""What the replica's source is, what it sent, and whether the replica's own history is sound.

- ``identify``: the configured source must be the server the replica actually
  replicates from — its address (host resolved, port) *and* its server_id as the
  replica sees it (``Master_Server_Id``) — or every comparison would be against
  the wrong server (a sibling replica is also "a server with the same data").
- ``errant``: transactions in the replica's binlog its source never had.
- ``downstream``: replicas of the replica (``SHOW SLAVE HOSTS`` and the binlog
  dump threads in the process list): a repair that is not binlogged never
  reaches them.
- ``relay_gap``: "SQL thread stopped, no error" is only safe to restart when the
  relay log holds, from the SQL thread's position on, the very next transaction
  the source sent; a truncated or unreadable relay log would be applied with a
  hole (a bare START SLAVE loses the transactions in the hole for good).
- ``binlog_tables``: the tables a range of the source's binlog touches (the
  transactions a repair replays or skips), from ``SHOW BINLOG EVENTS``.
- ``ServerLock``: one repair per server, whatever the target name or state
  directory: a lock in the replica server itself (``GET_LOCK``).
"""
import re
import socket

from autoremedy.clients import mysql

from autoremedy.checks import mysql_replication as check

LOCK_NAME = "autoremedy.mysql-replication"
TRANSACTION_ENDS = ("Xid", "XA_prepare")


# --- the real source -------------------------------------------------------------------

def addresses(host):
    """Every IP address ``host`` resolves to (itself when it does not resolve)."""
    if not host:
        return set()
    try:
        return {info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except OSError:
        return {host}


def identify(channel, source_session):
    """None when the configured source is the replica's actual source, else why not.

    The replica names its source by Master_Host:Master_Port and, once it has
    connected, Master_Server_Id; the configured source answers with @@server_id,
    @@port and the address we reached it at."""
    mine = source_session.row("SELECT @@global.server_id AS server_id, @@global.port AS port") or {}
    server = source_session.server
    problems = []
    seen_id = int(channel.raw.get("Master_Server_Id") or 0)
    if seen_id and seen_id != int(mine.get("server_id") or -1):
        problems.append(f"the replica's source has server_id {seen_id}, {server.describe()} has "
                        f"server_id {mine.get('server_id')}")
    if int(mine.get("port") or -1) != channel.primary_port:
        problems.append(f"the replica replicates from port {channel.primary_port}, {server.describe()} "
                        f"listens on {mine.get('port')}")
    if server.host is not None and not (addresses(server.host) & addresses(channel.primary_host)):
        problems.append(f"the replica replicates from {channel.primary_host}, configured {server.host}")
    if not problems:
        return None
    return (f"[{channel.label}] the configured source {server.describe()} is not the replica's source "
            f"{channel.primary}: " + "; ".join(problems))


# --- errant transactions --------------------------------------------------------------------

def gtid_states(replica, source):
    """(replica's, source's) @@gtid_binlog_state (MariaDB)."""
    sql = "SELECT @@global.gtid_binlog_state AS s"
    return replica.value(sql) or "", source.value(sql) or ""


def errant(replica, source, channel):
    """GTIDs of the replica's binlog its source does not have, in the connection's domains."""
    mine, theirs = gtid_states(replica, source)
    return check.errant_against(mine, theirs, check.domains_of(channel))


# --- replicas of the replica -------------------------------------------------------------------

def downstream(session):
    """[{server_id, host, port}] of servers replicating from this one. SHOW SLAVE
    HOSTS lists the registered ones; a dump thread without a registration counts
    too (host unknown)."""
    found = []
    try:
        for row in session.rows("SHOW SLAVE HOSTS"):
            found.append({"server_id": int(row.get("Server_id") or 0), "host": row.get("Host") or "",
                          "port": int(row.get("Port") or 0)})
    except mysql.SQLError:
        pass
    dumps = session.rows("SELECT ID AS id, HOST AS host FROM information_schema.PROCESSLIST "
                         "WHERE COMMAND LIKE 'Binlog Dump%%'")
    for extra in dumps[len(found):]:
        found.append({"server_id": 0, "host": str(extra["host"]).rsplit(":", 1)[0], "port": 0})
    return found


def describe_downstream(items):
    return ", ".join(f"server_id {d['server_id']} at {d['host'] or '?'}:{d['port'] or '?'}" for d in items)


# --- relay log integrity ---------------------------------------------------------------------------

def relay_gap(session, channel, limit=50):
    """None when the relay log continues exactly where the SQL thread stopped, else
    why not. Nothing pending (everything received was applied) is continuous."""
    from autoremedy.remediations import _replication_sql as sql
    received = check.parse_gtid_list(channel.gtid_io_pos)
    applied = check.parse_gtid_list(session.value("SELECT @@global.gtid_slave_pos"))
    pending = {d: g for d, g in received.items() if g[1] > applied.get(d, (0, 0))[1]}
    if not pending:
        return None
    try:
        events = sql.relay_events(session, channel, limit)
    except mysql.SQLError as exc:
        return f"the relay log cannot be read at the SQL thread's position: {exc}"
    for i, event in enumerate(events):
        kind = event.get("Event_type")
        if kind in ("Format_desc", "Rotate", "Gtid_list", "Binlog_checkpoint", "Start_encryption"):
            continue
        if kind != "Gtid":
            return (f"the relay log at {channel.relay_log_file}:{channel.relay_log_pos} starts with a "
                    f"{kind} event, not a transaction")
        found = re.search(r"GTID (\d+)-(\d+)-(\d+)", str(event.get("Info") or ""))
        if not found:
            return f"unreadable GTID event at {channel.relay_log_file}:{event.get('Pos')}"
        domain, _, seq = (int(x) for x in found.groups())
        last = applied.get(domain, (0, 0))
        expected = last[1] + 1
        if seq == expected:
            return None
        # The source may have gaps of its own (filters upstream): then the event's
        # source position must continue where the SQL thread stopped executing.
        if i + 1 < len(events) and channel.exec_file == channel.read_file:
            size = int(events[i + 1]["Pos"]) - int(event["Pos"])
            if int(event["End_log_pos"]) - size == channel.exec_pos:
                return None
        return (f"the replica applied up to GTID {domain}-{last[0]}-{last[1]} but its relay log continues with "
                f"{found.group(0)[5:]} at {channel.relay_log_file}:{event.get('Pos')}: transactions received by "
                "the IO thread are missing from it (truncated or damaged)")
    return (f"the relay log holds no transaction at {channel.relay_log_file}:{channel.relay_log_pos} although "
            f"{check.gtid_behind(channel) or 'some'} received transactions are not applied (truncated or damaged)")


# --- what a range of the source's binlog touches ------------------------------------------------------

class Touched:
    """Tables written by a range of binlog events; ``complete`` is False when the
    range could not be read to its end (purged, too long, a statement whose
    tables cannot be told)."""

    def __init__(self):
        self.tables, self.events, self.complete, self.why = set(), 0, True, ""

    def give_up(self, why):
        self.complete, self.why = False, why
        return self


_TABLE_MAP = re.compile(r"table_id: \d+ \(([^.]+)\.(.+)\)$")
_HARMLESS = re.compile(r"^(BEGIN|COMMIT|ROLLBACK|XA (START|END|PREPARE|COMMIT|ROLLBACK)\b)", re.I)


def binlog_files(source):
    return [r["Log_name"] for r in source.rows("SHOW BINARY LOGS")]


def binlog_tables(source, start, stop, max_events, domains=(None, frozenset()), page=2000):
    """Touched tables of the source's binlog from ``start`` to ``stop`` ((file, pos)
    each), in the GTID domains the connection replicates (``domains``: from
    check.domains_of; a multi-source replica gets the other domains from elsewhere).
    Row events name their table (Table_map); a DDL or statement-based DML does
    not, so it makes the range incomplete (compare everything)."""
    touched = Touched()
    mine = True
    files = binlog_files(source)
    if start[0] not in files:
        return touched.give_up(f"{start[0]} is no longer on the source")
    for name in files[files.index(start[0]):]:
        pos = start[1] if name == start[0] else 4
        while True:
            if name == stop[0] and pos >= stop[1]:
                return touched
            rows = source.rows(f"SHOW BINLOG EVENTS IN %s FROM %s LIMIT {int(page)}", (name, pos))
            for row in rows:
                if name == stop[0] and int(row["Pos"]) >= stop[1]:
                    return touched
                touched.events += 1
                if touched.events > max_events:
                    return touched.give_up(f"more than {max_events} binlog events to read")
                kind, info = row["Event_type"], str(row.get("Info") or "")
                if kind == "Gtid":
                    found = re.search(r"GTID (\d+)-", info)
                    mine = found is None or check.in_domains(int(found.group(1)), domains)
                elif not mine:
                    continue
                elif kind == "Table_map":
                    match = _TABLE_MAP.search(info)
                    if match:
                        touched.tables.add((match.group(1), match.group(2)))
                elif kind == "Query" and not _HARMLESS.match(info.strip()):
                    return touched.give_up(f"a statement at {name}:{row['Pos']} ({info[:60]}) names no table "
                                           "the repair can tell")
            if len(rows) < page:
                break
            pos = int(rows[-1]["End_log_pos"])
        if name == stop[0]:
            return touched
    return touched


def transaction_at(source, file, pos, limit=5000):
    """The transaction starting at ``file:pos`` of the source's binlog: its GTID, the
    position after its last event, its tables and whether it is row-based DML."""
    rows = source.rows(f"SHOW BINLOG EVENTS IN %s FROM %s LIMIT {int(limit)}", (file, pos))
    out = {"file": file, "start": pos, "gtid": None, "end": None, "tables": [], "rows_only": True}
    for row in rows:
        kind, info = row["Event_type"], str(row.get("Info") or "")
        if kind == "Gtid":
            if out["gtid"] is not None:
                break
            found = re.search(r"GTID (\d+-\d+-\d+)", info)
            out["gtid"] = found.group(1) if found else None
            if "BEGIN" not in info:
                out["rows_only"] = False       # a DDL: one statement, no row images
        elif kind == "Table_map":
            match = _TABLE_MAP.search(info)
            if match and (match.group(1), match.group(2)) not in out["tables"]:
                out["tables"].append((match.group(1), match.group(2)))
        elif kind == "Query" and not _HARMLESS.match(info.strip()):
            out["rows_only"] = False
        if kind in TRANSACTION_ENDS or (kind == "Query" and info.strip().upper().startswith("COMMIT")):
            out["end"] = int(row["End_log_pos"])
            break
    return out


# --- one repair per server -------------------------------------------------------------------------

class ServerLock:
    """``GET_LOCK`` in the replica itself: held by a dedicated connection for the
    whole run, released when it closes (also when the process dies). Two target
    names for one server, two state directories, a node handler and StackStorm:
    one of them repairs, the others see it held."""

    def __init__(self, server, wait=0):
        self.server, self.wait = server, wait
        self.session = None

    @staticmethod
    def holder(session):
        """The connection id holding the lock on this server, or None."""
        return session.value("SELECT IS_USED_LOCK(%s)", (LOCK_NAME,))

    def __enter__(self):
        self.session = mysql.connect(self.server)
        got = self.session.value("SELECT GET_LOCK(%s, %s)", (LOCK_NAME, int(self.wait)))
        if got != 1:
            holder = self.holder(self.session)
            self.session.close()
            self.session = None
            raise LockHeld(f"another remediation of {self.server.describe()} holds {LOCK_NAME} "
                           f"(connection {holder})")
        return self

    def __exit__(self, *exc):
        if self.session is not None:
            try:
                self.session.value("SELECT RELEASE_LOCK(%s)", (LOCK_NAME,))
            except mysql.SQLError:
                pass
            self.session.close()
        return False


class LockHeld(Exception):
    pass
