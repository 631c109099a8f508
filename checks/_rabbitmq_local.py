"""What the rabbitmq-node check reads on the node itself: its beam process, its
CLI tools and the fatal markers of its log (checks/rabbitmq_node.py)."""
import os

FATAL_MARKERS = ("** FATAL **", "BOOT FAILED", "Cannot read schema")
WARN_MARKERS = ("crasher:",)
BOOT_LINE = " Starting RabbitMQ "
FIRST_READ = 4 * 1024 * 1024          # bytes of an unknown log read on the first run


# --- the node's process ------------------------------------------------------------------

def find_beam(settings):
    """The beam.smp process of this node, or None.

    Candidates are the pid file's process and every beam.smp whose environment
    names the node exactly (3.10 does not put the node name on its command
    line); the youngest wins. Right after a restart the pid file still names
    the old beam, which may still be exiting: taking it would date the new boot
    from the old one's start and call a 0.04 s old boot "stuck" (measured once).
    A pid-file process whose environment names another node is not ours (a
    recycled pid). Never guesses among other nodes' processes."""
    import psutil
    wanted = "RABBITMQ_NODENAME=" + settings.node_name
    found = {}
    pid = _pid_from_file(settings.pid_path)
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] != "beam.smp":
            continue
        env = _environ(proc.pid)
        if (env is not None and wanted in env) or (env is None and proc.pid == pid):
            found[proc.pid] = proc
    live = []
    for proc in found.values():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                live.append((proc.create_time(), proc))
        except psutil.Error:
            continue
    return max(live, key=lambda pair: pair[0])[1] if live else None


def _environ(pid):
    """The process's environment as a list of KEY=VALUE, or None when it cannot
    be read (another user's process, unless root): then only the pid file names it."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return handle.read().decode("utf-8", "replace").split("\0")
    except OSError:
        return None


def _pid_from_file(path):
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            text = handle.read(32).strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def run_cli(settings, tool, *args, runner=None, timeout=20.0):
    from autoremedy.clients.rabbitmq import run_ctl
    return run_ctl(settings, tool, *args, runner=runner, timeout=timeout)


# --- the log -----------------------------------------------------------------------------

def scan_log(log_path, state_path):
    """Markers logged since the node's last boot: (fatal lines, warning lines, note).
    Reads only the bytes added since the previous run (offset and inode kept in
    ``state_path``); a rotated or truncated log is read from its start."""
    from autoremedy import statefile
    try:
        st = os.stat(log_path)
    except FileNotFoundError:
        return [], [], f"log {log_path} not found"
    except OSError as exc:
        return [], [], f"log {log_path}: {exc.strerror}"
    state = statefile.load(state_path, {}) or {}
    offset = state.get("offset", 0)
    if state.get("inode") != st.st_ino or st.st_size < offset:
        offset = 0 if state.get("inode") is not None else max(0, st.st_size - FIRST_READ)
        state = {"fatal": [], "warn": []}
    if st.st_size - offset > 4 * FIRST_READ:
        offset = st.st_size - FIRST_READ          # a log that grew that fast: read its end
    fatal, warn = list(state.get("fatal", [])), list(state.get("warn", []))
    try:
        with open(log_path, "rb") as handle:
            handle.seek(offset)
            chunk = handle.read(st.st_size - offset)
    except OSError as exc:
        return fatal, warn, f"log {log_path}: {exc.strerror}"
    end = chunk.rfind(b"\n") + 1                  # keep a half-written last line for next time
    crasher = False
    for raw in chunk[:end].splitlines():
        line = raw.decode("utf-8", "replace")
        if BOOT_LINE in line:
            fatal, warn, crasher = [], [], False  # a new boot: earlier markers are history
        elif any(m in line for m in FATAL_MARKERS):
            if len(fatal) < 5:                    # the first markers name the cause
                fatal.append(_clip(line))
        elif any(m in line for m in WARN_MARKERS):
            crasher = True                        # its reason comes a few lines later
        elif crasher and "exception " in line:
            warn = (warn + ["crasher: " + _clip(line)])[-3:]
            crasher = False
    try:
        statefile.save(state_path, {"inode": st.st_ino, "offset": offset + end,
                                    "fatal": fatal, "warn": warn})
    except OSError:
        pass                                      # advisory state: the next run rereads
    return fatal, warn, None


def _clip(line):
    # Drop the timestamp and pid prefix: "2026-... [error] <0.223.0> BOOT FAILED" -> "BOOT FAILED"
    text = line.split("> ", 1)[1] if "> " in line[:80] else line
    return " ".join(text.split())[:200]


def safe_name(name):
    """A node name as a file name."""
    return "".join(c if c.isalnum() or c in "-_.@" else "_" for c in name)
