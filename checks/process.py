"""Dead process: count the processes that match a selector and judge the count.

    $ autoremedy check process --name nova-compute
    PROCESS OK: 1 process matching name nova-compute | 'count'=1;;1:;0 'rss'=104857600B;;;0 'cpu'=12.5c

Selectors (one is required): ``--name`` (the process name or the basename of
argv[0], exactly, like ``pidof``), ``--cmdline REGEX`` (anchored: it must match
the daemon's own command line from its start — argv[0] as given or by its
basename, or the script an interpreter runs — so a ``tail -f`` of the daemon's
log or an editor on its configuration never counts), ``--pidfile FILE`` (the
pid counts only if that process started before the pid file was written — else
the pid was reused — is not pid 1, and matches ``--exe``/``--user`` when
given), ``--unit UNIT`` (systemd), or ``--watch NAME`` (an entry of
``checks.process.watch`` in the configuration, which is what the Zabbix
template uses: agent parameters cannot carry regexes). A process stopped (T),
stuck in uninterruptible sleep (D, on three readings) or a zombie (Z) is
reported as such and not counted as running. The default thresholds are
CRITICAL below one process (``-c 1:``). docs/process.md has the details.
"""
import os
import re

from autoremedy.contract.result import CheckError, Metric, Result

MANIFEST = {
    "name": "process",
    "summary": "a dead process: restart it on its node",
    "check": "autoremedy.checks.process:probe",
    "remediation": "autoremedy.remediations.process",
    "scope": "node",
    "thresholds": (None, "1:"),
    "timeout": 10.0,
    # The options that name the one target of a check (`check batch` tags its rows with it).
    "target_options": ("--watch",),
    # The order of this class in the generated Sensu checks and Zabbix agent parameters.
    "order": 10,
    # packaging/sensu/definitions.py: one Sensu check per watched process; the hook
    # remediates the target (a key of remediations.process.targets).
    "sensu": [
        {"name": "autoremedy-process-nova-compute", "args": "--watch nova-compute", "subscriptions": ["compute"],
         "hooks": ["critical"], "target": "nova-compute"},
        {"name": "autoremedy-process-neutron-ovs-agent", "args": "--watch neutron-openvswitch-agent",
         "subscriptions": ["compute", "network"], "hooks": ["critical"], "target": "neutron-openvswitch-agent"},
        {"name": "autoremedy-process-libvirtd", "args": "--watch libvirtd", "subscriptions": ["compute"],
         "hooks": ["critical"], "target": "libvirtd"},
    ],
    # packaging/zabbix: the "autoremedy node" template watches each process through its
    # discovery rule (template.py process_rule); the agent parameters behind it.
    "zabbix": {
        "agent_comment": "Dead process: one watched process (an entry of checks.process.watch).",
        "userparameters": [
            ("autoremedy.process.discovery", "/usr/bin/autoremedy check process --discover"),
            ("autoremedy.process[*]",
             '/usr/bin/autoremedy check process --watch "$1" --format zabbix --timeout 2.5'),
        ],
    },
    # packaging/stackstorm/autoremedy/rules/process.yaml
    "stackstorm": {
        "order": 10,
        "description": "A dead process: restart it on its node, verify, notify or escalate.",
        "status": [2],
        "check_args": "--watch {{ trigger.body.event.labels.autoremedy_target }}",
    },
}
NAME = MANIFEST["name"]


def add_arguments(parser):
    sel = parser.add_argument_group("selector (one of)")
    sel.add_argument("--name", help="exact process name (or basename of argv[0])")
    sel.add_argument("--cmdline", metavar="REGEX", help="regular expression searched in the command line")
    sel.add_argument("--pidfile", metavar="FILE", help="pid file of the daemon")
    sel.add_argument("--unit", help="systemd unit (counts the processes of its cgroup)")
    sel.add_argument("--watch", metavar="NAME", help="an entry of checks.process.watch in the configuration")
    parser.add_argument("--user", help="only processes of this user")
    parser.add_argument("--exe", metavar="PROGRAM",
                        help="with --pidfile: the pid counts only if it runs PROGRAM "
                             "(/proc/PID/exe or the basename of argv[0])")
    parser.add_argument("--zombies", action="store_true", help="WARNING when a matching process is a zombie")
    parser.add_argument("--max-restarts", type=int, metavar="N",
                        help="with --unit: WARNING when systemd restarted it more than N times")


# --- acquire -------------------------------------------------------------------

def _ancestors():
    """Our pid and our parents': the check's own command line (and the `sh -c`
    the monitor wraps it in) contains the --cmdline pattern and must not count."""
    import psutil
    pids = {os.getpid()}
    try:
        proc = psutil.Process()
        for parent in proc.parents():
            pids.add(parent.pid)
    except psutil.Error:
        pass
    return pids


def scan(match, user=None, table=None):
    """Processes for which ``match(name, argv)`` is true, as psutil.Process objects.

    On Linux the scan reads /proc/<pid>/comm and cmdline itself and builds a
    psutil.Process only for the matches: psutil.process_iter() builds one object
    per process and reads each stat file twice, which made the whole check ~1.5x
    slower on a node with a hundred processes (bench/bench_node.py). Elsewhere,
    psutil does the scan. ``table``: a ProcTable read already (check batch
    shares one among its process checks)."""
    import psutil
    skip = _ancestors()
    uid = _uid(user) if user else None
    if os.path.isdir("/proc/self"):
        pids = _proc_scan(match, uid, skip, table)
    else:
        pids = _psutil_scan(match, user, skip)
    found = []
    for pid in pids:
        try:
            found.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    return found


def _uid(user):
    import pwd
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        raise CheckError(f"no such user {user!r}") from None


def _read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:           # gone, or a kernel thread / hidepid denies it
        return None


class ProcTable:
    """One reading of /proc: each process's name, its owner and (on demand, then
    kept) its argv. `check batch` gives one to all its process checks, so N
    watched processes cost one pass over /proc, not N (bench/bench_packaging.py);
    the states, memory and CPU of the matches are still read live."""

    def __init__(self):
        self._rows = None
        self._argv = {}

    def rows(self):
        """[(pid, DirEntry, name)] of every process whose name could be read."""
        if self._rows is None:
            rows = []
            with os.scandir("/proc") as entries:
                for entry in entries:
                    if not entry.name.isdigit():
                        continue
                    pid = int(entry.name)
                    comm = _read(f"/proc/{pid}/comm")
                    if comm is not None:
                        rows.append((pid, entry, comm.rstrip(b"\n").decode("utf-8", "replace")))
            self._rows = rows
        return self._rows

    def argv(self, pid):
        if pid not in self._argv:
            self._argv[pid] = _argv(pid)
        return self._argv[pid]


def _proc_scan(match, uid, skip, table=None):
    if table is None:
        return _proc_scan_once(match, uid, skip)
    pids = []
    for pid, entry, name in table.rows():
        if pid in skip or (uid is not None and not _owned(entry, uid)):
            continue
        if match(name, lambda pid=pid: table.argv(pid)):
            pids.append(pid)
    return pids


def _owned(entry, uid):
    try:
        return entry.stat().st_uid == uid     # DirEntry keeps the stat it made
    except OSError:
        return False


def _proc_scan_once(match, uid, skip):
    """One check's own pass: skips a process before reading anything of it when it can."""
    pids = []
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            if pid in skip or (uid is not None and not _owned(entry, uid)):
                continue
            comm = _read(f"/proc/{pid}/comm")
            if comm is None:
                continue
            name = comm.rstrip(b"\n").decode("utf-8", "replace")
            if match(name, lambda pid=pid: _argv(pid)):
                pids.append(pid)
    return pids


def _argv(pid):
    raw = _read(f"/proc/{pid}/cmdline") or b""
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def _psutil_scan(match, user, skip):
    import psutil
    attrs = ["name", "cmdline"] + (["username"] if user else [])
    pids = []
    for proc in psutil.process_iter(attrs):
        info = proc.info
        if proc.pid in skip or (user and info.get("username") != user):
            continue
        if match(info.get("name") or "", lambda info=info: info.get("cmdline") or []):
            pids.append(proc.pid)
    return pids


def by_name(name):
    """pidof semantics: the process name, or the basename of argv[0], exactly
    (the kernel truncates the name to 15 bytes; argv[0] catches long names)."""
    def match(comm, argv):
        if comm == name:
            return True
        args = argv()
        return bool(args) and os.path.basename(args[0]) == name
    return match


INTERPRETERS = ("python", "perl", "ruby", "node", "sh", "bash", "dash", "java", "php")


def is_interpreter(program):
    """python, python3, python3.11, perl5.36 ...: a program that runs a script."""
    return any(program == name or (program.startswith(name) and
                                   program[len(name):].replace(".", "").isdigit())
               for name in INTERPRETERS)


def own_lines(args):
    """The daemon's own command line, as the lines a ``--cmdline`` pattern is
    matched against from their start: from argv[0] (as given and by its
    basename) and, when argv[0] is an interpreter, from the script it runs
    (``python3 -u /usr/bin/nova-compute ...`` -> ``nova-compute ...``)."""
    heads = [args]
    if is_interpreter(os.path.basename(args[0])):
        rest, i = args[1:], 0
        while i < len(rest) and rest[i].startswith("-") and rest[i] not in ("-c", "-m"):
            i += 1
        if i < len(rest) and rest[i] == "-m":
            heads.append(rest[i + 1:])
        elif i < len(rest) and rest[i] != "-c":
            heads.append(rest[i:])
    lines = []
    for head in heads:
        if head:
            lines.append(" ".join(head))
            lines.append(" ".join([os.path.basename(head[0])] + head[1:]))
    return lines


def by_cmdline(pattern):
    """Anchored: the pattern must match the daemon's own command line from its
    start (own_lines), never a process that merely mentions the daemon."""
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise CheckError(f"invalid --cmdline regex {pattern!r}: {exc}") from None

    def match(comm, argv):
        args = argv()
        if not args or _searches_for(args, pattern):
            return False
        return any(regex.match(line) for line in own_lines(args))
    return match


def _searches_for(args, pattern):
    """True for another check or hook looking for the same pattern (its argv holds
    ``--cmdline PATTERN``): concurrent checks must not count each other."""
    for i, arg in enumerate(args):
        if (arg == "--cmdline" and args[i + 1:i + 2] == [pattern]) or arg == f"--cmdline={pattern}":
            return True
    return False


# A daemon writes its pid file after it starts; a process that started later
# than the file was written has a reused pid. The start time psutil computes is
# boot time (whole seconds) plus clock ticks: allow a second.
REUSE_SLACK = 1.0


def from_pidfile(path, exe=None, user=None):
    """The process named by a pid file, if it is the daemon; [] and why when not.

    This may run as root through the sudo gate with a path of the caller's
    choosing: nothing read from the file is ever shown (a bad one is "not a pid
    file"), and a FIFO or device never blocks or is read (O_NONBLOCK, then a
    regular file or nothing)."""
    import psutil
    import stat
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise CheckError(f"pidfile directory {os.path.dirname(path) or '.'} does not exist "
                             "(wrong --pidfile?)") from None
        return [], f"pidfile {path} is missing"
    except PermissionError:
        raise CheckError(f"pidfile {path}: permission denied") from None
    except OSError as exc:
        raise CheckError(f"pidfile {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CheckError(f"pidfile {path} is not a pid file")
        written = st.st_mtime
        try:
            text = handle.read(64).decode("ascii").strip()
        except (OSError, UnicodeDecodeError):
            text = ""
    if not text.isdigit() or len(text) > 10:
        raise CheckError(f"pidfile {path} is not a pid file")
    pid = int(text)
    if pid <= 1:
        return [], f"pidfile {path} names pid {pid} (init or nothing), not a daemon"
    try:
        proc = psutil.Process(pid)
        started = proc.create_time()
        if started > written + REUSE_SLACK:
            return [], (f"pid {pid} from {path} is not the daemon: it started "
                        f"{started - written:.1f}s after the pidfile was written (a reused pid)")
        if user is not None:
            owner = proc.uids().real
            if owner != _uid(user):
                return [], f"pid {pid} from {path} is not the daemon: it runs as uid {owner}, not {user}"
        if exe is not None and not _runs(proc, exe):
            return [], (f"pid {pid} from {path} is not the daemon: it runs "
                        f"{_program(proc)}, not {exe}")
        return [proc], None
    except psutil.NoSuchProcess:
        return [], f"pid {pid} from {path} is not running (stale pidfile)"
    except psutil.AccessDenied:
        raise CheckError(f"pid {pid} from {path}: permission denied reading it") from None


def _runs(proc, exe):
    """``proc`` runs program ``exe``: by /proc/PID/exe, or by argv[0]'s basename."""
    import psutil
    try:
        real = proc.exe()
    except (psutil.AccessDenied, psutil.ZombieProcess, OSError):
        real = ""
    if real and os.path.realpath(exe) == os.path.realpath(real):
        return True
    try:
        args = proc.cmdline()
    except (psutil.AccessDenied, psutil.ZombieProcess):
        args = []
    return bool(args) and os.path.basename(args[0]) == os.path.basename(exe)


def _program(proc):
    import psutil
    try:
        return proc.exe() or proc.name()
    except (psutil.Error, OSError):
        return "?"


def from_unit(unit, runner=None):
    """The processes of a systemd unit's cgroup, and the unit's properties."""
    import psutil
    from autoremedy.contract import execute
    runner = runner or execute.run
    props = "LoadState,ActiveState,SubState,MainPID,NRestarts,ControlGroup"
    try:
        done = runner(["systemctl", "show", unit, "-p", props], timeout=5)
    except execute.CommandError as exc:
        raise CheckError(f"cannot query systemd for {unit}: {exc}") from None
    if done.returncode != 0:
        raise CheckError(f"systemctl show {unit}: {done.brief() or 'exit ' + str(done.returncode)}"
                         " (no systemd on this host?)")
    info = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    if info.get("LoadState") == "not-found":
        raise CheckError(f"unit {unit} is not known to systemd")
    pids = []
    cgroup = info.get("ControlGroup")
    if cgroup and info.get("ActiveState") in ("active", "reloading", "deactivating"):
        try:
            with open(f"/sys/fs/cgroup{cgroup}/cgroup.procs") as handle:
                pids = [int(p) for p in handle.read().split()]
        except OSError:
            pids = []
    if not pids and info.get("MainPID", "0") not in ("", "0"):
        pids = [int(info["MainPID"])]
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    return procs, info


def watched(config, name):
    """An entry of checks.process.watch: {name, unit|cmdline|pidfile|process}."""
    for entry in (config.get("checks.process.watch") or []):
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry
    raise CheckError(f"no checks.process.watch entry named {name!r} in the configuration")


# --- evaluate and present ----------------------------------------------------------

def probe(config, args, runner=None, table=None):
    """The seam (autoremedy/contract/checkrun.py): the configuration is read only for
    --watch. ``table``: a ProcTable shared with other checks (check batch)."""
    selector = _selector(config, args)
    kind, value = selector
    if getattr(args, "exe", None) and kind != "pidfile":
        raise CheckError("--exe applies to --pidfile (other selectors name the program already)")
    note, unit_info = None, None
    if kind == "name":
        procs = scan(by_name(value), args.user, table)
    elif kind == "cmdline":
        procs = scan(by_cmdline(value), args.user, table)
    elif kind == "pidfile":
        procs, note = from_pidfile(value, getattr(args, "exe", None), args.user)
    else:
        procs, unit_info = from_unit(value, runner)
    return judge(procs, kind, value, args, note, unit_info)


def _selector(config, args):
    if args.watch:
        entry = watched(config, args.watch)
        # a watch may carry the identity a pid file's process must have
        for key in ("exe", "user"):
            if entry.get(key) and not getattr(args, key, None):
                setattr(args, key, str(entry[key]))
        # "name" is the entry's own label; the process name is under "process".
        for key, kind in (("unit", "unit"), ("pidfile", "pidfile"), ("cmdline", "cmdline"), ("process", "name")):
            if entry.get(key):
                return kind, str(entry[key])
        raise CheckError(f"checks.process.watch entry {args.watch!r} has no unit, pidfile, cmdline or process")
    chosen = [(k, getattr(args, k)) for k in ("name", "cmdline", "pidfile", "unit") if getattr(args, k)]
    if len(chosen) != 1:
        raise CheckError("give exactly one of --name, --cmdline, --pidfile, --unit, --watch")
    return chosen[0]


# States that are not "running" whatever the process table says: the daemon
# cannot serve (stopped by a signal or a debugger, a zombie) or is stuck in the
# kernel. D is often brief (I/O): it counts only when three readings agree.
NOT_RUNNING = {"stopped": "T", "tracing-stop": "t", "zombie": "Z", "dead": "X"}
D_READINGS, D_INTERVAL = 3, 0.1


def state_of(proc):
    """The process's state letter when it is not running (T, t, Z, X, D), else None."""
    import time
    import psutil
    status = proc.status()
    if status in NOT_RUNNING:
        return NOT_RUNNING[status]
    if status != psutil.STATUS_DISK_SLEEP:
        return None
    for _ in range(D_READINGS - 1):
        time.sleep(D_INTERVAL)
        if proc.status() != psutil.STATUS_DISK_SLEEP:
            return None
    return "D"


STATE_WORDS = {"T": "stopped (T)", "t": "stopped by a debugger (t)", "Z": "a zombie (Z)",
               "X": "dead (X)", "D": "stuck in uninterruptible sleep (D)"}


def judge(procs, kind, value, args, note=None, unit_info=None):
    import psutil
    live, zombies, rss, cpu = 0, 0, 0, 0.0
    states = {}
    for proc in procs:
        try:
            with proc.oneshot():
                letter = state_of(proc)
                if letter is not None:
                    states[proc.pid] = letter
                    zombies += letter == "Z"
                    continue
                live += 1
                rss += proc.memory_info().rss
                times = proc.cpu_times()
                cpu += times.user + times.system
        except psutil.NoSuchProcess:
            continue          # exited between the scan and now: not running
        except psutil.AccessDenied:
            live += 1         # it exists; we may just not read its memory
    count = Metric("count", live, "", args.warning, args.critical, min=0)
    metrics = [count, Metric("rss", rss, "B", min=0), Metric("cpu", round(cpu, 2), "c")]
    what = f"{kind} {value}"
    plural = "process" if live == 1 else "processes"
    summary = f"{live} {plural} matching {what}"
    bad = count.violated()
    if bad is not None:
        word = "crit" if bad is count.crit else "warn"
        summary += f" ({word} {bad.describe()})"
    details = [note] if note else []
    if states:
        summary += "; " + ", ".join(f"pid {pid} {STATE_WORDS[letter]}"
                                    for pid, letter in sorted(states.items()))
    if args.zombies:
        metrics.append(Metric("zombies", zombies, "", warn="0", min=0))
        if zombies:
            summary += f"; {zombies} zombie(s)"
    if unit_info is not None:
        restarts = int(unit_info.get("NRestarts") or 0)
        limit = args.max_restarts
        metrics.append(Metric("restarts", restarts, "c", warn=None if limit is None else str(limit), min=0))
        details.append(f"unit {value}: {unit_info.get('ActiveState')}/{unit_info.get('SubState')}, "
                       f"{restarts} restart(s)")
        if limit is not None and restarts > limit:
            summary += f"; restarted {restarts} times (more than {limit})"
    data = {"selector": kind, "value": value, "count": live, "pids": [p.pid for p in procs],
            "states": {str(pid): letter for pid, letter in states.items()}}
    return Result(NAME, summary, metrics=metrics, details=details, data=data)


def discover(config, args):
    """Zabbix LLD: one row per configured watch entry."""
    rows = []
    for entry in config.get("checks.process.watch") or []:
        if isinstance(entry, dict) and entry.get("name"):
            rows.append({"{#PROC.NAME}": entry["name"], "{#PROC.UNIT}": entry.get("unit", "")})
    return rows
