"""Reading processes straight from /proc for the process class's no-harm evidence.

A pid alone names nothing for long (pids are reused), so every process is keyed
by pid *and* start time (field 22 of /proc/PID/stat, in clock ticks since boot):
a key that vanishes is a process that ended, a new key is a new process.
"""
import os


def stat_fields(pid):
    """(state letter, start time in ticks) of ``pid``, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read().decode("utf-8", "replace")
    except OSError:
        return None
    # the command name is in parentheses and may itself contain ") "
    rest = raw[raw.rfind(")") + 2:].split()
    if len(rest) < 20:
        return None
    return rest[0], int(rest[19])


def argv(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def ancestors(pid=None):
    """{pid: start ticks} of ``pid`` (default: this process) and every parent."""
    pid = pid or os.getpid()
    out = {}
    while pid and pid not in out:
        fields = stat_fields(pid)
        if fields is None:
            break
        out[pid] = fields[1]
        try:
            with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as handle:
                ppid = next((int(line.split()[1]) for line in handle if line.startswith("PPid:")), 0)
        except OSError:
            break
        pid = ppid
    return out


def mentioning(tokens, skip=()):
    """{"PID@START": "argv joined"} of every process whose command line contains
    one of ``tokens`` (a plain substring): the daemon and its bystanders (a
    ``tail -f`` of its log, an editor on its configuration) — everything a stop
    command or a careless selector could mistake for it."""
    tokens = [t for t in tokens if t]
    skip = set(skip)
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in skip:
            continue
        args = argv(int(name))
        if not args:
            continue
        line = " ".join(args)
        if not any(t in line for t in tokens):
            continue
        fields = stat_fields(int(name))
        if fields is None:
            continue
        found[f"{name}@{fields[1]}"] = line
    return found


def key(pid):
    """The "PID@START" key of a live pid, or None."""
    fields = stat_fields(pid)
    return None if fields is None else f"{pid}@{fields[1]}"
