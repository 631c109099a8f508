"""RabbitMQ access shared by the rabbitmq checks and remediations.

- ``settings(config)``: the ``rabbitmq:`` section of the configuration, validated here
  (the core schema leaves it free-form), with the environment overrides Sensu and
  Zabbix use and the password from a file or the environment, never argv.
- ``Api``: the management HTTP API over urllib3 (keep-alive pool, verified TLS,
  separate connect/read timeouts). Failures are ``ApiError`` subclasses with one
  readable line; they are CheckErrors, so a check that does not catch one ends
  UNKNOWN with that line.
- ``ctl()``: ``rabbitmqctl`` / ``rabbitmq-diagnostics`` argv for the configured node,
  run through autoremedy.contract.execute with the node's environment.
- ``amqp_connection()``: a pika connection, for the AMQP fallback and the
  consume/republish move only (pika is imported there and nowhere else).

Why urllib3 and not requests: measured here (python -c, median of 15 runs),
``import urllib3`` costs 77 ms over a bare interpreter and ``import requests``
101 ms, and requests adds nothing a JSON API client needs. The stdlib http.client
(33 ms) would need its own pooling, gzip and TLS handling; urllib3 is already
installed with requests and is the well-kept version of exactly that.
"""
import json
import os
from urllib.parse import quote, urlencode, urlsplit

from autoremedy import config as configmod
from autoremedy.contract.result import CheckError

DEFAULT_API_URL = "http://127.0.0.1:15672"

# One policy per queue pattern; what `remediate rabbitmq-queues <name>` may do.
POLICY_SCHEMA = {
    "vhost": str,                     # exact vhost name (default "/")
    "pattern": str,                   # regex searched in the queue name, same in Python and PCRE
    "action": str,                    # cap | move | purge
    "messages": int,                  # act on matching queues deeper than this (default 0)
    "no_consumers": bool,             # act only on queues without consumers
    "max_queues": int,                # queues one run may touch (blast radius, default 20)
    "rpc_queues": str,                # protect (default) | allow: oslo.messaging RPC queues
    # cap
    "max_length": int,
    "max_length_bytes": configmod.Size,
    "message_ttl": configmod.Duration,
    "overflow": str,                  # drop-head | reject-publish | reject-publish-dlx
    "priority": int,
    # move
    "overflow_queue": str,            # "{name}.overflow" by default; {name} is the source queue
    "move_via": str,                  # auto | shovel | amqp
    "move_timeout": configmod.Duration,
    # purge
    "disposable": bool,               # required true for purge
}

SCHEMA = {
    "api_url": str,
    "user": str,
    "password_file": str,
    "verify": (bool, str),            # TLS: true, false, or a CA bundle path
    "timeout": configmod.Duration,
    "amqp": {"host": str, "port": int, "tls": bool},
    "node": str,
    "cluster_nodes": configmod.List(str),
    "node_env": configmod.Map(str),    # RABBITMQ_* for rabbitmqctl / rabbitmq-server
    "start_command": configmod.List(str),
    "mnesia_dir": str,
    "log_file": str,
    "pid_file": str,
    "boot_timeout": configmod.Duration,
    "definitions_baseline": str,
    "baseline_refresh": configmod.Duration,
    "fallback_queues": configmod.List({"vhost": str, "name": str}),
    "queue_policies": configmod.Map(POLICY_SCHEMA),
    "rpc_window": configmod.Duration,  # an RPC queue with a consumer this recently is protected
}

DEFAULTS = {
    "api_url": DEFAULT_API_URL,
    "user": "guest",
    "verify": True,
    "timeout": 10.0,
    "amqp": {"port": 5672, "tls": False},
    "cluster_nodes": [],
    "node_env": {},
    "start_command": ["rabbitmq-server", "-detached"],
    "boot_timeout": 20.0,                 # a healthy boot takes 5-10 s (measured on RabbitMQ 3.10, tests/rabbitmq/test_node_throwaway.py)
    "baseline_refresh": 3600.0,
    "fallback_queues": [],
    "queue_policies": {},
    "rpc_window": 3600.0,
}

ACTIONS = ("cap", "move", "purge")
OVERFLOWS = ("drop-head", "reject-publish", "reject-publish-dlx")
MOVE_VIA = ("auto", "shovel", "amqp")
RPC_QUEUES = ("protect", "allow")


class Settings:
    """The validated ``rabbitmq:`` section plus the secret and the derived paths."""

    def __init__(self, data, environ, state_dir, where="rabbitmq"):
        self.data = data
        self.environ = environ
        self.state_dir = state_dir
        self.where = where

    def __getattr__(self, name):
        try:
            return self.data[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def password(self):
        """$AUTOREMEDY_RABBITMQ_PASSWORD, else the password file, else 'guest' for the
        built-in guest user only (RabbitMQ's own default)."""
        if self.environ.get("AUTOREMEDY_RABBITMQ_PASSWORD"):
            return self.environ["AUTOREMEDY_RABBITMQ_PASSWORD"]
        path = self.environ.get("AUTOREMEDY_RABBITMQ_PASSWORD_FILE") or self.data.get("password_file")
        if path:
            try:
                with open(path, encoding="utf-8") as handle:
                    return handle.read().strip()
            except OSError as exc:
                raise configmod.ConfigError(f"{self.where}.password_file {path}: "
                                            f"{exc.strerror}") from None
        return "guest" if self.user == "guest" else ""

    @property
    def configured_node(self):
        """The node named by the configuration, the environment, node_env or
        rabbitmq-env.conf (where packages and operators set NODENAME); None if none does."""
        return self.explicit_node or _env_conf_nodename(ENV_CONF)

    @property
    def explicit_node(self):
        """The node this configuration names itself (rabbitmq.node, --node,
        $AUTOREMEDY_RABBITMQ_NODE, node_env.RABBITMQ_NODENAME); None otherwise.
        rabbitmq-env.conf and the hostname are the machine's own broker, which is
        never a remediation target by default."""
        return (self.data.get("node") or self.environ.get("AUTOREMEDY_RABBITMQ_NODE")
                or self.node_env.get("RABBITMQ_NODENAME"))

    @property
    def node_name(self):
        node = self.configured_node
        if node:
            return node
        import socket
        return "rabbit@" + socket.gethostname().split(".")[0]

    @property
    def mnesia_path(self):
        """The node's database directory (what a reset moves aside)."""
        if self.data.get("mnesia_dir"):
            return self.data["mnesia_dir"]
        base = self.node_env.get("RABBITMQ_MNESIA_BASE", "/var/lib/rabbitmq/mnesia")
        return os.path.join(base, self.node_name)

    @property
    def log_path(self):
        if self.data.get("log_file"):
            return self.data["log_file"]
        base = self.node_env.get("RABBITMQ_LOG_BASE", "/var/log/rabbitmq")
        return os.path.join(base, f"{self.node_name}.log")

    @property
    def pid_path(self):
        if self.data.get("pid_file"):
            return self.data["pid_file"]
        if self.node_env.get("RABBITMQ_PID_FILE"):
            return self.node_env["RABBITMQ_PID_FILE"]
        return self.mnesia_path + ".pid"

    @property
    def baseline_path(self):
        if self.data.get("definitions_baseline"):
            return self.data["definitions_baseline"]
        return os.path.join(self.state_dir, "rabbitmq", f"{self.node_name}.definitions.json")

    def api(self, url=None):
        return Api(url or self.api_url, self.user, self.password, verify=self.verify,
                   timeout=self.timeout)


ENV_CONF = "/etc/rabbitmq/rabbitmq-env.conf"


def _env_conf_nodename(path):
    """NODENAME= from rabbitmq-env.conf, where packages and operators set it."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.strip().partition("=")
                if key in ("NODENAME", "RABBITMQ_NODENAME") and value:
                    return value.strip().strip("'\"")
    except OSError:
        pass
    return None


def env_overrides(environ):
    out = {}
    for key, name in (("api_url", "AUTOREMEDY_RABBITMQ_URL"), ("user", "AUTOREMEDY_RABBITMQ_USER"),
                      ("node", "AUTOREMEDY_RABBITMQ_NODE")):
        if environ.get(name):
            out[key] = environ[name]
    return out


def settings(config, environ=None):
    """The validated ``rabbitmq:`` section of the loaded ``config`` as a Settings,
    with the environment overrides of ``environ`` (default: the process's)."""
    environ = os.environ if environ is None else environ
    checked = configmod.section(config, "rabbitmq", SCHEMA, DEFAULTS, rules=_check_policies)
    checked = configmod.merge(checked, env_overrides(environ))
    return Settings(checked, environ, config.state_dir, f"{configmod.origin(config)}: rabbitmq")


def _check_policies(section):
    for name, policy in section["queue_policies"].items():
        validate_policy(policy, f"rabbitmq.queue_policies.{name}")


def validate_policy(policy, where):
    """The cross-field rules the type schema cannot express; errors name ``where``,
    the policy's dotted key."""
    from autoremedy.clients import queue_patterns
    if not policy.get("pattern"):
        raise configmod.ConfigError(f"{where}.pattern: required (a regex of queue names)")
    try:
        queue_patterns.validate(policy["pattern"])
    except ValueError as exc:
        raise configmod.ConfigError(f"{where}.pattern: {exc}") from None
    if policy.get("rpc_queues", "protect") not in RPC_QUEUES:
        raise configmod.ConfigError(f"{where}.rpc_queues: {policy['rpc_queues']!r} is not one of "
                                    f"{', '.join(RPC_QUEUES)}")
    action = policy.get("action")
    if action not in ACTIONS:
        raise configmod.ConfigError(f"{where}.action: {action!r} is not one of {', '.join(ACTIONS)}")
    if action == "cap" and not any(k in policy for k in ("max_length", "max_length_bytes", "message_ttl")):
        raise configmod.ConfigError(f"{where}: a cap needs max_length, max_length_bytes or message_ttl")
    if policy.get("overflow") is not None and policy["overflow"] not in OVERFLOWS:
        raise configmod.ConfigError(f"{where}.overflow: {policy['overflow']!r} is not one of "
                                    f"{', '.join(OVERFLOWS)}")
    if policy.get("move_via", "auto") not in MOVE_VIA:
        raise configmod.ConfigError(f"{where}.move_via: {policy['move_via']!r} is not one of "
                                    f"{', '.join(MOVE_VIA)}")
    if action == "purge" and policy.get("disposable") is not True:
        raise configmod.ConfigError(f"{where}: purge deletes messages; it needs disposable: true")
    if "{name}" not in policy.get("overflow_queue", "{name}"):
        raise configmod.ConfigError(f"{where}.overflow_queue: must contain {{name}}, or every "
                                    "queue would be moved into one")


# --- the management API --------------------------------------------------------

class ApiError(CheckError):
    """The management API could not answer the question; the text says why."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


class ApiUnavailable(ApiError):
    """Nothing answers (refused, timeout, reset): plugin off or node down."""


class ApiAuthError(ApiError):
    """401/403: credentials rejected or not allowed."""


class NotFound(ApiError):
    """404: the object (vhost, queue, policy) does not exist."""


def path(*parts):
    """Quote vhost/queue names into URL path segments ('/' is %2F)."""
    return "/".join(quote(str(p), safe="") for p in parts)


class Api:
    def __init__(self, url, user, password, verify=True, timeout=10.0):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise configmod.ConfigError(f"rabbitmq.api_url {url!r}: expected http(s)://host:port")
        self.url = url.rstrip("/")
        self.user = user
        self.verify = verify
        self.timeout = float(timeout)
        self._headers = None
        self._password = password
        self._pool = None
        self.requests = 0             # for benchmarks and tests: the one-request promise

    def _manager(self):
        if self._pool is None:
            import urllib3
            kwargs = {"retries": False, "timeout": urllib3.Timeout(
                connect=min(3.0, self.timeout), read=self.timeout), "maxsize": 4}
            if self.url.startswith("https"):
                # urllib3 takes the context as it is: no system CAs added to a
                # bundle, and its verify mode (CERT_NONE for verify: false) kept.
                kwargs["ssl_context"] = self._tls_context()
                if self.verify is False:
                    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            self._pool = urllib3.PoolManager(**kwargs)
            self._headers = urllib3.make_headers(basic_auth=f"{self.user}:{self._password}",
                                                 accept_encoding="gzip", keep_alive=True)
            # No "accept: application/json": 3.10 answers 406 to DELETE .../contents with it.
        return self._pool

    def _tls_context(self):
        """The one TLS client context (autoremedy/clients/tls.py) for ``verify``. A
        bundle that is not there is this configuration's error, said before any
        connection (not a "node unreachable" the checks would fall back from)."""
        from autoremedy.clients.tls import client_context
        if isinstance(self.verify, str) and not os.path.isfile(self.verify):
            raise ApiError(f"rabbitmq.verify: CA bundle {self.verify} does not exist")
        return client_context(self.verify)

    def request(self, method, api_path, params=None, body=None, raw=False):
        """One call: parsed JSON (None for an empty body). ``api_path`` is under /api/."""
        pool = self._manager()
        import urllib3
        url = f"{self.url}/api/{api_path}"
        if params:
            url += "?" + urlencode(params)
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        self.requests += 1
        try:
            resp = pool.request(method, url, body=data, headers=headers, redirect=False)
        except urllib3.exceptions.SSLError as exc:
            raise ApiUnavailable(f"management API {self.url} unreachable: {_tls_reason(exc)}") from None
        except urllib3.exceptions.HTTPError as exc:
            raise ApiUnavailable(f"management API {self.url} unreachable: {_reason(exc)}") from None
        status = resp.status
        text = resp.data
        if status == 401:
            raise ApiAuthError(f"management API {self.url} rejected the credentials of user "
                               f"{self.user!r} (401)", status)
        if status == 403:
            raise ApiAuthError(f"management API {self.url}: user {self.user!r} is not allowed "
                               f"to {method} /api/{api_path} (403)", status)
        if status == 404:
            raise NotFound(f"{method} /api/{api_path}: not found (404)", status)
        if status >= 400:
            raise ApiError(f"management API {method} /api/{api_path}: HTTP {status}: "
                           f"{_error_text(text)}", status)
        if raw:
            return text
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except ValueError:
            snippet = " ".join(text[:60].decode("utf-8", "replace").split())
            raise ApiError(f"management API {self.url} returned invalid JSON for /api/{api_path} "
                           f"(HTTP {status}, starts {snippet!r})", status) from None

    def get(self, api_path, **params):
        return self.request("GET", api_path, params or None)

    def put(self, api_path, body):
        return self.request("PUT", api_path, body=body)

    def post(self, api_path, body):
        return self.request("POST", api_path, body=body)

    def delete(self, api_path):
        return self.request("DELETE", api_path)

    # -- the calls the checks and remediations make -----------------------------
    def queues(self, vhost=None, columns=None, totals_only=False, name_regex=None):
        """Every queue (of ``vhost``) in ONE request, whatever their number.

        ``totals_only`` asks for ``disable_stats=true&enable_queue_totals=true``
        (measured 0.34 s vs 0.75 s for 5,000 queues) which drops consumers and rates.
        ``name_regex`` filters server side; the API only filters in paginated
        mode, so it pages with the largest page size (500) and follows the pages.
        """
        where = "queues" if vhost is None else f"queues/{path(vhost)}"
        params = {}
        if columns:
            params["columns"] = ",".join(columns)
        if totals_only:
            params.update(disable_stats="true", enable_queue_totals="true")
        if name_regex is None:
            rows = self.get(where, **params)
            return _expect_list(rows, where)
        params.update(name=name_regex, use_regex="true", page_size=500)
        rows, page = [], 1
        while True:
            body = self.get(where, page=page, **params)
            if not isinstance(body, dict) or not isinstance(body.get("items"), list):
                raise ApiError(f"management API: unexpected answer for /api/{where} (page {page})")
            rows.extend(body["items"])
            if page >= int(body.get("page_count") or 1):
                return rows
            page += 1

    def queue(self, vhost, name, columns=None):
        params = {"columns": ",".join(columns)} if columns else {}
        return self.get(f"queues/{path(vhost, name)}", **params)

    def definitions(self):
        return self.get("definitions")

    def close(self):
        if self._pool is not None:
            self._pool.clear()


def _expect_list(rows, where):
    if not isinstance(rows, list):
        raise ApiError(f"management API: /api/{where} did not return a list")
    return rows


def _reason(exc):
    """The root cause of a urllib3 failure in a few words."""
    inner = getattr(exc, "reason", None) or exc
    text = str(inner)
    for word in ("Connection refused", "timed out", "Name or service not known",
                 "Connection reset", "certificate verify failed", "Remote end closed"):
        if word.lower() in text.lower():
            return word.lower()
    return " ".join(text.split())[:160]


def _tls_reason(exc):
    """A TLS failure in words an operator can act on: the certificate not verified
    (which is rabbitmq.verify's business) or another handshake error."""
    import ssl
    inner = exc.args[0] if exc.args and isinstance(exc.args[0], Exception) else exc
    if isinstance(inner, ssl.SSLCertVerificationError):
        return (f"TLS verification failed: {inner.verify_message}; set rabbitmq.verify to the "
                "CA bundle that signed the management API's certificate")
    return f"TLS error: {getattr(inner, 'reason', None) or _reason(exc)} (is the URL's scheme right?)"


def _error_text(body):
    try:
        data = json.loads(body)
        return str(data.get("reason") or data.get("error") or data).strip()[:200]
    except (ValueError, AttributeError):
        return " ".join(body[:200].decode("utf-8", "replace").split())


# --- the command-line tools -------------------------------------------------------

def ctl(tool, node, *args):
    """argv for rabbitmqctl / rabbitmq-diagnostics aimed at ``node`` (always -n: a
    call without it goes to the default node, which may be somebody else's)."""
    if tool not in ("rabbitmqctl", "rabbitmq-diagnostics", "rabbitmq-plugins", "rabbitmq-queues",
                    "rabbitmq-streams"):
        raise ValueError(f"not a RabbitMQ tool: {tool}")
    return [tool, "-q", "-n", node, *args]


def run_ctl(settings_, tool, *args, node=None, runner=None, timeout=30.0, input=None):
    """Run a RabbitMQ CLI call for the configured node with its environment; a
    CLI call boots an Elixir VM (~0.6 s), so callers use them only as fallbacks."""
    from autoremedy.contract import execute
    runner = runner or execute.run
    argv = ctl(tool, node or settings_.node_name, *args)
    kwargs = {"timeout": timeout, "env": dict(settings_.node_env)}
    if input is not None:
        kwargs["input"] = input
    return runner(argv, **kwargs)


# --- AMQP (pika) ------------------------------------------------------------------------

def amqp_connection(settings_, vhost, timeout=None):
    """A pika BlockingConnection to ``vhost`` with the API credentials."""
    import pika  # only the AMQP fallback and the consume/republish move pay for pika
    host = (settings_.amqp or {}).get("host") or urlsplit(settings_.api_url).hostname or "127.0.0.1"
    port = (settings_.amqp or {}).get("port", 5672)
    timeout = settings_.timeout if timeout is None else timeout
    params = pika.ConnectionParameters(
        host=host, port=port, virtual_host=vhost,
        credentials=pika.PlainCredentials(settings_.user, settings_.password),
        socket_timeout=timeout, blocked_connection_timeout=timeout,
        stack_timeout=timeout, connection_attempts=1, heartbeat=0)
    if (settings_.amqp or {}).get("tls"):
        from autoremedy.clients.tls import client_context
        # A CA bundle is trusted alone, as the management API client does with it.
        params.ssl_options = pika.SSLOptions(client_context(settings_.verify), host)
    return pika.BlockingConnection(params)


def amqp_error(exc):
    """One line for a pika failure."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:200]
