"""Galera facts read without SQL: a node's files, its process, its addresses.

What the galera check (``--node-cnf``) and remediation need to know about a
node that does not answer, and how a cluster's membership is written down:

- **Down means down**: a server is down only when no process holds its datadir
  and no lock is held on the datadir's files. Processes are found in the
  process table, not through the pid file: a mariadbd waiting for a Primary
  component, or joining one, has no pid file and no open port for seconds to
  minutes (measured: 30 s and more while waiting, 4 s while joining), but it
  sits in its datadir from its first instant (``/proc/PID/cwd``) and holds
  ``grastate.dat`` and ``galera.cache`` open. InnoDB's and Aria's locks
  (``/proc/locks``) catch a server in another PID namespace.
- ``grastate.dat`` (history UUID, seqno, safe_to_bootstrap) and ``gvwstate.dat``
  (the node's own gcomm UUID and the **last Primary view** it was part of:
  written on every Primary view, kept after a crash, removed on a clean
  shutdown; it is what ``pc.recovery`` restores).
- Addresses: ``wsrep_cluster_address`` (``gcomm://h1:p1,h2,h3?opt=v``) and the
  node's own gcomm address (``wsrep_node_address``, ``gmcast.listen_addr``,
  default port 4567).

Nothing here changes anything, except ``wsrep_recover``, which runs InnoDB
crash recovery on a datadir proven down (what the node's next start does).
"""
import os
import re

GCOMM_PORT = 4567
SERVER_GROUPS = ("mysqld", "server", "mariadbd", "galera", "mariadb")
SERVER_NAMES = ("mariadbd", "mysqld")
NO_UUID = "00000000-0000-0000-0000-000000000000"


# --- addresses ----------------------------------------------------------------------

def split_address(text, default_port):
    """('host', port) of 'host', 'host:port', '[v6]:port' or 'tcp://host:port'."""
    text = text.strip()
    if "://" in text:
        text = text.split("://", 1)[1]
    text = text.split("?", 1)[0].rstrip("/")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    try:
        return host.lower(), int(port) if port else default_port
    except ValueError:
        return host.lower(), default_port


def gcomm(text):
    """'host[:port]' as 'host:port' (Galera's default port 4567)."""
    host, port = split_address(text, GCOMM_PORT)
    return f"{host}:{port}"


def cluster_members(address):
    """['host:port', ...] named by a wsrep_cluster_address (empty for 'gcomm://')."""
    if not address:
        return []
    text = address.strip()
    if not text.startswith("gcomm://"):
        return []
    text = text[len("gcomm://"):].split("?", 1)[0]
    out = []
    for part in text.split(","):
        if part.strip():
            host, port = split_address(part, GCOMM_PORT)
            out.append(f"{host}:{port}")
    return out


def provider_option(options, key):
    """A value of a ``wsrep_provider_options`` string ('a = 1; b = 2' or 'a=1;b=2')."""
    for part in (options or "").split(";"):
        name, sep, value = part.partition("=")
        if sep and name.strip() == key:
            return value.strip()
    return None


def gcomm_address(node_address=None, provider_options=None):
    """The node's own gcomm address: gmcast.listen_addr (unless a wildcard), else
    wsrep_node_address, with the default port 4567 (or base_port)."""
    listen = provider_option(provider_options, "gmcast.listen_addr")
    port = provider_option(provider_options, "base_port")
    default = int(port) if port and port.isdigit() else GCOMM_PORT
    if listen:
        host, lport = split_address(listen, default)
        default = lport
        if host not in ("0.0.0.0", "::", "*", ""):
            return f"{host}:{lport}"
    base = provider_option(provider_options, "base_host")
    if node_address:
        host, nport = split_address(node_address, default)
        return f"{host}:{nport}"
    if base:
        return f"{base.lower()}:{default}"
    return None


def same_host(a, b, _cache={}):
    """Whether two host names / addresses name the same host (resolved once each)."""
    if a == b:
        return True

    def addresses(host):
        if host not in _cache:
            import socket
            try:
                _cache[host] = {i[4][0] for i in socket.getaddrinfo(host, None)}
            except (OSError, UnicodeError):
                _cache[host] = {host}
        return _cache[host]
    return bool(addresses(a) & addresses(b))


def same_address(a, b):
    """'host:port' equality with host resolution."""
    (ha, pa), (hb, pb) = split_address(a, 0), split_address(b, 0)
    return pa == pb and same_host(ha, hb)


# --- files --------------------------------------------------------------------------

def read_grastate(path):
    """{uuid, seqno, safe_to_bootstrap} from grastate.dat ({} when absent)."""
    out = {}
    try:
        with open(path, errors="replace") as handle:
            text = handle.read()
    except OSError:
        return out
    for key in ("uuid", "seqno", "safe_to_bootstrap"):
        match = re.search(rf"^{key}:\s*(\S+)", text, re.M)
        if match:
            value = match.group(1)
            out[key] = int(value) if key != "uuid" and re.fullmatch(r"-?\d+", value) else value
    return out


def read_gvwstate(path):
    """The last Primary view saved in gvwstate.dat, or None when there is none:
    {"my_uuid", "view": "<type> <uuid> <seq>", "seq", "members": [uuid, ...]}."""
    try:
        with open(path, errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    out = {"my_uuid": None, "view": None, "seq": None, "members": []}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        value = value.strip()
        if key == "my_uuid":
            out["my_uuid"] = value
        elif key == "view_id":
            out["view"] = value
            parts = value.split()
            if len(parts) == 3 and parts[2].isdigit():
                out["seq"] = int(parts[2])
        elif key == "member":
            out["members"].append(value.split()[0])
    return out if out["my_uuid"] else None


def node_key(uuid):
    """A gcomm UUID without its incarnation (the 4th group): a node restored by
    pc.recovery comes back as the same node with the incarnation bumped
    (measured: 4f9abe35-...-96f1-... then -96f2-)."""
    if not uuid:
        return None
    parts = uuid.split("-")
    return "-".join(parts[:3] + parts[4:]) if len(parts) == 5 else uuid


def short_uuid(uuid):
    """How Galera's own log names a node: '4f9abe35-96f3'."""
    parts = (uuid or "").split("-")
    return f"{parts[0]}-{parts[3]}" if len(parts) == 5 else (uuid or "-")


# --- the server's option file -----------------------------------------------------------

def server_options(defaults_file):
    """The server's options from its option file (mysqld/server/mariadbd/galera groups)."""
    from autoremedy.clients import optionfile
    return optionfile.read(defaults_file, list(SERVER_GROUPS))


def datadir_of(options):
    return os.path.realpath(options.get("datadir") or "/var/lib/mysql")


# --- down means down ------------------------------------------------------------------------

def holders(datadir, proc="/proc"):
    """Why ``datadir`` is held by a live server: ['pid 123 (mariadbd, cwd)', ...].

    Empty only when no mariadbd/mysqld process is in, started for, or has files
    open in the datadir, and no lock is held on a file in it. A server process
    whose datadir cannot be read counts as a holder: we cannot prove it is not
    this one."""
    datadir = os.path.realpath(datadir)
    found = []
    try:
        entries = os.listdir(proc)
    except OSError as exc:
        return [f"process table {proc} unreadable: {exc.strerror}"]
    for entry in entries:
        if not entry.isdigit():
            continue
        why = _holds(int(entry), datadir, proc)
        if why:
            found.append(why)
    found.extend(_locks(datadir, proc))
    return found


def _server_argv(pid, proc):
    """argv of a mariadbd/mysqld process (None for anything else or a zombie)."""
    try:
        with open(f"{proc}/{pid}/cmdline", "rb") as handle:
            raw = handle.read()
        with open(f"{proc}/{pid}/stat", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return None
    comm = stat[stat.find("(") + 1:stat.rfind(")")]
    state = stat[stat.rfind(")") + 2:stat.rfind(")") + 3]
    argv = [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]
    program = os.path.basename(argv[0]) if argv else ""
    if comm not in SERVER_NAMES and program not in SERVER_NAMES:
        return None
    if state == "Z" and _threads(pid, proc) <= 1:
        return None        # exited; only its exit status is left
    return argv


def _threads(pid, proc):
    try:
        return len(os.listdir(f"{proc}/{pid}/task"))
    except OSError:
        return 0


def _state(pid, proc):
    try:
        with open(f"{proc}/{pid}/stat", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return ""
    return stat[stat.rfind(")") + 2:stat.rfind(")") + 3]


def _holds(pid, datadir, proc):
    argv = _server_argv(pid, proc)
    if argv is None or pid == os.getpid():
        return None
    name = os.path.basename(argv[0]) if argv else "mariadbd"
    if not argv or _threads(pid, proc) > 1 and _state(pid, proc) == "Z":
        # A killed server's leader thread is a zombie while its other threads
        # still exit, holding its files and sockets: not down yet.
        return f"pid {pid} ({name}, exiting: {_threads(pid, proc)} threads still hold its files)"
    try:
        cwd = os.path.realpath(os.readlink(f"{proc}/{pid}/cwd"))
    except OSError:
        cwd = None
    if cwd == datadir or (cwd or "").startswith(datadir + os.sep):
        return f"pid {pid} ({name}, working directory {cwd})"
    for arg in argv:
        if arg.startswith("--datadir=") and os.path.realpath(arg.split("=", 1)[1]) == datadir:
            return f"pid {pid} ({name} {arg})"
    try:
        fds = os.listdir(f"{proc}/{pid}/fd")
    except OSError:
        fds = None
    if fds is not None:
        for fd in fds:
            try:
                target = os.readlink(f"{proc}/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith(datadir + os.sep):
                return f"pid {pid} ({name}, has {target} open)"
    if cwd is None or fds is None:
        if _server_argv(pid, proc) is None:
            return None     # it exited while we looked (another server stopping: not ours)
        # Not ours to read (another user, no root): it could be this datadir's server.
        return f"pid {pid} ({name}, its datadir cannot be read: run as root to prove it is another server)"
    return None


def _locks(datadir, proc):
    """Locks held on files at the top of the datadir (ibdata1, aria_log_control ...)."""
    inodes = {}
    try:
        with os.scandir(datadir) as it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                inodes[(os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)] = entry.name
    except OSError:
        return []
    try:
        with open(f"{proc}/locks") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split()
        # "1: POSIX  ADVISORY  WRITE 618 fe:00:2146340 0 EOF"
        if len(parts) < 6 or parts[1] == "->":
            continue
        try:
            major, minor, inode = parts[5].split(":")
            key = (int(major, 16), int(minor, 16), int(inode))
        except ValueError:
            continue
        if key in inodes:
            out.append(f"pid {parts[4]} holds a {parts[1]} lock on {inodes[key]}")
    return out


# --- a node's local facts (the probe) ---------------------------------------------------------

def probe(defaults_file, recover=False, runner=None, answering=False):
    """What this host can tell about the node whose server option file is
    ``defaults_file``, without SQL: {"datadir", "down", "holders", "grastate",
    "gvwstate", "cluster_address", "gcomm", "recovered"}. ``recover`` runs
    ``mariadbd --wsrep-recover`` only when the server is proven down (re-checked
    right before), and says so in "recovered"/"recover_error". ``answering``:
    the server answered SQL just now (it is up: the process table is not read)."""
    options = server_options(defaults_file)
    datadir = datadir_of(options)
    held = ["it answers SQL"] if answering else holders(datadir)
    out = {
        "defaults_file": defaults_file, "datadir": datadir, "down": not held, "holders": held,
        "answering": bool(answering),
        "grastate": read_grastate(os.path.join(datadir, "grastate.dat")),
        "gvwstate": read_gvwstate(os.path.join(datadir, "gvwstate.dat")),
        "cluster_address": options.get("wsrep-cluster-address"),
        "gcomm": gcomm_address(options.get("wsrep-node-address"), options.get("wsrep-provider-options")),
    }
    if recover and not held:
        try:
            uuid, seqno = wsrep_recover(defaults_file, options, runner)
            out["recovered"] = f"{uuid}:{seqno}"
        except RecoverError as exc:
            out["recover_error"] = str(exc)
    return out


class RecoverError(Exception):
    """``--wsrep-recover`` refused to run, or found no position."""


def wsrep_recover(defaults_file, options=None, runner=None):
    """(uuid, seqno) that ``mariadbd --wsrep-recover`` finds in InnoDB (~0.2-1 s).
    Refuses when a live server holds the datadir (checked immediately before)."""
    import tempfile
    from autoremedy.contract import execute
    runner = runner or execute.run
    options = options if options is not None else server_options(defaults_file)
    datadir = datadir_of(options)
    held = holders(datadir)
    if held:
        raise RecoverError(f"not recovering {datadir}: a live server holds it ({'; '.join(held)})")
    fd, log = tempfile.mkstemp(prefix="wsrep-recover-", suffix=".log")
    os.close(fd)
    try:
        _chown_to(log, options.get("user") or "mysql")
        try:
            done = runner(["mariadbd", f"--defaults-file={defaults_file}", "--wsrep-recover",
                           f"--log-error={log}"], timeout=300)
        except execute.CommandError as exc:
            raise RecoverError(f"mariadbd --wsrep-recover on {datadir}: {exc}") from None
        with open(log, errors="replace") as handle:
            text = handle.read()
    finally:
        os.unlink(log)
    found = re.findall(r"Recovered position: ([0-9a-f-]{36}):(-?\d+)", text)
    if not found:
        tail = " / ".join(text.strip().splitlines()[-2:]) or getattr(done, "brief", lambda: "")()
        raise RecoverError(f"mariadbd --wsrep-recover on {datadir} found no position: {tail[-300:]}")
    uuid, seqno = found[-1]
    return uuid, int(seqno)


def _chown_to(path, user):
    if os.geteuid() != 0:
        return
    import pwd
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return
    os.chown(path, entry.pw_uid, entry.pw_gid)
