"""MySQL/MariaDB replication: IO and SQL threads, their errors, lag, GTID and relay log, per connection.

    $ autoremedy check mysql-replication --server db-replica-1
    MYSQL-REPLICATION OK: replicating from 127.0.0.1:3317, lag 0s, GTID 0-1-42 | 'lag'=0s;300;600;0 ...

    $ autoremedy check mysql-replication --server db-replica-1
    MYSQL-REPLICATION CRITICAL: SQL thread stopped by error 1062: Could not execute Write_rows_v1 event
    on table app.t; Duplicate entry '100' for key 'PRIMARY' ... | ...

One ``SHOW ALL SLAVES STATUS`` (MariaDB, every multi-source connection) or
``SHOW REPLICA STATUS`` (MySQL 8.0.22+, every channel), spelled for the server
it talks to (``--spelling`` forces one), plus one ``SELECT`` of the GTID
variables: ~1 ms of server time. ``-w/-c`` are Nagios ranges on
``Seconds_Behind_Master`` (default 300 / 600 s). A NULL lag is its own state,
never "0": with a thread stopped the thread is the finding; with both threads
running it means "lag unknown" (``--lag-null``, default WARNING).

Errant transactions (MariaDB GTID): transactions in the replica's binlog that
its source never had — a write on the replica, in any GTID domain. Without
``--source`` the check sees the ones the replica wrote itself after the last
transaction it applied from its source (its own server_id in
``@@gtid_binlog_state``); with ``--source SERVER`` it compares the replica's
``@@gtid_binlog_state`` with the source's (one more connection), which also
finds older ones. Either way they are named with their GTIDs.
"""
import re

from autoremedy.checks._mysql_server import server_from
from autoremedy.contract.result import CheckError, Metric, Result, Status

MANIFEST = {
    "name": "mysql-replication",
    "summary": "broken MySQL/MariaDB replication: the guarded repair over SQL",
    "check": "autoremedy.checks.mysql_replication:probe",
    "remediation": "autoremedy.remediations.mysql_replication",
    "scope": "api",
    "thresholds": ("300", "600"),
    "timeout": 10.0,
    "target_options": ("--server",),
    "order": 80,
    "sensu": [
        # One check per replica (mysql.servers name = remediations.mysql-replication target).
        {"name": "autoremedy-mysql-replication", "args": "--server db-replica-1",
         "subscriptions": ["autoremedy-central"], "hooks": [], "proxy": "db-replica-1", "target": "db-replica-1"},
    ],
    "zabbix": {
        "items": [
            {"template": "autoremedy MySQL replication",
             "key": "autoremedy_check[mysql-replication,--server,{$AR.MYSQL.SERVER}]", "severity": "HIGH",
             "kind": "EXTERNAL",
             "description": "MySQL/MariaDB replication threads, errors and lag of the replica {$AR.MYSQL.SERVER} "
                            "(mysql.servers)",
             "target": "{$AR.MYSQL.SERVER}"},
        ],
    },
    "stackstorm": {
        "order": 60,
        "description": "Broken MySQL/MariaDB replication: the guarded repair over SQL, verify, notify or escalate.",
        "status": [2],
        "check_args": "",
    },
}
NAME = MANIFEST["name"]

# IO-thread errors that mean "the primary is not there (now)": client errors 2002
# (socket), 2003 (refused), 2005 (unknown host), 2006 (gone away), 2013 (lost).
UNREACHABLE = frozenset({2002, 2003, 2005, 2006, 2013})
# Well-known errors, for the operator reading the summary at 3 a.m.
KNOWN = {
    1045: "access denied for the replication user",
    1062: "duplicate key",
    1032: "row not found (data drift)",
    1236: "the primary no longer has the binlogs the replica needs",
    1594: "relay log read failure",
    1595: "relay log write failure",
    1950: "GTID out of order (gtid_strict_mode)",
}
PRIVILEGE_HINT = ("the monitoring user needs REPLICATION CLIENT (MySQL) or "
                  "SLAVE MONITOR / REPLICA MONITOR (MariaDB 10.5+)")

# Finding kinds: stable words the remediation and the JSON output use.
IO_STOPPED, SQL_STOPPED = "io-stopped", "sql-stopped"
PRIMARY_UNREACHABLE, IO_ERROR, SQL_ERROR = "primary-unreachable", "io-error", "sql-error"
IO_CONNECTING, LAG, LAG_UNKNOWN, RELAY_SPACE = "io-connecting", "lag", "lag-unknown", "relay-log-space"
NOT_REPLICA, MISSING = "not-a-replica", "connection-missing"
WRITABLE, ERRANT = "writable", "errant-transactions"

_STATE = {"ok": Status.OK, "warning": Status.WARNING, "critical": Status.CRITICAL, "unknown": Status.UNKNOWN}


def add_arguments(parser):
    from autoremedy.clients import mysql
    from autoremedy.contract import units
    mysql.add_arguments(parser)
    parser.add_argument("--connection", action="append", default=[], metavar="NAME",
                        help="only this replication connection / channel (repeatable; '' is the default "
                             "one; default: all)")
    parser.add_argument("--spelling", choices=("auto", "slave", "replica"), default="auto",
                        help="SHOW SLAVE or SHOW REPLICA spelling (default: what the server prefers)")
    parser.add_argument("--lag-null", choices=("warning", "critical", "unknown"), default="warning",
                        help="state when both threads run but Seconds_Behind_Master is NULL (default warning)")
    parser.add_argument("--not-replica", choices=tuple(_STATE), default="critical",
                        help="state when the server has no replication configured (default critical)")
    parser.add_argument("--relay-log-space-warning", type=units.size, metavar="SIZE",
                        help="WARNING when the relay logs of a connection exceed SIZE (e.g. 5G)")
    parser.add_argument("--relay-log-space-critical", type=units.size, metavar="SIZE",
                        help="CRITICAL when the relay logs of a connection exceed SIZE")
    parser.add_argument("--require-read-only", action="store_true",
                        help="WARNING when the replica accepts writes (read_only=OFF): local writes cause drift")
    parser.add_argument("--source", metavar="SERVER",
                        help="the replica's source (a mysql.servers name or HOST:PORT, same login): "
                             "errant transactions are found by comparing both GTID states")
    parser.add_argument("--errant", choices=("warning", "critical", "ok"), default="critical",
                        help="state when the replica has errant transactions (default critical)")


# --- acquire -------------------------------------------------------------------

def status_statements(session, spelling="auto"):
    """The status statements to try, preferred first. MariaDB lists every
    multi-source connection only with SHOW ALL ...; MySQL lists every channel."""
    if session.flavour == "mariadb":
        slave, replica = "SHOW ALL SLAVES STATUS", "SHOW ALL REPLICAS STATUS"
        modern = session.version >= (10, 5, 1)
    else:
        slave, replica = "SHOW SLAVE STATUS", "SHOW REPLICA STATUS"
        modern = session.version >= (8, 0, 22)
    if spelling == "slave":
        return [slave]
    if spelling == "replica":
        return [replica]
    return [replica, slave] if modern else [slave, replica]


def read_status(session, spelling="auto"):
    """(statement used, [Channel]). Falls back to the other spelling only on a
    syntax error (1064): an old server that does not know the new words."""
    from autoremedy.clients.mysql import SQLError
    statements = status_statements(session, spelling)
    for i, statement in enumerate(statements):
        try:
            rows = session.rows(statement, hint=PRIVILEGE_HINT)
        except SQLError as exc:
            if exc.code == 1064 and i + 1 < len(statements):
                continue
            if exc.code in (1227, 1142, 1044, 1045):
                raise CheckError(f"permission denied: {exc}") from None
            raise
        return statement, [Channel(row) for row in rows]
    raise CheckError("no replication status statement worked")  # unreachable: the loop raises


def _renamed(key):
    # MySQL 8.0.22+ renamed Slave->Replica and Master->Source in the columns.
    if key == "Channel_Name":
        return "Connection_name"
    words = {"Replica": "Slave", "Source": "Master"}
    return "_".join(words.get(part, part) for part in key.split("_"))


class Channel:
    """One replication connection (MariaDB) or channel (MySQL), neutral names."""

    def __init__(self, row):
        raw = {_renamed(k): v for k, v in row.items()}
        self.raw = raw
        self.name = raw.get("Connection_name") or ""
        self.io = str(raw.get("Slave_IO_Running") or "No")
        self.sql = str(raw.get("Slave_SQL_Running") or "No")
        self.io_errno = int(raw.get("Last_IO_Errno") or 0)
        self.io_error = _clean(raw.get("Last_IO_Error"))
        self.sql_errno = int(raw.get("Last_SQL_Errno") or 0)
        self.sql_error = _clean(raw.get("Last_SQL_Error"))
        lag = raw.get("Seconds_Behind_Master")
        self.lag = None if lag in (None, "") else int(lag)
        self.relay_log_space = int(raw.get("Relay_Log_Space") or 0)
        self.io_state = _clean(raw.get("Slave_IO_State"))
        self.sql_state = _clean(raw.get("Slave_SQL_Running_State") or raw.get("Slave_SQL_State"))
        self.primary_host = raw.get("Master_Host") or ""
        self.primary_port = int(raw.get("Master_Port") or 0)
        self.sql_delay = int(raw.get("SQL_Delay") or 0)
        self.connect_retry = int(raw.get("Connect_Retry") or 0)
        # GTID: MariaDB positions, or MySQL sets.
        self.using_gtid = str(raw.get("Using_Gtid") or ("Yes" if str(raw.get("Auto_Position")) == "1" else "No"))
        self.gtid_io_pos = raw.get("Gtid_IO_Pos") or raw.get("Retrieved_Gtid_Set") or ""
        self.gtid_slave_pos = raw.get("Gtid_Slave_Pos") or raw.get("Executed_Gtid_Set") or ""
        self.relay_log_file = raw.get("Relay_Log_File") or ""
        self.relay_log_pos = int(raw.get("Relay_Log_Pos") or 0)
        self.exec_file = raw.get("Relay_Master_Log_File") or ""
        self.exec_pos = int(raw.get("Exec_Master_Log_Pos") or 0)
        self.read_file = raw.get("Master_Log_File") or ""
        self.read_pos = int(raw.get("Read_Master_Log_Pos") or 0)

    @property
    def primary(self):
        return f"{self.primary_host}:{self.primary_port}"

    @property
    def label(self):
        return "default" if self.name == "" else self.name

    def to_dict(self):
        return {"name": self.name, "io_running": self.io, "sql_running": self.sql,
                "last_io_errno": self.io_errno, "last_io_error": self.io_error,
                "last_sql_errno": self.sql_errno, "last_sql_error": self.sql_error,
                "seconds_behind_master": self.lag, "relay_log_space": self.relay_log_space,
                "io_state": self.io_state, "sql_state": self.sql_state, "primary": self.primary,
                "sql_delay": self.sql_delay, "using_gtid": self.using_gtid,
                "gtid_io_pos": self.gtid_io_pos, "gtid_slave_pos": self.gtid_slave_pos,
                "relay_log_file": self.relay_log_file, "relay_log_pos": self.relay_log_pos,
                "exec_master_log_file": self.exec_file, "exec_master_log_pos": self.exec_pos}

    def __repr__(self):
        return f"Channel({self.label!r}, io={self.io}, sql={self.sql}, lag={self.lag})"


def _clean(text):
    return " ".join(str(text or "").split())


def server_state(session):
    """GTID positions and read_only of the server (one SELECT of variables)."""
    from autoremedy.clients.mysql import SQLError
    if session.flavour == "mariadb":
        sql = ("SELECT @@global.gtid_binlog_pos AS gtid_binlog_pos, @@global.gtid_slave_pos AS gtid_slave_pos, "
               "@@global.gtid_current_pos AS gtid_current_pos, @@global.gtid_binlog_state AS gtid_binlog_state, "
               "@@global.read_only AS read_only, @@global.server_id AS server_id")
    else:
        sql = "SELECT @@global.gtid_executed AS gtid_executed, @@global.read_only AS read_only, " \
              "@@global.server_id AS server_id"
    try:
        return session.row(sql) or {}
    except SQLError:
        return {}   # an old server without GTID variables: the thread state still tells


def parse_gtid_list(text):
    """MariaDB GTID list '0-1-5,1-2-9' -> {domain: (server_id, seq)}."""
    out = {}
    for part in str(text or "").replace("\n", "").split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)-(\d+)-(\d+)", part)
        if match:
            domain, server_id, seq = (int(x) for x in match.groups())
            out[domain] = (server_id, seq)
    return out


def parse_gtid_state(text):
    """MariaDB ``@@gtid_binlog_state`` '0-1-5,0-2-3' -> {(domain, server_id): seq}
    (the last sequence number of every server in every domain)."""
    out = {}
    for part in str(text or "").replace("\n", "").split(","):
        match = re.fullmatch(r"(\d+)-(\d+)-(\d+)", part.strip())
        if match:
            domain, server_id, seq = (int(x) for x in match.groups())
            out[(domain, server_id)] = max(seq, out.get((domain, server_id), 0))
    return out


def domains_of(channel):
    """(replicated, ignored) GTID domains of a connection: replicated is None when
    the connection takes every domain but the ignored ones."""
    def ids(key):
        text = str(channel.raw.get(key) or "").strip()
        return {int(x) for x in re.findall(r"\d+", text)}
    do = ids("Replicate_Do_Domain_Ids")
    return (do or None), ids("Replicate_Ignore_Domain_Ids")


def in_domains(domain, domains):
    replicated, ignored = domains
    return domain not in ignored and (replicated is None or domain in replicated)


def errant_local(state):
    """GTIDs the replica wrote itself (its own server_id) after the last transaction
    it applied from its source in that domain: errant, seen from the replica alone."""
    own = int(state.get("server_id") or 0)
    applied = parse_gtid_list(state.get("gtid_slave_pos"))
    out = []
    for (domain, server_id), seq in sorted(parse_gtid_state(state.get("gtid_binlog_state")).items()):
        if server_id == own and seq > applied.get(domain, (0, 0))[1]:
            out.append(f"{domain}-{server_id}-{seq}")
    return out


def errant_against(replica_state, source_state, domains=(None, frozenset())):
    """GTIDs of the replica's binlog state that the source's state does not contain
    (per domain and server_id, the replica's last sequence number is beyond the
    source's), in the domains the connection replicates."""
    have = parse_gtid_state(source_state)
    out = []
    for (domain, server_id), seq in sorted(parse_gtid_state(replica_state).items()):
        if in_domains(domain, domains) and have.get((domain, server_id), -1) < seq:
            out.append(f"{domain}-{server_id}-{seq}")
    return out


def gtid_behind(channel):
    """Transactions received (IO thread) but not applied yet (MariaDB GTID), or None."""
    received = parse_gtid_list(channel.gtid_io_pos)
    applied = parse_gtid_list(channel.gtid_slave_pos)
    if not received:
        return None
    return sum(max(0, seq - applied.get(domain, (0, 0))[1]) for domain, (_, seq) in received.items())


# --- evaluate ------------------------------------------------------------------------

class Finding:
    """One thing wrong with one connection."""

    def __init__(self, status, kind, text, channel=None, errno=0):
        self.status, self.kind, self.text = status, kind, text
        self.channel, self.errno = channel, errno

    def to_dict(self):
        return {"status": self.status.name, "kind": self.kind, "text": self.text,
                "connection": None if self.channel is None else self.channel.name, "errno": self.errno}

    def __repr__(self):
        return f"Finding({self.status.name}, {self.kind}, {self.text!r})"


def describe_error(errno, text):
    known = KNOWN.get(errno)
    head = f"error {errno}" + (f" ({known})" if known else "")
    return f"{head}: {text}" if text else head


def diagnose(channel, lag_null="warning"):
    """Findings for the thread states of one connection (lag thresholds are metrics)."""
    found = []
    if channel.io != "Yes":
        if channel.io_errno in UNREACHABLE:
            found.append(Finding(Status.CRITICAL, PRIMARY_UNREACHABLE,
                                 f"IO thread cannot reach the primary {channel.primary}: "
                                 f"{describe_error(channel.io_errno, channel.io_error)}", channel, channel.io_errno))
        elif channel.io_errno:
            found.append(Finding(Status.CRITICAL, IO_ERROR, f"IO thread stopped by "
                                 f"{describe_error(channel.io_errno, channel.io_error)}", channel, channel.io_errno))
        elif channel.io == "Connecting":
            found.append(Finding(Status.WARNING, IO_CONNECTING,
                                 f"IO thread connecting to {channel.primary}", channel))
        else:
            found.append(Finding(Status.CRITICAL, IO_STOPPED, "IO thread stopped (no error)", channel))
    if channel.sql != "Yes":
        if channel.sql_errno:
            found.append(Finding(Status.CRITICAL, SQL_ERROR, f"SQL thread stopped by "
                                 f"{describe_error(channel.sql_errno, channel.sql_error)}", channel, channel.sql_errno))
        else:
            found.append(Finding(Status.CRITICAL, SQL_STOPPED, "SQL thread stopped (no error)", channel))
    if channel.io == "Yes" and channel.sql == "Yes" and channel.lag is None:
        found.append(Finding(_STATE[lag_null], LAG_UNKNOWN,
                             "lag unknown: Seconds_Behind_Master is NULL with both threads running", channel))
    return found


def _prefix(channel):
    """Metric labels: 'lag' for the default connection, 'east.lag' for a named one."""
    return f"{channel.name}." if channel.name else ""


def judge(channels, args, state=None, wanted=None, errant=None):
    """Result for the connections read from the server. ``errant``: the errant
    GTIDs already computed against the source (None: judge from the replica alone)."""
    state = state or {}
    findings, metrics, details = [], [], []
    for channel in channels:
        prefix = _prefix(channel)
        findings.extend(diagnose(channel, args.lag_null))
        lag = Metric(prefix + "lag", channel.lag, "s", args.warning, args.critical, min=0)
        metrics.append(lag)
        bad = lag.violated()
        if bad is not None:
            word = "crit" if bad is lag.crit else "warn"
            findings.append(Finding(lag.status, LAG, f"lag {channel.lag}s ({word} {bad.describe()}); "
                                    f"SQL thread: {channel.sql_state or 'no state'}", channel))
        space = Metric(prefix + "relay_log_space", channel.relay_log_space, "B",
                       args.relay_log_space_warning, args.relay_log_space_critical, min=0)
        metrics.append(space)
        if space.violated() is not None:
            from autoremedy.contract import units
            findings.append(Finding(space.status, RELAY_SPACE, f"relay logs hold "
                                    f"{units.human_size(channel.relay_log_space)}", channel))
        behind = gtid_behind(channel)
        if behind is not None:
            metrics.append(Metric(prefix + "gtid_behind", behind, "", min=0))
        metrics.append(Metric(prefix + "io_running", 1 if channel.io == "Yes" else 0, "", min=0, max=1))
        metrics.append(Metric(prefix + "sql_running", 1 if channel.sql == "Yes" else 0, "", min=0, max=1))
        metrics.append(Metric(prefix + "last_io_errno", channel.io_errno, "", min=0))
        metrics.append(Metric(prefix + "last_sql_errno", channel.sql_errno, "", min=0))
        details.append(_detail(channel))
    for name in wanted or ():
        if name not in {c.name for c in channels}:
            findings.append(Finding(Status.CRITICAL, MISSING,
                                    f"replication connection {name or 'default'!r} is not configured"))
    if args.require_read_only and str(state.get("read_only", "1")) in ("0", "OFF"):
        findings.append(Finding(Status.WARNING, WRITABLE, "the replica accepts writes (read_only=OFF)"))
    if errant is not None:
        metrics.append(Metric("errant_transactions", len(errant), "", min=0))
        if errant and getattr(args, "errant", "critical") != "ok":
            shown = ", ".join(errant[:10]) + (f" and {len(errant) - 10} more" if len(errant) > 10 else "")
            findings.append(Finding(_STATE[getattr(args, "errant", "critical")], ERRANT,
                                    f"errant transactions on the replica (not from its source): {shown}"))
    return findings, metrics, details


def _detail(channel):
    parts = [f"[{channel.label}] primary {channel.primary}", f"IO {channel.io}", f"SQL {channel.sql}",
             f"lag {'NULL' if channel.lag is None else str(channel.lag) + 's'}"]
    if channel.using_gtid not in ("No", ""):
        parts.append(f"GTID received {channel.gtid_io_pos or '-'} applied {channel.gtid_slave_pos or '-'}")
    else:
        parts.append(f"executed {channel.exec_file}:{channel.exec_pos}")
    if channel.sql_delay:
        parts.append(f"SQL_Delay {channel.sql_delay}s")
    if channel.io_errno:
        parts.append(f"last IO error {channel.io_errno}: {channel.io_error}")
    if channel.sql_errno:
        parts.append(f"last SQL error {channel.sql_errno}: {channel.sql_error}")
    return ", ".join(parts)


def summarise(findings, channels):
    if findings:
        worst_first = sorted(findings, key=lambda f: _rank(f.status), reverse=True)
        many = len(channels) > 1
        texts = []
        for f in worst_first:
            label = f"[{f.channel.label}] " if many and f.channel is not None else ""
            texts.append(label + f.text)
        return "; ".join(texts)
    parts = []
    for c in channels:
        gtid = f", GTID {c.gtid_slave_pos}" if c.gtid_slave_pos and c.using_gtid not in ("No", "") else ""
        head = f"[{c.label}] " if len(channels) > 1 else ""
        parts.append(f"{head}replicating from {c.primary}, lag {c.lag}s{gtid}")
    return "; ".join(parts)


def _rank(status):
    return {Status.OK: 0, Status.WARNING: 1, Status.UNKNOWN: 2, Status.CRITICAL: 3}[status]


# --- the check --------------------------------------------------------------------------

def read(args, session):
    statement, channels = read_status(session, args.spelling)
    wanted = args.connection or None
    if wanted is not None:
        channels = [c for c in channels if c.name in wanted]
    state = server_state(session)
    if session.flavour == "mariadb" and state.get("gtid_slave_pos") is not None:
        # The Gtid_Slave_Pos column follows gtid_current_pos (it shows the replica's
        # own local writes); what was *applied from the primary* is @@gtid_slave_pos.
        for channel in channels:
            channel.gtid_slave_pos = state["gtid_slave_pos"]
    return statement, channels, state, wanted


def probe(config, args):
    """The seam (autoremedy/contract/checkrun.py)."""
    from autoremedy.clients import mysql
    server = server_from(config, args)
    with mysql.connect(server, timeout=args.timeout) as session:
        source = None
        if getattr(args, "source", None):
            source = lambda: mysql.connect(source_server(config, args, server), timeout=args.timeout)  # noqa: E731
        return evaluate(args, session, source)


def source_server(config, args, replica):
    """The --source SERVER: a mysql.servers name, or HOST:PORT with the replica's login."""
    text = args.source
    match = re.fullmatch(r"\[?([^\]]+?)\]?:(\d+)", text)
    if match is None:
        return server_from(config, _with(args, server=text, host=None, port=None, socket=None))
    source = server_from(config, _with(args, server=None, host=match.group(1), port=int(match.group(2)),
                                       socket=None))
    if not args.defaults_file and replica.user:
        source.user, source.password = replica.user, replica.password
    return source


def _with(args, **changes):
    import argparse
    return argparse.Namespace(**{**vars(args), **changes})


def errant_with_source(state, channels, source_session):
    """Errant GTIDs against the source's binlog state (MariaDB), in the domains of
    the connection that replicates from it (the only one, or the one whose
    address is the source's port)."""
    theirs = source_session.row("SELECT @@global.gtid_binlog_state AS s, @@global.port AS port") or {}
    channel = channels[0] if len(channels) == 1 else next(
        (c for c in channels if c.primary_port == int(theirs.get("port") or 0)), None)
    domains = domains_of(channel) if channel is not None else (None, frozenset())
    return errant_against(state.get("gtid_binlog_state"), theirs.get("s"), domains)


def evaluate(args, session, source=None):
    """The Result for an open session (the remediation verifies through this too).
    ``source``: a callable opening a session to the replica's source, for the
    errant-transaction comparison."""
    statement, channels, state, wanted = read(args, session)
    where = session.server.describe()
    data = {"server": where, "flavour": f"{session.flavour} {session.version_string}",
            "statement": statement, "gtid": {k: v for k, v in state.items() if k.startswith("gtid")},
            "read_only": state.get("read_only")}
    if not channels and not wanted:
        return Result(NAME, f"not a replica: {statement} returned nothing (replication is not configured "
                      f"on {where})", status=_STATE[args.not_replica],
                      data={**data, "connections": [], "findings": [{"kind": NOT_REPLICA}]})
    errant = None
    if session.flavour == "mariadb" and state.get("gtid_binlog_state") is not None:
        if source is not None:
            with source() as theirs:
                errant = errant_with_source(state, channels, theirs)
        else:
            errant = errant_local(state)
    data["errant"] = errant
    findings, metrics, details = judge(channels, args, state, wanted, errant)
    status = Status.OK
    for finding in findings:
        status = status.worse(finding.status)
    for metric in metrics:
        status = status.worse(metric.status)
    data["connections"] = [c.to_dict() for c in channels]
    data["findings"] = [f.to_dict() for f in findings]
    return Result(NAME, summarise(findings, channels), status=status, metrics=metrics,
                  details=details, data=data)


def discover(config, args):
    """Zabbix LLD: one row per replication connection / channel."""
    from autoremedy.clients import mysql
    server = server_from(config, args)
    with mysql.connect(server, timeout=args.timeout) as session:
        _, channels = read_status(session, args.spelling)
    return [{"{#MYSQL.CONNECTION}": c.name, "{#MYSQL.PRIMARY}": c.primary} for c in channels]
