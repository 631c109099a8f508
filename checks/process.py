"""Dead process: count the processes that match a selector and judge the count.

    $ autoremedy check process --name nova-compute
    PROCESS OK: 1 process matching name nova-compute | 'count'=1;;1:;0 'rss'=104857600B;;;0 'cpu'=12.5c

Selectors (one is required): ``--name`` (the process name or the basename of
argv[0], exactly, like ``pidof``), ``--cmdline REGEX`` (searched in the joined
command line), ``--pidfile FILE``, ``--unit UNIT`` (systemd), or ``--watch NAME``
(an entry of ``checks.process.watch`` in the configuration, which is what the
Zabbix template uses: agent parameters cannot carry regexes). The default
thresholds are CRITICAL below one process (``-c 1:``).
"""
import os
import re

from autoremedy.result import CheckError, Metric, Result

NAME = "process"
THRESHOLDS = (None, "1:")


def add_arguments(parser):
    sel = parser.add_argument_group("selector (one of)")
    sel.add_argument("--name", help="exact process name (or basename of argv[0])")
    sel.add_argument("--cmdline", metavar="REGEX", help="regular expression searched in the command line")
    sel.add_argument("--pidfile", metavar="FILE", help="pid file of the daemon")
    sel.add_argument("--unit", help="systemd unit (counts the processes of its cgroup)")
    sel.add_argument("--watch", metavar="NAME", help="an entry of checks.process.watch in the configuration")
    parser.add_argument("--user", help="only processes of this user")
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


def scan(match, user=None):
    """Processes for which ``match(name, argv)`` is true, as psutil.Process objects.

    On Linux the scan reads /proc/<pid>/comm and cmdline itself and builds a
    psutil.Process only for the matches: psutil.process_iter() builds one object
    per process and reads each stat file twice, which made the whole check ~1.5x
    slower on a node with a hundred processes (bench/bench_node.py). Elsewhere,
    psutil does the scan."""
    import psutil
    skip = _ancestors()
    uid = _uid(user) if user else None
    if os.path.isdir("/proc/self"):
        pids = _proc_scan(match, uid, skip)
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


def _proc_scan(match, uid, skip):
    pids = []
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            if pid in skip:
                continue
            if uid is not None:
                try:
                    if entry.stat().st_uid != uid:
                        continue
                except OSError:
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


def by_cmdline(pattern):
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise CheckError(f"invalid --cmdline regex {pattern!r}: {exc}") from None

    def match(comm, argv):
        args = argv()
        if not args or _searches_for(args, pattern):
            return False
        return regex.search(" ".join(args)) is not None
    return match


def _searches_for(args, pattern):
    """True for another check or hook looking for the same pattern (its argv holds
    ``--cmdline PATTERN``): concurrent checks must not count each other."""
    for i, arg in enumerate(args):
        if (arg == "--cmdline" and args[i + 1:i + 2] == [pattern]) or arg == f"--cmdline={pattern}":
            return True
    return False


def from_pidfile(path):
    """The process named by a pid file; [] when the daemon is gone."""
    import psutil
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            text = handle.read(64).strip()
    except FileNotFoundError:
        if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise CheckError(f"pidfile directory {os.path.dirname(path) or '.'} does not exist "
                             "(wrong --pidfile?)") from None
        return [], f"pidfile {path} is missing"
    except PermissionError:
        raise CheckError(f"pidfile {path}: permission denied") from None
    except OSError as exc:
        raise CheckError(f"pidfile {path}: {exc.strerror}") from None
    if not text.isdigit():
        raise CheckError(f"pidfile {path} does not hold a pid: {text[:20]!r}")
    try:
        return [psutil.Process(int(text))], None
    except psutil.NoSuchProcess:
        return [], f"pid {text} from {path} is not running (stale pidfile)"


def from_unit(unit, runner=None):
    """The processes of a systemd unit's cgroup, and the unit's properties."""
    import psutil
    from autoremedy import execute
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


def watched(name):
    """An entry of checks.process.watch: {name, unit|cmdline|pidfile|process}."""
    from autoremedy.config import Config
    for entry in (Config.load().get("checks.process.watch") or []):
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry
    raise CheckError(f"no checks.process.watch entry named {name!r} in the configuration")


# --- evaluate and present ----------------------------------------------------------

def check(args, runner=None):
    selector = _selector(args)
    kind, value = selector
    note, unit_info = None, None
    if kind == "name":
        procs = scan(by_name(value), args.user)
    elif kind == "cmdline":
        procs = scan(by_cmdline(value), args.user)
    elif kind == "pidfile":
        procs, note = from_pidfile(value)
    else:
        procs, unit_info = from_unit(value, runner)
    return judge(procs, kind, value, args, note, unit_info)


def _selector(args):
    if args.watch:
        entry = watched(args.watch)
        # "name" is the entry's own label; the process name is under "process".
        for key, kind in (("unit", "unit"), ("pidfile", "pidfile"), ("cmdline", "cmdline"), ("process", "name")):
            if entry.get(key):
                return kind, str(entry[key])
        raise CheckError(f"checks.process.watch entry {args.watch!r} has no unit, pidfile, cmdline or process")
    chosen = [(k, getattr(args, k)) for k in ("name", "cmdline", "pidfile", "unit") if getattr(args, k)]
    if len(chosen) != 1:
        raise CheckError("give exactly one of --name, --cmdline, --pidfile, --unit, --watch")
    return chosen[0]


def judge(procs, kind, value, args, note=None, unit_info=None):
    import psutil
    live, zombies, rss, cpu = 0, 0, 0, 0.0
    for proc in procs:
        try:
            with proc.oneshot():
                if proc.status() == psutil.STATUS_ZOMBIE:
                    zombies += 1
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
    data = {"selector": kind, "value": value, "count": live, "pids": [p.pid for p in procs]}
    return Result(NAME, summary, metrics=metrics, details=details, data=data)


def discover(args):
    """Zabbix LLD: one row per configured watch entry."""
    from autoremedy.config import Config
    rows = []
    for entry in Config.load().get("checks.process.watch") or []:
        if isinstance(entry, dict) and entry.get("name"):
            rows.append({"{#PROC.NAME}": entry["name"], "{#PROC.UNIT}": entry.get("unit", "")})
    return rows
