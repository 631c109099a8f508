"""Connections to MySQL / MariaDB for the replication and Galera checks and remediations.

Who logs in, where, and how safely, decided in one place:

- **Credentials never come from argv.** They come from a client option file
  (``~/.my.cnf`` style: ``[client]``, ``[client-server]``, ``[client-mariadb]``,
  then an optional group of our own) and/or the ``mysql:`` section of the
  configuration (``password_file`` preferred to ``password``). The command line
  only says *which* server (``--server NAME``) or where it is (host, port, socket,
  option file path).
- **TLS** modes as in MySQL's ``--ssl-mode``: ``disabled``, ``preferred``,
  ``required``, ``verify-ca``, ``verify-identity``. With a CA the default is
  ``verify-ca``; without one ``preferred``, except on loopback and Unix sockets,
  where TLS protects nothing and PyMySQL's preferred mode would cost ~30 ms per
  run loading the system CA store (docs/mysql.md, "Start-up").
- **Timeouts**: a connect timeout and a read timeout on every connection; a
  remediation session also caps lock waits on the server side, so a statement
  the client gave up on cannot complete later behind our back.
- **Errors** become ``SQLError`` (a CheckError): one line naming the server,
  the MySQL error number and text, so a check reports UNKNOWN with the reason.

Configuration (validated here; the core leaves ``mysql:`` free-form)::

    mysql:
      option_file: /etc/autoremedy/my.cnf     # default for every server (else ~/.my.cnf)
      option_group: autoremedy                # read after [client] (optional)
      connect_timeout: 5s
      read_timeout: 30s
      tls: {mode: verify-identity, ca: /etc/ssl/certs/db-ca.pem}
      servers:
        db-replica-1:
          host: 10.0.0.12
          port: 3306
          user: autoremedy
          password_file: /etc/autoremedy/mysql.pw

PyMySQL is imported only inside ``connect``.
"""
import os

from autoremedy import config as configmod
from autoremedy.clients import optionfile
from autoremedy.contract.result import CheckError

DEFAULT_PORT = 3306
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 30.0
# Where Debian/Ubuntu, RHEL and upstream builds put the server socket.
DEFAULT_SOCKETS = ("/run/mysqld/mysqld.sock", "/var/run/mysqld/mysqld.sock", "/var/lib/mysql/mysql.sock")
CLIENT_GROUPS = ("client", "client-server", "client-mariadb")
TLS_MODES = ("disabled", "preferred", "required", "verify-ca", "verify-identity")
LOOPBACK = ("127.0.0.1", "::1", "localhost")

TLS_SCHEMA = {"mode": str, "ca": str, "capath": str, "cert": str, "key": str, "cipher": str}
SERVER_SCHEMA = {
    "host": str, "port": int, "socket": str,
    "user": str, "password": str, "password_file": str,
    "option_file": str, "option_group": str,
    "tls": TLS_SCHEMA,
    "connect_timeout": configmod.Duration, "read_timeout": configmod.Duration,
}
SCHEMA = {
    "option_file": str, "option_group": str,
    "connect_timeout": configmod.Duration, "read_timeout": configmod.Duration,
    "tls": TLS_SCHEMA,
    "servers": configmod.Map(SERVER_SCHEMA),
}


class SQLError(CheckError):
    """A MySQL error (or a connection failure) in one line: server, errno, text."""

    def __init__(self, message, code=None, text=""):
        super().__init__(message)
        self.code = code
        self.text = text


# --- configuration -------------------------------------------------------------

def settings(config):
    """The validated ``mysql:`` section of a Config (``{}`` when absent: no defaults
    here, ``resolve`` layers the option file, this section and the arguments)."""
    return configmod.section(config, "mysql", SCHEMA, rules=_check_tls_modes)


def _check_tls_modes(section):
    """The rule the type schema cannot express: a TLS mode is one of TLS_MODES."""
    for name, entry in (section.get("servers") or {}).items():
        _check_tls(entry.get("tls"), f"mysql.servers.{name}.tls")
    _check_tls(section.get("tls"), "mysql.tls")


def _check_tls(tls, where):
    if tls and tls.get("mode") is not None and tls["mode"] not in TLS_MODES:
        raise configmod.ConfigError(f"{where}.mode: {tls['mode']!r} is not one of {', '.join(TLS_MODES)}")


# --- where and who ---------------------------------------------------------------

class Server:
    """Everything needed to connect to one server. ``repr`` never shows the password."""

    def __init__(self, name, host=None, port=None, socket=None, user=None, password=None,
                 tls=None, connect_timeout=DEFAULT_CONNECT_TIMEOUT, read_timeout=DEFAULT_READ_TIMEOUT,
                 option_file=None):
        self.name = name
        self.host, self.port, self.socket = host, port, socket
        self.user, self.password = user, password
        self.tls = dict(tls or {})
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.option_file = option_file

    @property
    def address(self):
        return self.socket if self.socket else f"{self.host}:{self.port}"

    @property
    def tls_mode(self):
        mode = self.tls.get("mode")
        if mode:
            return mode
        if self.tls.get("ca") or self.tls.get("capath"):
            return "verify-ca"
        if self.tls.get("cert"):
            return "required"
        if self.socket or (self.host or "").lower() in LOOPBACK:
            return "disabled"
        return "preferred"

    def describe(self):
        return self.address if self.name in (None, self.address) else f"{self.name} ({self.address})"

    def __repr__(self):
        return f"Server({self.describe()}, user={self.user!r})"


def add_arguments(parser):
    """Where to connect: the options both checks share. No password option on purpose."""
    group = parser.add_argument_group("server (credentials come from an option file or the configuration)")
    group.add_argument("--server", metavar="NAME", help="a server named in mysql.servers of the configuration")
    group.add_argument("-H", "--host", help="server host (default: the option file's, else the local socket)")
    group.add_argument("-P", "--port", type=int, help="server port (default 3306)")
    group.add_argument("-S", "--socket", metavar="PATH", help="Unix socket of the server")
    group.add_argument("--defaults-file", metavar="FILE",
                       help="client option file with user/password/ssl-* (default: ~/.my.cnf if present)")
    group.add_argument("--defaults-group", metavar="GROUP",
                       help="option-file group read after [client] (e.g. autoremedy)")
    group.add_argument("--tls-mode", choices=TLS_MODES, help="disabled, preferred, required, verify-ca, verify-identity")
    group.add_argument("--tls-ca", metavar="FILE", help="CA certificate that signed the server's certificate")


def server_from_args(args, environ=None):
    """The Server a check's command line names. The YAML configuration is read only
    when it is needed (``--server``) or asked for (``--config``/$AUTOREMEDY_CONFIG)."""
    environ = os.environ if environ is None else environ
    config = None
    if getattr(args, "server", None) or getattr(args, "config", None) or environ.get("AUTOREMEDY_CONFIG"):
        config = configmod.Config.load(getattr(args, "config", None), environ)
    return resolve(config, getattr(args, "server", None), host=args.host, port=args.port,
                   socket=args.socket, option_file=args.defaults_file, option_group=args.defaults_group,
                   tls_mode=args.tls_mode, tls_ca=args.tls_ca, environ=environ)


def resolve(config, name=None, host=None, port=None, socket=None, option_file=None, option_group=None,
            tls_mode=None, tls_ca=None, environ=None):
    """Build a Server: option file < configuration < explicit arguments."""
    environ = os.environ if environ is None else environ
    section = settings(config) if config is not None else {}
    entry = {}
    if name:
        servers = section.get("servers") or {}
        if name not in servers:
            known = ", ".join(sorted(servers)) or "none"
            raise CheckError(f"mysql.servers.{name}: no such server in the configuration (known: {known})")
        entry = servers[name]

    path = option_file or entry.get("option_file") or section.get("option_file")
    group = option_group or entry.get("option_group") or section.get("option_group")
    options = {}
    if path:
        options = optionfile.read(os.path.expanduser(path), _groups(group))
    else:
        home = environ.get("HOME") or os.path.expanduser("~")
        default = os.path.join(home, ".my.cnf")
        if os.path.isfile(default) and os.access(default, os.R_OK):
            path = default
            options = optionfile.read(default, _groups(group))

    tls = _tls_from_options(options)
    tls.update({k: v for k, v in (section.get("tls") or {}).items() if v is not None})
    tls.update({k: v for k, v in (entry.get("tls") or {}).items() if v is not None})
    if tls_mode:
        tls["mode"] = tls_mode
    if tls_ca:
        tls["ca"] = tls_ca

    password = options.get("password")
    if entry.get("password") is not None:
        password = entry["password"]
    if entry.get("password_file"):
        password = _read_secret(entry["password_file"], f"mysql.servers.{name}.password_file")

    sock, addr_host = _address(socket, host, port, entry, options)
    try:
        the_port = int(port or entry.get("port") or options.get("port") or DEFAULT_PORT)
    except ValueError:
        raise CheckError(f"option file {path}: port {options.get('port')!r} is not a number") from None

    def timeout(key, default):
        value = entry.get(key, section.get(key))
        if value is None and options.get(key.replace("_", "-")):
            try:
                value = float(options[key.replace("_", "-")])
            except ValueError:
                value = None
        return float(value) if value is not None else default

    return Server(
        name or (sock if sock else f"{addr_host}:{the_port}"),
        host=None if sock else addr_host, port=None if sock else the_port, socket=sock,
        user=entry.get("user") or options.get("user") or _login_name(environ),
        password=password, tls=tls,
        connect_timeout=timeout("connect_timeout", DEFAULT_CONNECT_TIMEOUT),
        read_timeout=timeout("read_timeout", DEFAULT_READ_TIMEOUT),
        option_file=path)


def _address(socket, host, port, entry, options):
    """(socket, host): the most specific level that names an address wins
    (arguments, then the configuration, then the option file). A host other than
    "localhost" means TCP even when a socket is also named, and a port given on
    the command line means TCP too (unlike the mysql client, which silently
    ignores --port on "localhost")."""
    levels = [(socket, host), (entry.get("socket"), entry.get("host")),
              (options.get("socket"), options.get("host"))]
    for sock, addr in levels:
        if sock or addr:
            break
    else:
        sock = None if port else _default_socket()
        addr = None if sock else "127.0.0.1"
    if port and not socket and sock:
        sock, addr = None, addr if addr and addr != "localhost" else "127.0.0.1"
    if sock and addr and addr != "localhost":
        sock = None
    return sock, (None if sock else addr)


def _groups(extra):
    return list(CLIENT_GROUPS) + ([extra] if extra and extra not in CLIENT_GROUPS else [])


def _default_socket():
    return next((s for s in DEFAULT_SOCKETS if os.path.exists(s)), None)


def _login_name(environ):
    # The mysql client's default user is the login name.
    return environ.get("USER") or environ.get("LOGNAME") or "root"


def _read_secret(path, where):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().rstrip("\r\n")
    except OSError as exc:
        raise CheckError(f"{where} {path}: {exc.strerror}") from None


def _tls_from_options(options):
    tls = {}
    for key in ("ca", "capath", "cert", "key", "cipher"):
        if options.get(f"ssl-{key}"):
            tls[key] = options[f"ssl-{key}"]
    mode = options.get("ssl-mode")
    if mode:
        tls["mode"] = mode.strip().lower().replace("_", "-")
    elif "skip-ssl" in options or "disable-ssl" in options or ("ssl" in options and not optionfile.flag(options["ssl"])):
        tls["mode"] = "disabled"
    elif "ssl-verify-server-cert" in options and optionfile.flag(options["ssl-verify-server-cert"]):
        tls["mode"] = "verify-identity"
    elif "ssl" in options and optionfile.flag(options["ssl"]) and not tls.get("ca"):
        tls["mode"] = "required"
    if tls.get("mode") and tls["mode"] not in TLS_MODES:
        raise CheckError(f"ssl-mode {tls['mode']!r} is not one of {', '.join(TLS_MODES)}")
    return tls


# --- connecting ------------------------------------------------------------------

def _tls_kwargs(server):
    """PyMySQL arguments for the server's TLS mode. For the modes that must not
    fall back to plain text an SSLContext is passed: PyMySQL then refuses a server
    without TLS ("SSL is required but the server doesn't support it")."""
    mode = server.tls_mode
    if mode == "disabled":
        return {"ssl_disabled": True}
    if mode == "preferred":
        return {}
    from autoremedy.clients.tls import client_context
    tls = server.tls
    if mode in ("verify-ca", "verify-identity"):
        ctx = client_context(tls.get("ca") or True, capath=tls.get("capath"),
                             check_hostname=mode == "verify-identity")
    else:
        ctx = client_context(False)          # "required": encrypted, not verified
    if tls.get("cert"):
        ctx.load_cert_chain(tls["cert"], keyfile=tls.get("key"))
    if tls.get("cipher"):
        ctx.set_ciphers(tls["cipher"])
    return {"ssl": ctx}


def connect(server, timeout=None, lock_wait=None):
    """Open a Session. ``timeout`` caps the connect and read timeouts (a check's
    remaining budget); ``lock_wait`` (seconds) caps server-side lock waits."""
    import pymysql
    connect_timeout = server.connect_timeout
    read_timeout = server.read_timeout
    if timeout:
        connect_timeout = min(connect_timeout, timeout)
        read_timeout = min(read_timeout, timeout)
    kwargs = {
        "user": server.user, "password": server.password or "", "charset": "utf8mb4",
        # PyMySQL applies read_timeout to the handshake as well: a server that accepts
        # the TCP connection but never greets would hold us for the whole read timeout.
        # Connect with the connect timeout everywhere, then widen it (below).
        "connect_timeout": max(connect_timeout, 0.1), "read_timeout": max(connect_timeout, 0.1),
        "write_timeout": max(connect_timeout, 0.1), "autocommit": True,
        "cursorclass": pymysql.cursors.DictCursor,
    }
    if server.socket:
        kwargs["unix_socket"] = server.socket
    else:
        kwargs["host"], kwargs["port"] = server.host, server.port
    if lock_wait:
        wait = int(max(1, lock_wait))
        kwargs["init_command"] = f"SET SESSION lock_wait_timeout={wait}, innodb_lock_wait_timeout={wait}"
    try:
        kwargs.update(_tls_kwargs(server))
    except (OSError, ValueError) as exc:
        raise SQLError(f"TLS settings for {server.describe()}: {_one_line(exc)}") from None
    try:
        conn = pymysql.connect(**kwargs)
    except pymysql.err.MySQLError as exc:
        raise error(exc, f"cannot connect to {server.describe()} as {server.user!r}") from None
    except (OSError, ValueError) as exc:
        raise SQLError(f"cannot connect to {server.describe()}: {_one_line(exc)}") from None
    # PyMySQL re-applies these before each socket read/write (pinned <2, tested in
    # tests/mysql/test_mysql_connection.py).
    conn._read_timeout = conn._write_timeout = max(read_timeout, 0.1)
    return Session(conn, server)


def error(exc, context, hint=None):
    """A PyMySQL exception as an SQLError with ``context`` in front."""
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    text = _one_line(exc.args[1]) if len(exc.args) > 1 else _one_line(exc)
    message = f"{context}: error {code}: {text}" if code else f"{context}: {text}"
    if hint:
        message += f" ({hint})"
    return SQLError(message, code, text)


def _one_line(value):
    return " ".join(str(value).split())


def quote_ident(*parts):
    """`db`.`table` with backticks doubled: identifiers are never interpolated raw."""
    return ".".join("`" + str(p).replace("`", "``") + "`" for p in parts)


class Session:
    """One connection: rows as dicts, errors as SQLError naming the statement."""

    def __init__(self, conn, server):
        self.conn = conn
        self.server = server
        raw = conn.get_server_info() or ""
        # MariaDB 10.x prefixes "5.5.5-" for old clients.
        self.version_string = raw[len("5.5.5-"):] if raw.startswith("5.5.5-") else raw
        self.flavour = "mariadb" if "mariadb" in self.version_string.lower() else "mysql"
        self.version = _version_tuple(self.version_string)

    def rows(self, sql, args=None, hint=None):
        import pymysql
        try:
            with self.conn.cursor() as cursor:
                cursor.execute(sql, args)
                return list(cursor.fetchall())
        except pymysql.err.MySQLError as exc:
            raise error(exc, f"{_statement(sql)} on {self.server.describe()}", hint) from None

    def row(self, sql, args=None, hint=None):
        rows = self.rows(sql, args, hint)
        return rows[0] if rows else None

    def value(self, sql, args=None, hint=None):
        row = self.row(sql, args, hint)
        return next(iter(row.values())) if row else None

    def execute(self, sql, args=None, hint=None):
        import pymysql
        try:
            with self.conn.cursor() as cursor:
                return cursor.execute(sql, args)
        except pymysql.err.MySQLError as exc:
            raise error(exc, f"{_statement(sql)} on {self.server.describe()}", hint) from None

    def literal(self, value):
        """A quoted SQL string literal (connection names in START SLAVE 'name')."""
        return self.conn.escape(str(value))

    def tls_version(self):
        """The negotiated TLS version ('' without TLS), as the server reports it."""
        row = self.row("SHOW SESSION STATUS LIKE 'Ssl_version'")
        return (row or {}).get("Value") or ""

    def close(self):
        try:
            self.conn.close()
        except Exception:  # closing a broken connection must not mask the real error
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _statement(sql):
    words = " ".join(sql.split()).split(" ")
    return " ".join(words[:4]) + (" ..." if len(words) > 4 else "")


def _version_tuple(text):
    import re
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(x) for x in match.groups()) if match else (0, 0, 0)


# --- helpers for the remediations ------------------------------------------------

def client_option_file(server, directory):
    """Write a 0600 option file holding ``server``'s login for the mariadb /
    mariadb-dump command-line tools (credentials never go into their argv).
    ``directory``: a private directory of ours, held open and named by its
    ``safefs.pinned_path`` (a login written by a path someone could swap would
    go where they chose). Returns (path, argv addressing the server); the caller
    deletes the file."""
    import tempfile
    lines = ["[client]", f"user={_quote_option(server.user)}"]
    if server.password:
        lines.append(f"password={_quote_option(server.password)}")
    mode = server.tls_mode
    if mode == "disabled":
        lines.append("skip-ssl")
    elif mode != "preferred":
        lines.append("ssl")
        for key in ("ca", "capath", "cert", "key", "cipher"):
            if server.tls.get(key):
                lines.append(f"ssl-{key}={_quote_option(server.tls[key])}")
        if mode == "verify-identity":
            lines.append("ssl-verify-server-cert")
    fd, path = tempfile.mkstemp(dir=directory, prefix=".client-", suffix=".cnf")
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    os.chmod(path, 0o600)
    if server.socket:
        address = [f"--socket={server.socket}"]
    else:
        address = ["--protocol=TCP", f"--host={server.host}", f"--port={server.port}"]
    return path, address


def _quote_option(value):
    # The reverse of _value: backslashes escaped, one pair of enclosing quotes (the
    # parser strips only the outer pair, so quotes inside need no escaping).
    text = str(value).replace("\\", "\\\\")
    quote = '"' if "'" in text and '"' not in text else "'"
    return quote + text + quote


def save_evidence(state_dir, cls_name, target, payload):
    """Write an escalation's evidence as JSON under <state_dir>/<cls>/evidence/;
    return the path (the refusal names it; the audit record carries it too)."""
    import json
    import time as _time
    from autoremedy import statefile
    stamp = _time.strftime("%Y%m%dT%H%M%SZ", _time.gmtime())
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(target))
    path = os.path.join(state_dir, cls_name, "evidence", f"{safe}-{stamp}-{os.getpid()}.json")
    statefile.write_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str).encode())
    return path
