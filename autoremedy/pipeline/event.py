"""One normalised ``Event`` from any source; the parsers live in autoremedy.pipeline.sources.

Sources:

- ``sensu-go``      pipe-handler stdin (Sensu Go events reference,
                    docs.sensu.io/sensu-go/latest/observability-pipeline/observe-events/events/);
- ``sensu-classic`` Sensu Core 1.x events (docs.sensu.io/sensu-core/1.8/reference/events/);
- ``zabbix``        alert-script media type (SENDTO SUBJECT MESSAGE) or the parameter
                    object of a webhook media type (Zabbix's own templates/media/*);
- ``hook``          the node side: a fresh check run on this node.

``autoremedy.pipeline.sources.sensu``, ``.zabbix`` and ``.hook`` build Events; ``from_sensu``,
``from_zabbix``, ``from_zabbix_params`` and ``from_check`` are also importable from
here (loaded on first use, so importing this module stays cheap).

Every event gets a stable ``id``, used as the StackStorm ``St2-Trace-Tag`` and as
the idempotency key of the spool and of the remediation guards: the source's own
event id where it has one, else a hash of source, host, check, status and the
incident start. Ids become HTTP header values, so anything that is not a plain
token is hashed rather than passed on.

Input is hostile until proven otherwise: every malformed input (empty, not UTF-8,
not JSON, not an object, missing or mistyped keys, numbers out of range or not
finite, too large, nested too deep) raises ``MalformedEvent`` with a one-line
reason, and a parser never raises anything else (autoremedy.pipeline.sources.total);
nothing here ever reaches a shell or a path.
"""
import hashlib
import json
import math
import re
import time

from autoremedy.contract.result import Status

SOURCES = ("sensu-go", "sensu-classic", "zabbix", "hook")
PROBLEM, RESOLVE, FLAPPING, UPDATE = "problem", "resolve", "flapping", "update"
# Something the monitor reports that is not a check verdict (a Zabbix discovery,
# autoregistration, internal or service event): forwarded, never remediated.
NOTICE = "notice"

MAX_OUTPUT = 32 * 1024          # normalised output; the raw event keeps everything
MAX_NAME = 255                  # host and check names (DNS names are <= 253)
MAX_LABELS = 64
MAX_TIME = 253402300799.0       # 9999-12-31T23:59:59Z: any later "timestamp" is garbage
MAX_COUNT = 2 ** 31 - 1         # statuses, occurrences: Sensu Go keeps them in int32
# Both are used with fullmatch(): a '$' anchor would let "id\n" through.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}")

_PARSERS = {"from_sensu": "sensu", "from_zabbix": "zabbix", "from_zabbix_params": "zabbix",
            "from_check": "hook"}


def __getattr__(name):
    """``from autoremedy.pipeline.event import from_sensu`` keeps working; the parser module
    is imported only when asked for."""
    if name in _PARSERS:
        import importlib
        return getattr(importlib.import_module(f"autoremedy.pipeline.sources.{_PARSERS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class MalformedEvent(ValueError):
    """The input is not an event we can trust; the text is the one-line reason."""


class Event:
    __slots__ = ("id", "source", "host", "check", "status", "status_code", "output",
                 "occurrences", "action", "silenced", "history", "started", "timestamp",
                 "labels", "namespace", "extra", "raw", "derived_id")

    def __init__(self, source, host, check, status, output="", id=None, occurrences=None,
                 action=None, silenced=False, history=(), started=None, timestamp=None,
                 labels=None, namespace=None, extra=None, raw=None, status_code=None):
        if source not in SOURCES:
            raise ValueError(f"unknown event source {source!r}")
        self.source = source
        self.host = _name(host, "host")
        self.check = _name(check, "check")
        self.status = Status.coerce(status)
        self.status_code = _status_code(status) if status_code is None else status_code
        self.output = _clip(output)
        self.occurrences = occurrences
        self.action = action or (RESOLVE if self.status is Status.OK else PROBLEM)
        self.silenced = bool(silenced)
        self.history = [int(s) for s in history]
        self.started = _finite_or_none(started)
        self.timestamp = time.time() if timestamp is None else _finite_or_none(timestamp)
        self.labels = dict(labels or {})
        self.namespace = namespace
        self.extra = dict(extra or {})
        self.raw = raw
        self.derived_id = not id
        self.id = safe_id(source, id) if id else stable_id(
            source, self.host, self.check, int(self.status), self.started)

    def restart(self, started):
        """The same event with a known incident start (only meaningful for an id
        derived from it: a source's own id is kept)."""
        self.started = _finite_or_none(started)
        if self.derived_id:
            self.id = stable_id(self.source, self.host, self.check, int(self.status), self.started)
        return self

    @property
    def spool_key(self):
        """One spool entry per event id *and* state: Sensu Classic keeps its id across
        an incident, so a resolve must not overwrite the problem it resolves."""
        text = f"{self.id}\0{self.action}\0{int(self.status)}"
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    @property
    def is_problem(self):
        return self.action in (PROBLEM, FLAPPING) and self.status is not Status.OK

    def to_dict(self, with_raw=False):
        out = {"id": self.id, "source": self.source, "host": self.host, "check": self.check,
               "status": int(self.status), "state": self.status.name,
               "status_code": self.status_code, "output": self.output,
               "occurrences": self.occurrences, "action": self.action,
               "silenced": self.silenced, "history": self.history, "started": self.started,
               "timestamp": self.timestamp, "labels": self.labels,
               "namespace": self.namespace, "extra": self.extra}
        if with_raw:
            out["raw"] = self.raw
        return out

    @classmethod
    def from_dict(cls, data):
        """Rebuild an event from ``to_dict(with_raw=True)`` (the spool's copy)."""
        return cls(data["source"], data["host"], data["check"], data["status"],
                   data.get("output", ""), id=data["id"], occurrences=data.get("occurrences"),
                   action=data.get("action"), silenced=data.get("silenced", False),
                   history=data.get("history") or (), started=data.get("started"),
                   timestamp=data.get("timestamp"), labels=data.get("labels"),
                   namespace=data.get("namespace"), extra=data.get("extra"),
                   raw=data.get("raw"), status_code=data.get("status_code"))

    def describe(self):
        """'sensu-go web-01/check_http CRITICAL (id 3c3e68f6-...)' for one-line messages."""
        return f"{self.source} {printable(self.host)}/{printable(self.check)} " \
               f"{self.status.name} (id {self.id})"

    def __repr__(self):
        return f"Event({self.describe()})"


# --- ids and small helpers -------------------------------------------------------

def stable_id(source, host, check, status, started):
    text = "\0".join(str(x) for x in (source, host, check, status, started))
    return f"{source}-{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:32]}"


def safe_id(source, value):
    """The source's id when it is a plain token, else a hash of it (ids become
    header values: no CR/LF, no spaces, bounded length)."""
    text = str(value)
    if _SAFE_ID.fullmatch(text):
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{source}-h{digest}"


def printable(text, limit=200):
    """For terminal and log lines: no control characters, bounded."""
    text = str(text)
    clean = "".join(c if c.isprintable() else "?" for c in text[:limit])
    return clean + ("..." if len(text) > limit else "")


def _name(value, what):
    if not isinstance(value, str) or not value.strip():
        raise MalformedEvent(f"{what} name is missing or empty")
    if len(value) > MAX_NAME:
        raise MalformedEvent(f"{what} name is longer than {MAX_NAME} characters")
    return value


def _status_code(status):
    """The monitor's own status number (Sensu keeps custom codes such as 127)."""
    if isinstance(status, int) and not isinstance(status, bool) and 0 <= status <= MAX_COUNT:
        return int(status)
    return int(Status.coerce(status))


def _finite_or_none(value):
    """A time that can go into JSON: a finite number within MAX_TIME, else None
    (the POST body must never carry Infinity or NaN)."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    if not math.isfinite(number) or not -MAX_TIME <= number <= MAX_TIME:
        return None
    return value


def _clip(text):
    text = "" if text is None else str(text)
    if len(text) > MAX_OUTPUT:
        return text[:MAX_OUTPUT] + f"... [truncated, {len(text)} characters]"
    return text


def kind(value):
    """'an object', 'a string' ... for one-line reasons."""
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null", int: "a number", float: "a number"}.get(type(value), type(value).__name__)


# --- decoding ---------------------------------------------------------------------

def _no_constants(name):
    raise MalformedEvent(f"JSON contains {name}, which is not valid JSON")


def _finite_float(text):
    value = float(text)
    if not math.isfinite(value):
        raise MalformedEvent(f"JSON number {text[:40]} is out of range (not a finite double)")
    return value


def loads(text, what="input"):
    """Strict JSON: NaN/Infinity refused, and so is a number that overflows a
    double (Python would read 1e999 as inf, which json.dumps writes back as
    'Infinity': not JSON, and the raw event goes into the POST body). Too deep,
    or an integer of more than 4300 digits: a MalformedEvent, not a crash."""
    try:
        return json.loads(text, parse_constant=_no_constants, parse_float=_finite_float)
    except RecursionError:
        raise MalformedEvent(f"{what}: JSON nested too deeply") from None
    except MalformedEvent:
        raise
    except ValueError as exc:
        raise MalformedEvent(f"{what} is not JSON: {' '.join(str(exc).split())}") from None


def decode_json(data, max_size, what="input"):
    """bytes -> dict, or MalformedEvent with the reason."""
    if len(data) > max_size:
        raise MalformedEvent(f"{what} is {len(data)} bytes, larger than the limit of {max_size} "
                             "(spool.max_event_size)")
    if not data.strip():
        raise MalformedEvent(f"{what} is empty: no event")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedEvent(f"{what} is not valid UTF-8 (byte 0x{data[exc.start]:02x} "
                             f"at offset {exc.start})") from None
    value = loads(text, what)
    if not isinstance(value, dict):
        raise MalformedEvent(f"{what} must be a JSON object, got {kind(value)}")
    return value
