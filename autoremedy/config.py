"""One YAML configuration file, validated with messages that name the bad key.

Where it comes from: ``--config FILE``, else ``$AUTOREMEDY_CONFIG``, else
``/etc/autoremedy/autoremedy.yaml``; a missing default file means built-in
defaults (StackStorm not configured = unreachable). The settings Sensu and
Zabbix pass through the environment override the file (docs/handlers.md,
"Commands"). Secrets are read from a file or the environment, never
taken from argv.

The schema below covers the shared sections. Each remediation class validates
its own keys under ``remediations.<class>`` (``Remediation.schema``), so this
module never has to import the remediations.
"""
import copy
import os

from autoremedy.contract import units

DEFAULT_PATH = "/etc/autoremedy/autoremedy.yaml"
DEFAULT_STATE_DIR = "/var/lib/autoremedy"


class ConfigError(Exception):
    """The configuration is unusable; the text names the file and the key."""


# --- schema -------------------------------------------------------------------
# A schema node is: a Python type or tuple of types; a dict of known keys; Map(node)
# for free-form keys; List(node); or a callable converter (units.size/duration).

class Map:
    def __init__(self, node):
        self.node = node


class List:
    def __init__(self, node):
        self.node = node


class Any:
    """Left to a more specific validator (a remediation's own schema)."""


Number = (int, float)
Duration = units.duration
Size = units.size

GUARDS = {
    "rate_limit": {"max": int, "per": Duration},       # runs per target and class
    "global_cap": {"max": int, "per": Duration},       # runs per class, all targets
    "flap": {"changes": int, "window": Duration},      # status changes that mean "flapping"
    "lock_timeout": Duration,                          # wait for a concurrent run of the same target
    "min_occurrences": int,                            # act only after N consecutive failures
    # distinct hosts (node scope) / targets (api scope) per class and window,
    # fleet-wide with a coordination backend (docs/fleet.md); absent: no cap
    "fleet_cap": {"max": int, "per": Duration},
}

SCHEMA = {
    "state_dir": str,
    "dry_run": bool,
    "maintenance_file": str,
    "hostname": str,
    "stackstorm": {
        "url": str,
        "webhook": str,
        "api_key_file": str,
        "verify": (bool, str),          # true, false, or a CA bundle path
        "connect_timeout": Number,
        "read_timeout": Number,
        "breaker_cooldown": Duration,
        "trigger": str,                 # trigger type when webhook is the generic "st2"
        "attach_bundle": bool,          # escalations carry an incident bundle (collect)
        "delivery": str,                # direct | forwarder (replay --follow delivers)
    },
    "spool": {"warning_depth": int, "critical_depth": int,
              "warning_age": Duration, "critical_age": Duration,
              "max_event_size": Size,   # larger inputs are dead-lettered
              # dead letters (autoremedy.pipeline.deadletter): bytes kept of one input, and
              # the folder's caps (the oldest letters are pruned, audited)
              "deadletter_max_file": Size, "deadletter_max_total": Size,
              "deadletter_max_count": int,
              # a handler run that reached StackStorm delivers at most this many
              # spooled events in at most this long (0: never; docs/handlers.md)
              "drain_max_events": int, "drain_max_time": Duration},
    # The handlers' local fallback (docs/security.md "The alert path's fallback"):
    # gate auto | always | never, and the sudo gate it runs (an absolute path).
    "fallback": {"gate": str, "gate_command": str},
    "guards": GUARDS,
    # Guards across hosts (autoremedy.clients.coordination, docs/fleet.md); default: local.
    "coordination": {"backend_url": str, "unreachable": str, "timeout": Duration,
                     "lock_ttl": Duration, "namespace": str},
    # Event -> (failure class, allowlisted target); see docs/handlers.md "Routing".
    "routes": List({"check": str, "class": str, "target": str, "source": str,
                    "host": str, "labels": Map(str), "enabled": bool, "fallback": str}),
    "remediations": Map(Any),
    "checks": Map(Any),
    "collect": Any,
    "rabbitmq": Any,
    "mysql": Any,
    "openstack": Any,
}

DEFAULTS = {
    "state_dir": DEFAULT_STATE_DIR,
    "dry_run": False,
    "maintenance_file": "/etc/autoremedy/maintenance",
    "stackstorm": {
        "url": "",
        "webhook": "autoremedy",
        "verify": True,
        "connect_timeout": 2.0,
        "read_timeout": 5.0,
        "breaker_cooldown": 60.0,
        "trigger": "autoremedy.event",
        "attach_bundle": False,
    },
    "spool": {"warning_depth": 100, "critical_depth": 1000,
              "warning_age": 900.0, "critical_age": 3600.0,
              "max_event_size": 1 << 20, "deadletter_max_file": 4 << 20,
              "deadletter_max_total": 64 << 20, "deadletter_max_count": 1000,
              "drain_max_events": 10, "drain_max_time": 2.0},
    "fallback": {"gate": "auto", "gate_command": "/usr/libexec/autoremedy/remediate"},
    "guards": {
        "rate_limit": {"max": 3, "per": 3600.0},
        "global_cap": {"max": 10, "per": 3600.0},
        "flap": {"changes": 6, "window": 1800.0},
        "lock_timeout": 120.0,
        "min_occurrences": 1,
    },
    "coordination": {"backend_url": "local", "unreachable": "refuse", "timeout": 2.0,
                     "lock_ttl": 30.0, "namespace": "autoremedy"},
    "routes": [],
    "remediations": {},
    "checks": {},
}

_TYPE_NAMES = {str: "a string", bool: "true or false", int: "an integer", float: "a number",
               list: "a list", dict: "a mapping"}


def _type_name(node):
    if node == Number:
        return "a number"
    if isinstance(node, tuple):
        return " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in node)
    return _TYPE_NAMES.get(node, getattr(node, "__name__", str(node)))


def validate(value, node, where):
    """Check ``value`` against ``node``; return it with converters applied."""
    if node is Any or isinstance(node, Any):
        return value
    if isinstance(node, dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        out = {}
        for key, item in value.items():
            if key not in node:
                known = ", ".join(sorted(node))
                raise ConfigError(f"{_join(where, key)}: unknown key (known here: {known})")
            out[key] = validate(item, node[key], _join(where, key))
        return out
    if isinstance(node, Map):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return {k: validate(v, node.node, _join(where, str(k))) for k, v in value.items()}
    if isinstance(node, List):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        return [validate(v, node.node, f"{where}[{i}]") for i, v in enumerate(value)]
    if node in (units.size, units.duration):
        try:
            return node(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
    types = node if isinstance(node, tuple) else (node,)
    # bool is an int in Python; a YAML 'yes' must not pass as a count.
    if isinstance(value, bool) and bool not in types:
        raise ConfigError(f"{where}: expected {_type_name(node)}, got {value!r}")
    if float in types and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, types):
        raise ConfigError(f"{where}: expected {_type_name(node)}, got {value!r}")
    return value


def _join(where, key):
    return f"{where}.{key}" if where else str(key)


def merge(base, override):
    """Deep-merge mappings; lists and scalars from ``override`` replace."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def origin(config):
    """What a configuration error names first: the file, or "configuration" for
    built-in defaults and a Config made in memory."""
    return config.path or "configuration"


def section(config, key, schema, defaults=None, rules=None):
    """The one way to read a section the core schema leaves to its module.

    ``key`` is dotted (``"rabbitmq"``, ``"openstack.consistency"``); an absent or
    empty section is ``{}``. Returns the section validated against ``schema``
    (converters applied) and deep-merged over ``defaults``. ``rules(merged)`` is
    the module's own cross-field check: it raises ConfigError naming the full
    dotted key, and every error, the schema's and the rules', leaves here as
    ``<file>: <dotted key>: <what is wrong>``, one line.
    """
    raw = config.get(key)
    try:
        merged = merge(defaults or {}, validate({} if raw is None else raw, schema, key))
        if rules is not None:
            rules(merged)
    except ConfigError as exc:
        raise ConfigError(f"{origin(config)}: {exc}") from None
    return merged


# --- loading ------------------------------------------------------------------

def _truthy(text):
    return str(text).strip().lower() in ("1", "true", "yes", "on")


def env_overrides(environ):
    """The settings Sensu and Zabbix pass by environment, as a partial config."""
    out, st2 = {}, {}
    if environ.get("AUTOREMEDY_ST2_URL"):
        st2["url"] = environ["AUTOREMEDY_ST2_URL"]
    if environ.get("AUTOREMEDY_ST2_WEBHOOK"):
        st2["webhook"] = environ["AUTOREMEDY_ST2_WEBHOOK"]
    if environ.get("AUTOREMEDY_ST2_API_KEY_FILE"):
        st2["api_key_file"] = environ["AUTOREMEDY_ST2_API_KEY_FILE"]
    verify = environ.get("AUTOREMEDY_ST2_VERIFY")
    if verify:
        low = verify.strip().lower()
        st2["verify"] = (True if low in ("1", "true", "yes", "on")
                         else False if low in ("0", "false", "no", "off") else verify)
    if st2:
        out["stackstorm"] = st2
    if environ.get("AUTOREMEDY_STATE_DIR"):
        out["state_dir"] = environ["AUTOREMEDY_STATE_DIR"]
    if environ.get("AUTOREMEDY_DRY_RUN"):
        out["dry_run"] = dry_run_flag(environ["AUTOREMEDY_DRY_RUN"])
    return out


_YES = ("1", "true", "yes", "on", "y", "enabled", "enable", "dry", "dry-run", "dryrun")
_NO = ("0", "false", "no", "off", "n", "disabled", "disable", "")


def dry_run_flag(text, warn=True):
    """AUTOREMEDY_DRY_RUN fails closed: a value that is not clearly "no" means
    dry-run (said once on stderr), never a real run."""
    low = str(text).strip().lower()
    if low in _YES:
        return True
    if low in _NO:
        return False
    if warn:
        import sys
        sys.stderr.write(f"autoremedy: AUTOREMEDY_DRY_RUN={str(text)[:40]!r} is neither yes nor "
                         "no: dry-run (change nothing)\n")
    return True


def read_yaml(path):
    try:
        with open(path, "rb") as handle:
            text = handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    import yaml  # only the commands that need configuration pay for the YAML import
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


class Config:
    """Validated settings. ``data`` is the merged tree (defaults < file < environment)."""

    def __init__(self, data, path=None, environ=None):
        self.path = path
        self.environ = os.environ if environ is None else environ
        where = path or "configuration"
        try:
            checked = validate(data, SCHEMA, "")
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        self.data = merge(DEFAULTS, checked)
        delivery = self.data["stackstorm"].get("delivery", "direct")
        if delivery not in ("direct", "forwarder"):
            raise ConfigError(f"{where}: stackstorm.delivery: {delivery!r} is not direct or "
                              "forwarder")
        gate = self.data["fallback"]["gate"]
        if gate not in ("auto", "always", "never"):
            raise ConfigError(f"{where}: fallback.gate: {gate!r} is not auto, always or never")
        if not os.path.isabs(self.data["fallback"]["gate_command"]):
            raise ConfigError(f"{where}: fallback.gate_command: "
                              f"{self.data['fallback']['gate_command']!r} is not an absolute path")
        for key in ("drain_max_events", "drain_max_time"):
            if self.data["spool"][key] < 0:
                raise ConfigError(f"{where}: spool.{key}: must not be negative")
        if "coordination" in checked:
            from autoremedy.clients.coordination import check
            problem = check(self)
            if problem:
                raise ConfigError(f"{where}: {problem}")

    @classmethod
    def load(cls, path=None, environ=None):
        environ = os.environ if environ is None else environ
        explicit = path or environ.get("AUTOREMEDY_CONFIG")
        target = explicit or DEFAULT_PATH
        data = read_yaml(target)
        if data is None:
            if explicit:
                raise ConfigError(f"{target}: no such configuration file")
            data, target = {}, None
        data = merge(data, env_overrides(environ))
        return cls(data, target, environ)

    def get(self, dotted, default=None):
        node = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    @property
    def state_dir(self):
        return self.data["state_dir"]

    @property
    def dry_run(self):
        return bool(self.data["dry_run"])

    @property
    def hostname(self):
        if self.data.get("hostname"):
            return self.data["hostname"]
        import socket
        return socket.gethostname()

    def remediation(self, cls_name):
        """The raw section for one failure class ({} when absent = not enabled)."""
        return self.data["remediations"].get(cls_name) or {}

    def guards(self, cls_name):
        """Class guard limits: the global defaults overlaid by the class's own."""
        return section(self, f"remediations.{cls_name}.guards", GUARDS, self.data["guards"])

    def st2_api_key(self):
        """API key from $AUTOREMEDY_ST2_API_KEY or the key file; never from argv."""
        key = self.environ.get("AUTOREMEDY_ST2_API_KEY")
        if key:
            return key.strip()
        path = self.get("stackstorm.api_key_file")
        if not path:
            return None
        try:
            with open(path, encoding="utf-8") as handle:
                return handle.read().strip() or None
        except OSError as exc:
            raise ConfigError(f"stackstorm.api_key_file {path}: {exc.strerror}") from None


def state_dir(environ=None):
    """The state directory for commands that do not otherwise load the YAML
    (checks): environment first, then the file only if one is configured."""
    environ = os.environ if environ is None else environ
    if environ.get("AUTOREMEDY_STATE_DIR"):
        return environ["AUTOREMEDY_STATE_DIR"]
    explicit = environ.get("AUTOREMEDY_CONFIG")
    if explicit or os.path.exists(DEFAULT_PATH):
        return Config.load(explicit, environ).state_dir
    return DEFAULT_STATE_DIR
