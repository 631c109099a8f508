"""Resync: rebuild a MariaDB GTID replica's data from its source, the whole GTID domain or nothing.

Why "the whole domain": after the load, ``gtid_slave_pos`` jumps to the dump's
position for the *domain*, so every database written in that domain and left
out of the dump silently loses the transactions between the replica's old
position and the dump's. A subset is therefore refused, naming the databases
that share the domain (``databases: ['*']`` takes every database of the source).

The procedure (every command listed in the plan and the dry-run):

1. dump from the source *while the replica still runs* (a source that dies now
   leaves the replica exactly as found): ``mariadb-dump --single-transaction
   --gtid --master-data=2 --add-drop-database --routines --triggers
   --skip-events --databases …`` (no global read lock: InnoDB snapshot), then the
   events alone; the dump must end with "Dump completed" and carry its position;
2. rewrite each event's status so that a replica never runs what its source
   runs: the status the replica had (``SLAVESIDE_DISABLED`` stays), or for a new
   event what replication would give it (``ENABLE`` becomes ``DISABLE ON SLAVE``);
3. stop the connection (and every other one: ``gtid_slave_pos`` can only be set
   with all of them stopped), and the connections of the planned downstream
   replicas;
4. load both files with ``sql_log_bin=0`` (no replica-local GTIDs: they would
   trip ``gtid_strict_mode`` later), set ``gtid_slave_pos`` to the dump's position
   (other domains kept);
5. planned downstream replicas: the middle replica's binlog restarts at the
   dump's position (``RESET MASTER``; ``SET GLOBAL gtid_binlog_state``), each
   downstream replica gets the same load and position;
6. start what was running; the comparison step then compares every table of the
   domain's databases with the source at a consistent position.

Files live in ``<state_dir>/mysql/resync/<target>/`` (0700) and are removed on
every path; logins reach the tools in 0600 option files, never argv.
"""
import contextlib
import os
import re

from autoremedy.clients import mysql
from autoremedy.contract.remediation import RemediationError

from autoremedy.checks import mysql_replication as check

STATUS_WORDS = {"ENABLED": b"ENABLE", "DISABLED": b"DISABLE", "SLAVESIDE_DISABLED": b"DISABLE ON SLAVE"}
_EVENTS = re.compile(rb"^USE `((?:[^`]|``)+)`;|"
                     rb"(/\*!50106 EVENT `((?:[^`]|``)+)` ON SCHEDULE .*? ON COMPLETION (?:NOT )?PRESERVE )"
                     rb"(ENABLE|DISABLE ON SLAVE|DISABLE)\b", re.M | re.S)


# --- which databases ---------------------------------------------------------------------------

def replicated_databases(channel, databases):
    """The databases of ``databases`` the connection replicates (Replicate_Do_DB /
    Replicate_Ignore_DB on the replica; wildcard table filters are not read, so
    they count as replicated: the safe side)."""
    def names(key):
        return {n.strip() for n in str(channel.raw.get(key) or "").split(",") if n.strip()}
    do, ignore = names("Replicate_Do_DB"), names("Replicate_Ignore_DB")
    return [d for d in databases if d not in ignore and (not do or d in do)]


def domain_databases(source_session, channel):
    """Every database of the source the connection replicates: the GTID domain's."""
    from autoremedy.remediations import _replication_compare as compare
    return replicated_databases(channel, compare.user_databases(source_session))


def left_out(configured, domain):
    """Databases of the domain a configured subset leaves out ([] for '*')."""
    if "*" in configured:
        return []
    return sorted(set(domain) - set(configured))


def chosen(configured, domain):
    return sorted(domain) if "*" in configured else sorted(configured)


# --- event states ---------------------------------------------------------------------------------

def event_states(session, databases=None):
    """{'db.event': STATUS} of the server's events (of ``databases`` when given)."""
    rows = session.rows("SELECT EVENT_SCHEMA AS db, EVENT_NAME AS e, STATUS AS s FROM information_schema.EVENTS")
    return {f"{r['db']}.{r['e']}": r["s"] for r in rows if databases is None or r["db"] in databases}


def rewrite_events(data, before):
    """The events dump with each CREATE EVENT's status set for a replica: the status
    it had there (``before``: {'db.event': STATUS}), else ENABLE -> DISABLE ON SLAVE.
    Returns (bytes, count of events rewritten)."""
    out, last, db, count = [], 0, None, 0
    for match in _EVENTS.finditer(data):
        if match.group(1) is not None:
            db = match.group(1).replace(b"``", b"`").decode()
            continue
        name = match.group(3).replace(b"``", b"`").decode()
        had = before.get(f"{db}.{name}")
        word = STATUS_WORDS[had] if had in STATUS_WORDS else (
            b"DISABLE ON SLAVE" if match.group(4) == b"ENABLE" else match.group(4))
        out.append(data[last:match.start(4)])
        out.append(word)
        last = match.end(4)
        count += 1
    out.append(data[last:])
    return b"".join(out), count


# --- the work directory ------------------------------------------------------------------------------

def workdir(state_dir, target):
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(target))
    return os.path.join(state_dir, "mysql", "resync", safe)


def fresh_workdir(parent, name):
    """The empty 0700 directory ``name`` of ours in the verified ``parent``
    (safefs.Dir), returned open: a leftover of a crashed run is emptied; a
    directory someone else owns is refused (root must not follow a path a less
    trusted user planted). The run works in it through its pinned path, so no
    component above it renamed or swapped for a link later redirects a tool."""
    from autoremedy import safefs
    try:
        work = parent.subdir(name, create=True, private=True)
    except safefs.Refused as exc:
        raise RemediationError(f"{exc.path} is not a directory of ours ({exc.why}): "
                               "refusing to write a dump there") from None
    try:
        for entry in work.listdir():
            try:
                work.unlink(entry)
            except IsADirectoryError:
                work.rmtree(entry)
    except BaseException:
        work.close()
        raise
    return work


# --- the commands -----------------------------------------------------------------------------------------

def dump_argv(tool, cnf, address, databases):
    return [tool, f"--defaults-file={cnf}", *address, "--single-transaction", "--gtid", "--master-data=2",
            "--add-drop-database", "--routines", "--triggers", "--skip-events", "--result-file=dump.sql",
            "--databases", *databases]


def events_argv(tool, cnf, address, databases):
    return [tool, f"--defaults-file={cnf}", *address, "--no-data", "--no-create-info", "--no-create-db",
            "--skip-triggers", "--skip-routines", "--events", "--result-file=events.sql", "--databases", *databases]


def load_argv(tool, cnf, address, name):
    return [tool, f"--defaults-file={cnf}", *address, "--batch", "--init-command=SET SESSION sql_log_bin=0",
            f"--execute=source {name}"]


def address_argv(server):
    if server.socket:
        return [f"--socket={server.socket}"]
    return ["--protocol=TCP", f"--host={server.host}", f"--port={server.port}"]


def commands(replica, source, downstream, name, databases, directory, session):
    """Every command of the resync, in order, for the plan and the dry-run."""
    from autoremedy.remediations import _replication_sql as sql
    dump, client = sql.tool("mariadb-dump", "mysqldump"), sql.tool("mariadb", "mysql")
    src = address_argv(source)
    # Every file by its name in the work directory, the tools' working directory: the
    # run gives them exactly these argv (its directory pinned, safefs.pinned_path).
    lines = [" ".join(dump_argv(dump, "source.cnf", src, databases)) + f"   (in {directory})",
             " ".join(events_argv(dump, "source.cnf", src, databases)),
             "rewrite events.sql: each event's status as the replica had it; a new ENABLE event -> DISABLE ON SLAVE"]
    for server, conn in downstream:
        lines.append(f"{server.describe()}: {sql.thread_statement(session, 'STOP', conn)}")
    lines.append(f"{replica.describe()}: {sql.thread_statement(session, 'STOP', name)} "
                 "(and every other running connection)")
    for server in [replica] + [s for s, _ in downstream]:
        for file in ("dump.sql", "events.sql"):
            lines.append(" ".join(load_argv(client, _cnf_name(server, replica), address_argv(server), file)))
    lines.append(f"{replica.describe()}: SET GLOBAL gtid_slave_pos = '<the dump's position, other domains kept>'")
    if downstream:
        lines.append(f"{replica.describe()}: RESET MASTER; SET GLOBAL gtid_binlog_state = '<the dump's position, "
                     "other domains kept>'")
    for server, conn in downstream:
        lines.append(f"{server.describe()}: SET GLOBAL gtid_slave_pos = '<the dump's position>'; "
                     f"{sql.thread_statement(session, 'START', conn)}")
    lines.append(f"{replica.describe()}: {sql.thread_statement(session, 'START', name)} (and the others it stopped)")
    return lines


def _cnf_name(server, replica):
    return "replica.cnf" if server is replica else f"downstream-{server.port or 'socket'}.cnf"


def resync_procedure(primary, replica, name, databases):
    """The exact commands a human runs to rebuild this replica's data from the primary."""
    def address(server):
        if server is None:
            return "-h <primary> -P <port>"
        return f"-S {server.socket}" if server.socket else f"-h {server.host} -P {server.port}"
    conn = f"'{name}'"
    dbs = " ".join(databases)
    return [
        "list every database of the GTID domain (a subset loses the others' transactions)",
        f"mariadb-dump --defaults-file=<primary login .cnf> {address(primary)} --single-transaction --gtid "
        f"--master-data=2 --add-drop-database --routines --triggers --skip-events --databases {dbs} > resync.sql",
        f"mariadb-dump ... --no-data --no-create-info --no-create-db --events --databases {dbs} > events.sql; "
        "edit each CREATE EVENT: ENABLE -> DISABLE ON SLAVE",
        f"on the replica ({replica.describe()}): STOP SLAVE {conn};",
        f"mariadb --defaults-file=<replica login .cnf> {address(replica)} "
        "--init-command='SET SESSION sql_log_bin=0' < resync.sql (then < events.sql)",
        "take the position from the dump's line \"-- SET GLOBAL gtid_slave_pos='...'\"; with every replication "
        "connection stopped: SET GLOBAL gtid_slave_pos='<that position, keeping other domains>';",
        f"START SLAVE {conn}; then compare every table with the source at one GTID position",
        "replicas of this replica need the same load (their data is not binlogged by it)",
        "or let autoremedy do it: remediations.mysql-replication.targets.<target>.resync.allowed: true",
    ]


# --- the run -----------------------------------------------------------------------------------------------

class Resync:
    """One resync of ``channel`` of the target's replica from its source; the
    downstream replicas [(Server, connection name)] get the same data."""

    def __init__(self, rem, target, channel, databases, downstream=()):
        self.rem, self.target = rem, target
        self.name, self.domains = channel.name, check.domains_of(channel)
        self.databases = list(databases)
        self.downstream = list(downstream)
        self.replica = rem.server(target)
        self.source = rem.source_server(target, channel.name)
        self.dir = workdir(rem.config.state_dir, target)   # as the plan names it
        self.work = None        # the same directory, pinned (safefs.pinned_path) while the run holds it
        self.timeout = rem.entry(target)["resync"]["timeout"]
        self.position = None
        self.stopped = []           # [(server, connection)] to start again

    def run(self):
        from autoremedy import safefs
        parent_path, name = os.path.split(self.dir)
        # Root's own, 0700, made without following anything planted, and held open
        # from here to the removal: every path the run and its tools use is the
        # pinned one (mysql/ sits in the group's state directory).
        with safefs.open_dir(parent_path, create=True, private=True) as parent:
            work = fresh_workdir(parent, name)
            try:
                self.work = safefs.pinned_path(work)
                size = self._resync()
            finally:
                work.close()
                with contextlib.suppress(OSError):
                    parent.rmtree(name)       # the dump and the logins, on every path
        if self.rem.audit is not None:
            self.rem.audit.record("mysql-replication", "ok", action="resync", cls=self.rem.name,
                                  target=self.target, connection=self.name, databases=self.databases,
                                  gtid=self.position, dump_bytes=size,
                                  downstream=[s.describe() for s, _ in self.downstream])
        extra = f" and {', '.join(s.describe() for s, _ in self.downstream)}" if self.downstream else ""
        return (f"resynced {', '.join(self.databases)} ({size} bytes) from {self.source.describe()} at GTID "
                f"{self.position} into {self.replica.describe()}{extra}; replication started again")

    def _resync(self):
        """Dump, stop, load, set the positions, start again; the dump's size."""
        with mysql.connect(self.replica) as session:
            before = event_states(session, self.databases)
        # Nothing is stopped until the dump is complete: a source that dies now
        # leaves the replica exactly as it was found.
        self._dump(before)
        try:
            self._stop()
        except Exception:
            self._start_again()
            raise
        try:
            self._load_all()
        except Exception as exc:
            raise RemediationError(
                f"{exc}; the load was interrupted: databases {', '.join(self.databases)} on "
                f"{self.replica.describe()} may be partly loaded, so replication stays stopped "
                "(resync again)") from None
        self._set_positions()
        self._start_again()
        return os.path.getsize(os.path.join(self.work, "dump.sql"))

    def _tool_run(self, argv, what):
        done = self.rem.runner(argv, timeout=self.timeout, cwd=self.work)
        if done.returncode != 0:
            raise RemediationError(f"{what}: exit {done.returncode}: {done.brief()}")

    def _dump(self, before):
        from autoremedy.remediations import _replication_sql as sql
        cnf, address = _option_file(self.source, self.work, "source.cnf")
        tool = sql.tool("mariadb-dump", "mysqldump")
        self._tool_run(dump_argv(tool, cnf, address, self.databases), "dump from the source")
        dump = os.path.join(self.work, "dump.sql")
        if not sql.dump_complete(dump):
            raise RemediationError(f"the dump from {self.source.describe()} is incomplete (no \"Dump completed\"): "
                                   "nothing was loaded")
        full = sql.dump_position(dump)
        if not full:
            raise RemediationError("the dump has no gtid_slave_pos line: unusable for GTID replication; "
                                   "nothing was loaded")
        # Only the domains this connection replicates: another connection's domain
        # keeps its own position.
        self.position = sql.gtid_text({d: g for d, g in check.parse_gtid_list(full).items()
                                       if check.in_domains(d, self.domains)})
        self._tool_run(events_argv(tool, cnf, address, self.databases), "dump the events from the source")
        path = os.path.join(self.work, "events.sql")
        with open(path, "rb") as handle:
            data, count = rewrite_events(handle.read(), before)
        with mysql.connect(self.source) as source:
            expected = len(event_states(source, self.databases))
        if count < expected:
            raise RemediationError(f"events.sql: {count} of {expected} events could be set to a replica's "
                                   "status: nothing was loaded")
        with open(path, "wb") as handle:
            handle.write(data)

    def _stop(self):
        """Stop the downstream connections, then every running connection of the
        replica (``gtid_slave_pos`` is set only with all of them stopped)."""
        from autoremedy.remediations import _replication_sql as sql
        for server, conn in self.downstream:
            with mysql.connect(server) as session:
                session.execute(sql.thread_statement(session, "STOP", conn))
                self.stopped.append((server, conn))
        with mysql.connect(self.replica) as session:
            for channel in check.read_status(session)[1]:
                if channel.name == self.name or channel.io != "No" or channel.sql == "Yes":
                    session.execute(sql.thread_statement(session, "STOP", channel.name))
                    self.stopped.append((self.replica, channel.name))

    def _start_again(self):
        """Start what was stopped: the replica first, then the ones below it."""
        from autoremedy.remediations import _replication_sql as sql
        errors = []
        for server, conn in sorted(self.stopped, key=lambda sc: sc[0] is not self.replica):
            try:
                with mysql.connect(server) as session:
                    session.execute(sql.thread_statement(session, "START", conn))
            except mysql.SQLError as exc:
                errors.append(str(exc))
        self.stopped = []
        if errors:
            raise RemediationError("could not start replication again: " + "; ".join(errors))

    def _load_all(self):
        from autoremedy.remediations import _replication_sql as sql
        client = sql.tool("mariadb", "mysql")
        for server in [self.replica] + [s for s, _ in self.downstream]:
            cnf, address = _option_file(server, self.work, _cnf_name(server, self.replica))
            for file in ("dump.sql", "events.sql"):
                self._tool_run(load_argv(client, cnf, address, file), f"load {file} into {server.describe()}")

    def _set_positions(self):
        from autoremedy.remediations import _replication_sql as sql
        with mysql.connect(self.replica) as session:
            current = session.value("SELECT @@global.gtid_slave_pos")
            session.execute("SET GLOBAL gtid_slave_pos = %s", (sql.merged_position(current, self.position),))
            if self.downstream:
                # The downstream replicas continue from the dump's position in this
                # replica's binlog: it restarts there (they were all stopped above).
                state = check.parse_gtid_state(session.value("SELECT @@global.gtid_binlog_state"))
                dumped = check.parse_gtid_list(self.position)
                kept = {k: n for k, n in state.items() if k[0] not in dumped}
                kept.update({(d, s): n for d, (s, n) in dumped.items()})
                session.execute("RESET MASTER")
                session.execute("SET GLOBAL gtid_binlog_state = %s",
                                (",".join(f"{d}-{s}-{n}" for (d, s), n in sorted(kept.items())),))
        for server, conn in self.downstream:
            with mysql.connect(server) as session:
                current = session.value("SELECT @@global.gtid_slave_pos")
                session.execute("SET GLOBAL gtid_slave_pos = %s", (sql.merged_position(current, self.position),))


def _option_file(server, directory, name):
    """mysql.client_option_file under a fixed name in ``directory``, returned as that
    name: the tools run there, and the dry-run shows the same argv."""
    path, address = mysql.client_option_file(server, directory)
    os.replace(path, os.path.join(directory, name))
    return name, address
