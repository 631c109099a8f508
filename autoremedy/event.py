"""One normalised ``Event`` from any source, and the parsers that build it.

Sources (reference/sensu.md §1-§3, reference/zabbix.md §4):

- ``sensu-go``      pipe-handler stdin: ``entity.metadata.name``, ``check.metadata.name``,
                    history as objects, ``is_silenced``, labels possibly absent;
- ``sensu-classic`` Core 1.x: ``client.name``, ``check.name``, ``action``, top-level
                    ``occurrences``, history as strings;
- ``zabbix``        alert-script media type (SENDTO SUBJECT MESSAGE, the message a JSON
                    body built from macros) or the webhook parameter object;
- ``hook``          the node side: a fresh check run on this node.

Every event gets a stable ``id``, used as the StackStorm ``St2-Trace-Tag`` and as
the idempotency key of the spool and of the remediation guards: the source's own
event id where it has one, else a hash of source, host, check, status and the
incident start. Ids become HTTP header values, so anything that is not a plain
token is hashed rather than passed on.

Input is hostile until proven otherwise: every malformed input (empty, not UTF-8,
not JSON, not an object, missing or mistyped keys, too large, nested too deep)
raises ``MalformedEvent`` with a one-line reason; nothing here ever reaches a
shell or a path.
"""
import hashlib
import json
import re
import time

from autoremedy.result import Status

SOURCES = ("sensu-go", "sensu-classic", "zabbix", "hook")
PROBLEM, RESOLVE, FLAPPING, UPDATE = "problem", "resolve", "flapping", "update"

MAX_OUTPUT = 32 * 1024          # normalised output; the raw event keeps everything
MAX_NAME = 255                  # host and check names (DNS names are <= 253)
MAX_LABELS = 64
# Both are used with fullmatch(): a '$' anchor would let "id\n" through.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}")
_MACRO = re.compile(r"\{[A-Z0-9_.$#]+\}")     # a Zabbix macro left unresolved


class MalformedEvent(ValueError):
    """The input is not an event we can trust; the text is the one-line reason."""


class Event:
    __slots__ = ("id", "source", "host", "check", "status", "status_code", "output",
                 "occurrences", "action", "silenced", "history", "started", "timestamp",
                 "labels", "namespace", "extra", "raw")

    def __init__(self, source, host, check, status, output="", id=None, occurrences=None,
                 action=None, silenced=False, history=(), started=None, timestamp=None,
                 labels=None, namespace=None, extra=None, raw=None, status_code=None):
        if source not in SOURCES:
            raise ValueError(f"unknown event source {source!r}")
        self.source = source
        self.host = _name(host, "host")
        self.check = _name(check, "check")
        self.status = Status.coerce(status)
        self.status_code = int(status) if status_code is None else status_code
        self.output = _clip(output)
        self.occurrences = occurrences
        self.action = action or (RESOLVE if self.status is Status.OK else PROBLEM)
        self.silenced = bool(silenced)
        self.history = [int(s) for s in history]
        self.started = started
        self.timestamp = time.time() if timestamp is None else timestamp
        self.labels = dict(labels or {})
        self.namespace = namespace
        self.extra = dict(extra or {})
        self.raw = raw
        self.id = safe_id(source, id) if id else stable_id(
            source, self.host, self.check, int(self.status), started)

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


def _clip(text):
    text = "" if text is None else str(text)
    if len(text) > MAX_OUTPUT:
        return text[:MAX_OUTPUT] + f"... [truncated, {len(text)} characters]"
    return text


def _labels(*maps):
    out = {}
    for where, value in maps:
        if value is None:
            continue
        if not isinstance(value, dict):
            raise MalformedEvent(f"{where} must be a mapping, got {_kind(value)}")
        for key, item in value.items():
            if len(out) >= MAX_LABELS:
                break
            out[str(key)[:MAX_NAME]] = item if isinstance(item, str) else json.dumps(item)
    return out


def _kind(value):
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null", int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _get(obj, path, kind=None, required=False):
    """obj['a']['b'] for path 'a.b', type-checked; MalformedEvent names the path."""
    node = obj
    for part in path.split("."):
        if not isinstance(node, dict):
            raise MalformedEvent(f"{path}: {part!r} is inside {_kind(node)}, not an object")
        if part not in node or node[part] is None:
            if required:
                raise MalformedEvent(f"{path} is missing")
            return None
        node = node[part]
    if kind is not None:
        ok = isinstance(node, kind) and not (isinstance(node, bool) and bool not in _tuple(kind))
        if not ok:
            raise MalformedEvent(f"{path} must be {_kind_name(kind)}, got {_kind(node)}")
    return node


def _tuple(kind):
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind):
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
             list: "an array", dict: "an object"}
    return " or ".join(names.get(k, k.__name__) for k in _tuple(kind))


# --- decoding ---------------------------------------------------------------------

def _no_constants(name):
    raise MalformedEvent(f"JSON contains {name}, which is not valid JSON")


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
    try:
        value = json.loads(text, parse_constant=_no_constants)
    except RecursionError:
        raise MalformedEvent(f"{what}: JSON nested too deeply") from None
    except ValueError as exc:
        if isinstance(exc, MalformedEvent):
            raise
        raise MalformedEvent(f"{what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise MalformedEvent(f"{what} must be a JSON object, got {_kind(value)}")
    return value


# --- Sensu --------------------------------------------------------------------------

def from_sensu(obj):
    """A Sensu Go or Sensu Classic event object -> Event."""
    if not isinstance(obj, dict):
        raise MalformedEvent(f"a Sensu event must be a JSON object, got {_kind(obj)}")
    if "entity" in obj:
        return _sensu_go(obj)
    if "client" in obj:
        return _sensu_classic(obj)
    raise MalformedEvent("neither a Sensu Go event (no 'entity') nor a Sensu Classic event "
                         "(no 'client')")


def _status(obj, path):
    value = _get(obj, path, int, required=True)
    if value < 0:
        raise MalformedEvent(f"{path} must not be negative, got {value}")
    return value


def _sensu_go(obj):
    status = _status(obj, "check.status")
    history = []
    for i, item in enumerate(_get(obj, "check.history", list) or []):
        if not isinstance(item, dict) or isinstance(item.get("status"), bool) \
                or not isinstance(item.get("status"), int):
            raise MalformedEvent(f"check.history[{i}] must be an object with an integer status")
        history.append(item)
    state = _get(obj, "check.state", str)
    action = {"passing": RESOLVE, "failing": PROBLEM, "flapping": FLAPPING}.get(state)
    silenced = bool(_get(obj, "check.is_silenced", bool)) or bool(_get(obj, "check.silenced", list))
    occurrences = _get(obj, "check.occurrences", int)
    executed = _get(obj, "check.executed", (int, float))
    return Event(
        "sensu-go", _get(obj, "entity.metadata.name", str, required=True),
        _get(obj, "check.metadata.name", str, required=True), status,
        _get(obj, "check.output", str) or "",
        id=_get(obj, "id", str), occurrences=occurrences, action=action, silenced=silenced,
        history=[h["status"] for h in history],
        started=_incident_start(status, history, _get(obj, "check.last_ok", (int, float)), executed),
        timestamp=_get(obj, "timestamp", (int, float)) or executed,
        labels=_labels(("entity.metadata.labels", _get(obj, "entity.metadata.labels")),
                       ("check.metadata.labels", _get(obj, "check.metadata.labels"))),
        namespace=_get(obj, "metadata.namespace", str) or _get(obj, "entity.metadata.namespace", str),
        extra={k: v for k, v in (("entity_class", _get(obj, "entity.entity_class", str)),
                                 ("proxy_entity_name", _get(obj, "check.proxy_entity_name", str)),
                                 ("occurrences_watermark", _get(obj, "check.occurrences_watermark", int)),
                                 ("hooks", _hooks(_get(obj, "check.hooks", list))))
               if v},
        raw=obj)


def _hooks(items):
    """Check-hook results the agent ran on the node before the event was made
    (reference/sensu.md §5): how the backend learns what the node hook did."""
    out = []
    for item in items or []:
        if not isinstance(item, dict):
            continue
        meta = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
        status = item.get("status")
        out.append({"name": str(meta.get("name", ""))[:MAX_NAME],
                    "command": str(item.get("command", ""))[:1024],
                    "status": status if isinstance(status, int) and not isinstance(status, bool) else None,
                    "output": str(item.get("output", ""))[-2048:]})   # the verdict is last
    return out[:16]


def _incident_start(status, history, last_ok, executed):
    """When the current status began: the first run of the trailing same-status
    streak in the history, else the last OK, else this execution."""
    start = None
    for item in reversed(history):
        if item.get("status") != status:
            break
        start = item.get("executed", start)
    if start is None and status != 0:
        start = last_ok
    return start if start is not None else executed


# Sensu Core 1.x check attributes (archived/sensu-core/1.8/reference/checks.md,
# events.md); anything else in ``check`` is a custom attribute, the Classic
# counterpart of a Sensu Go label (reference/sensu.md §3).
CLASSIC_CHECK_KEYS = frozenset("""
    name type command status output history issued executed subscribers interval handler
    handlers source total_state_change thresholds standalone publish occurrences refresh
    dependencies ttl ttl_status timeout low_flap_threshold high_flap_threshold aggregate
    aggregates subdue hooks proxy_requests extension duration auto_resolve force_resolve
    handle cron stdin contacts origin labels silenced silenced_by last_ok
""".split())


def _custom(section, known):
    """Scalar custom attributes of a Classic check, as labels."""
    return {k: v for k, v in section.items()
            if k not in known and isinstance(v, (str, int, float)) and not isinstance(v, bool)}


def _sensu_classic(obj):
    status = _status(obj, "check.status")
    history = []
    for i, item in enumerate(_get(obj, "check.history", list) or []):
        text = str(item)
        if not text.lstrip("-").isdigit():
            raise MalformedEvent(f"check.history[{i}] must be a status number, got {text[:20]!r}")
        history.append(int(text))
    action = _get(obj, "action", str) or "create"
    if action not in ("create", "resolve", "flapping"):
        raise MalformedEvent(f"action must be create, resolve or flapping, got {action[:20]!r}")
    executed = _get(obj, "check.executed", (int, float))
    return Event(
        "sensu-classic", _get(obj, "client.name", str, required=True),
        _get(obj, "check.name", str, required=True), status,
        _get(obj, "check.output", str) or "",
        id=_get(obj, "id", str), occurrences=_get(obj, "occurrences", int),
        action={"create": PROBLEM, "resolve": RESOLVE, "flapping": FLAPPING}[action],
        silenced=bool(_get(obj, "silenced", bool)), history=history,
        started=_get(obj, "last_ok", (int, float)) or executed,
        timestamp=_get(obj, "timestamp", (int, float)) or executed,
        labels=_labels(("client.labels", _get(obj, "client.labels")),
                       ("check.labels", _get(obj, "check.labels")),
                       ("custom check attributes", _custom(obj["check"], CLASSIC_CHECK_KEYS))),
        extra={k: v for k, v in (("address", _get(obj, "client.address", str)),
                                 ("source", _get(obj, "check.source", str)))
               if v},
        raw=obj)


# --- Zabbix -------------------------------------------------------------------------
# The message body is built by Zabbix from macros (docs/handlers.md has the template).
# Zabbix substitutes macros textually, without JSON escaping, so a trigger name with a
# quote breaks strict JSON: the template keeps one key per line and _lenient_json reads
# such a body line by line. An unresolved macro is left as its literal "{EVENT.X}".

ZABBIX_KEYS = {   # accepted spellings (lower-cased: message keys, webhook parameter names)
    "event_id": "event_id", "eventid": "event_id", "event.id": "event_id",
    "recovery_id": "recovery_id", "recovery_event_id": "recovery_id",
    "recoveryid": "recovery_id", "recoveryeventid": "recovery_id", "event.recovery.id": "recovery_id",
    "event_value": "event_value", "eventvalue": "event_value", "value": "event_value",
    "event.value": "event_value",
    "event_status": "event_status", "status": "event_status", "event.status": "event_status",
    "severity": "severity", "nseverity": "severity", "event.nseverity": "severity",
    "event.severity": "severity",
    "host": "host", "host.host": "host", "hostname": "host",
    "trigger": "trigger", "trigger_name": "trigger", "triggername": "trigger",
    "trigger.name": "trigger", "event_name": "trigger", "event.name": "trigger", "name": "trigger",
    "trigger_id": "trigger_id", "trigger.id": "trigger_id", "triggerid": "trigger_id",
    "item_key": "item_key", "itemkey": "item_key", "item.key": "item_key", "item.key1": "item_key",
    "item_value": "item_value", "itemvalue": "item_value", "item.lastvalue": "item_value",
    "item.value": "item_value", "item.value1": "item_value",
    "opdata": "opdata", "event.opdata": "opdata", "operational_data": "opdata",
    "clock": "clock", "event_date": "date", "event.date": "date", "date": "date",
    "event_time": "time", "event.time": "time", "time": "time",
    "update_action": "update_action", "event.update.action": "update_action",
    "tags": "tags", "eventtags": "tags", "event.tags": "tags", "event.tagsjson": "tags",
    "tagsjson": "tags",
    "message": "message", "subject": "subject", "to": "sendto", "sendto": "sendto",
}


def from_zabbix(sendto, subject, message, max_size=1 << 20):
    """The three alert-script arguments -> Event."""
    for i, arg in enumerate((sendto, subject, message), 1):
        if not isinstance(arg, str):
            raise MalformedEvent(f"argument {i} must be text")
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            raise MalformedEvent(f"argument {i} is not valid UTF-8") from None
    if len(message) + len(subject) > max_size:
        raise MalformedEvent(f"alert is larger than the limit of {max_size} bytes")
    fields = _zabbix_message(message)
    fields.setdefault("subject", subject)
    fields.setdefault("sendto", sendto)
    return _zabbix_event(fields, {"sendto": sendto, "subject": subject, "message": message})


def from_zabbix_params(obj):
    """Webhook-style parameters (the media type's named parameters as one JSON
    object: URL, To, Subject, Message, EventID ...) -> Event. A ``Message`` that
    holds the JSON body is merged under the named parameters."""
    if not isinstance(obj, dict):
        raise MalformedEvent(f"webhook parameters must be a JSON object, got {_kind(obj)}")
    fields = _normalise_keys(obj)
    message = fields.pop("message", None)
    if isinstance(message, str) and message.strip().startswith("{"):
        for key, value in _zabbix_message(message).items():
            fields.setdefault(key, value)
    return _zabbix_event(fields, obj)


def _normalise_keys(obj):
    out = {}
    for key, value in obj.items():
        name = ZABBIX_KEYS.get(str(key).strip().lower())
        if name is None or value is None:
            continue
        if isinstance(value, str) and _MACRO.fullmatch(value.strip()):
            continue          # e.g. {EVENT.RECOVERY.ID} in a problem message
        out.setdefault(name, value)
    return out


def _zabbix_message(message):
    text = message.strip()
    if not text:
        raise MalformedEvent("the alert message is empty: no event")
    if text.startswith(("{", "[")):
        try:
            obj = json.loads(text, parse_constant=_no_constants)
        except RecursionError:
            raise MalformedEvent("alert message: JSON nested too deeply") from None
        except ValueError as exc:
            if isinstance(exc, MalformedEvent) or text.startswith("["):
                raise MalformedEvent(f"alert message is not JSON: {exc}") from None
            obj = _lenient_json(text)
        if not isinstance(obj, dict):
            raise MalformedEvent(f"alert message must be a JSON object, got {_kind(obj)}")
        return _normalise_keys(obj)
    pairs = re.findall(r'([A-Za-z_.]+)=("[^"]*"|\S*)', text)
    if not pairs:
        raise MalformedEvent("alert message is neither a JSON object nor key=value pairs")
    return _normalise_keys({k: v.strip('"') for k, v in pairs})


_LINE = re.compile(r'^\s*"([A-Za-z_.]+)"\s*:\s*(.*?)\s*,?\s*$')


def _lenient_json(text):
    """A body whose macros broke strict JSON: one '"key": value' per line."""
    out = {}
    for line in text.strip().strip("{}").splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        key, value = match.groups()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            inner = value[1:-1]
            try:
                out[key] = json.loads(value)
            except ValueError:
                out[key] = inner        # an unescaped quote inside: keep the text as is
        else:
            try:
                out[key] = json.loads(value)
            except ValueError:
                out[key] = value
    if not out:
        raise MalformedEvent("alert message is not JSON and has no '\"key\": value' lines")
    return out


_SEVERITY = {"not classified": 0, "information": 1, "warning": 2, "average": 3, "high": 4,
             "disaster": 5}


def _zabbix_event(fields, raw):
    host = fields.get("host")
    if not isinstance(host, str) or not host.strip():
        raise MalformedEvent("zabbix alert has no host (add \"host\": \"{HOST.HOST}\" to the message)")
    event_id = fields.get("event_id")
    if event_id is not None and not re.fullmatch(r"[0-9]{1,20}", str(event_id).strip()):
        raise MalformedEvent(f"event_id must be a Zabbix event number, got {str(event_id)[:30]!r}")
    recovery_id = fields.get("recovery_id")
    if recovery_id is not None and not re.fullmatch(r"[0-9]{1,20}", str(recovery_id).strip()):
        recovery_id = None
    resolved = _zabbix_resolved(fields)
    severity = _zabbix_severity(fields.get("severity"))
    updating = bool(str(fields.get("update_action") or "").strip())
    labels = _zabbix_tags(fields.get("tags"))
    if resolved:
        status, action = Status.OK, RESOLVE
    else:
        # Triggers of the autoremedy template carry the check's own verdict in the
        # autoremedy_status tag; any other trigger is judged by its severity.
        verdict = str(labels.get("autoremedy_status", "")).strip()
        if verdict in ("1", "2", "3"):
            status = Status.coerce(int(verdict))
        else:
            status = Status.CRITICAL if (severity is None or severity >= 3) else Status.WARNING
        action = UPDATE if updating else PROBLEM
    check = fields.get("trigger") or fields.get("subject") or fields.get("item_key")
    if not isinstance(check, str) or not check.strip():
        raise MalformedEvent("zabbix alert has no trigger name (add \"trigger\": \"{TRIGGER.NAME}\")")
    started = _zabbix_clock(fields)
    if event_id is not None:
        ident = f"zabbix-{str(event_id).strip()}"
        if resolved and recovery_id:
            ident += f"-r{str(recovery_id).strip()}"
    else:
        ident = None          # hashed from host, check, status and the problem time
    output = fields.get("opdata") or fields.get("item_value") or fields.get("subject") or ""
    extra = {k: str(fields[k]) for k in ("trigger_id", "item_key", "item_value", "event_id",
                                         "recovery_id", "update_action", "sendto", "subject")
             if fields.get(k) not in (None, "")}
    if severity is not None:
        extra["severity"] = severity
    return Event("zabbix", host.strip(), check.strip()[:MAX_NAME], status, str(output),
                 id=ident, action=action, started=started,
                 timestamp=time.time(), labels=labels, extra=extra,
                 raw=raw, status_code=int(status))


def _zabbix_resolved(fields):
    value = str(fields.get("event_value", "")).strip()
    if value in ("0", "1"):
        return value == "0"
    status = str(fields.get("event_status", "")).strip().upper()
    if status in ("PROBLEM", "RESOLVED", "OK"):
        return status != "PROBLEM"
    subject = str(fields.get("subject", "")).strip().upper()
    return subject.startswith(("RESOLVED", "OK", "RECOVERY"))


def _zabbix_severity(value):
    if value is None:
        return None
    text = str(value).strip().lower()
    if text.isdigit():
        return min(int(text), 5)
    return _SEVERITY.get(text)


def _zabbix_clock(fields):
    """Problem start from "clock" ('2024.01.31 12:00:00', {EVENT.DATE} {EVENT.TIME}) or
    separate date/time fields; None when absent or unparseable."""
    text = fields.get("clock") or " ".join(str(fields[k]) for k in ("date", "time") if fields.get(k))
    if not text:
        return None
    if isinstance(text, (int, float)):
        return float(text)
    for fmt in ("%Y.%m.%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y.%m.%d"):
        try:
            return time.mktime(time.strptime(str(text).strip(), fmt))
        except ValueError:
            continue
    return None


def _zabbix_tags(value):
    """{EVENT.TAGSJSON} ([{"tag": k, "value": v}], inline or as a string) or
    {EVENT.TAGS} ('k:v, k2:v2') -> labels."""
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                return {}
        else:
            out = {}
            for part in text.split(","):
                key, _, val = part.strip().partition(":")
                if key:
                    out[key.strip()[:MAX_NAME]] = val.strip()
            return dict(list(out.items())[:MAX_LABELS])
    out = {}
    if isinstance(value, list):
        for item in value[:MAX_LABELS]:
            if isinstance(item, dict) and isinstance(item.get("tag"), str):
                out[item["tag"][:MAX_NAME]] = str(item.get("value", ""))
    elif isinstance(value, dict):
        out = _labels(("tags", value))
    return out


# --- node hook ----------------------------------------------------------------------

def from_check(result, check, host, rendered, started=None, occurrences=None, labels=None):
    """A fresh check run on this node -> Event (source 'hook')."""
    return Event("hook", host, check, result.status, rendered, occurrences=occurrences,
                 started=started, timestamp=time.time(), labels=labels,
                 extra={"summary": result.summary, "data": result.data},
                 raw={"check": check, "result": result.to_dict()},
                 status_code=int(result.status))
