"""Zabbix alerts -> Event: the alert-script arguments, or a webhook parameter object.

Alert script (media type "Script"): ``{ALERT.SENDTO} {ALERT.SUBJECT} {ALERT.MESSAGE}``,
the message a JSON body built from macros (docs/handlers.md has the template) or
``key=value`` pairs. Zabbix substitutes macros textually, without JSON escaping,
so a trigger name with a quote breaks strict JSON: the template keeps one key per
line and ``_lenient_json`` reads such a body line by line.

Webhook (``handle zabbix --webhook``): the parameter object a webhook media type
passes to its script. Every parameter name of Zabbix's own webhook media types is
understood (zabbix/zabbix ``templates/media/*/media_*.yaml``, the 31 media types
shipped with 6.0 and the 32 with 7.0 — ``host_host``/``host_name``/``hostname``,
``event_id``/``eventid``/``EVENT.ID``, ``event_nseverity``, ``event_severity``,
``event_tags``, ``event_update_status``/``eventupdate``, ``event_value``,
``event_source``, ``trigger_id``, ``field:hostname`` ...): names are compared
without case and punctuation (``event_id`` = ``EventID`` = ``EVENT.ID``), and a
``field...:`` display prefix (VictorOps, Express.ms, Rocket.Chat) is its own
lower-priority spelling. ``tests/fixtures/zabbix/mediatypes/`` holds those
definitions; the tests fill their macros the way a Zabbix server does and parse
every one.

Macro values, as the server fills them (zabbix/zabbix src/libs/zbxserver/
expression.c): ``{EVENT.TAGSJSON}`` is ``[{"tag": t, "value": v}, ...]``;
``{EVENT.TAGS}`` is ``t1:v1, t2, t3:v3`` (sorted, ``:`` only when there is a value);
``{EVENT.UPDATE.STATUS}`` is ``1`` in a problem-update notification and ``0``
otherwise; ``{EVENT.VALUE}`` is ``1`` for a problem and ``0`` for a recovery;
``{EVENT.SOURCE}`` is 0 trigger, 1 discovery, 2 autoregistration, 3 internal,
4 service. A macro the server could not resolve in that context
(``{EVENT.RECOVERY.ID}`` in a problem, ``{EVENT.TAGS.__zbx_x}`` without that tag)
is left as its literal text, and ``*UNKNOWN*`` stands for an unknown value:
both count as absent here.

What becomes of it: severity from ``event_nseverity`` when present (else a
severity name or number); the ``autoremedy_status`` tag of the autoremedy
template's triggers wins over both; Average and above CRITICAL, below WARNING.
A recovery (value 0, status RESOLVED/OK) is a ``resolve`` with its own id
(``-r<recovery id>``); a problem update (update status 1: acknowledged,
commented, severity changed, closed...) is an ``update`` with its own id
(``-u<hash of the update>``), forwarded, never remediated. Events that are not
about a trigger (discovery, autoregistration, internal, service) are a
``notice``: forwarded, never remediated.
"""
import hashlib
import re
import time

from autoremedy.pipeline.event import (MAX_LABELS, MAX_NAME, NOTICE, PROBLEM, RESOLVE, UPDATE, Event,
                              MalformedEvent, kind, loads)
from autoremedy.contract.result import Status
from autoremedy.pipeline.sources import epoch, labels as merge_labels, small_int, total

# field -> accepted parameter names, best first, in canonical form (see canon()).
# The names of Zabbix's own media types are the point; the short ones are the
# keys of the message template in docs/handlers.md and earlier spellings.
FIELDS = {
    "event_id": ("eventid", "f:entityid"),
    "recovery_id": ("recoveryid", "recoveryeventid", "eventrecoveryid"),
    "event_value": ("eventvalue", "value", "triggervalue"),
    "recovery_value": ("eventrecoveryvalue",),
    "event_status": ("eventstatus", "status", "triggerstatus"),
    "event_source": ("eventsource",),
    "event_object": ("eventobject",),
    "update_status": ("eventupdatestatus", "eventupdate", "updatestatus"),
    "update_action": ("updateaction", "eventupdateaction"),
    "update_message": ("eventupdatemessage", "updatemessage"),
    "update_user": ("eventupdateuser", "userfullname", "zbxuser"),
    "update_date": ("eventupdatedate",),
    "update_time": ("eventupdatetime",),
    "update_nseverity": ("eventupdatenseverity",),
    "update_severity": ("eventupdateseverity",),
    "ack": ("eventackstatus", "eventack", "acknowledged"),
    "nseverity": ("eventnseverity", "nseverity", "triggernseverity"),
    "severity": ("severity", "eventseverity", "triggerseverity", "f:severity"),
    "host": ("host", "hosthost", "hostname", "f:hostname"),
    "host_ip": ("hostip", "hostconn"),
    "discovery_host": ("discoveryhostdns", "discoveryhostip"),
    "trigger": ("trigger", "triggername", "eventname", "name"),
    "subject": ("subject", "alertsubject", "title", "f:entitydisplayname", "f:subject"),
    "trigger_id": ("triggerid",),
    "trigger_description": ("triggerdescription", "triggerdesc", "f:triggerdescription"),
    "item_key": ("itemkey", "itemkey1"),
    "item_value": ("itemvalue", "itemlastvalue", "itemvalue1"),
    "item_name": ("itemname", "itemname1"),
    "opdata": ("opdata", "eventopdata", "operationaldata", "operationdata", "triggeropdata",
               "f:operationaldata"),
    "clock": ("clock",),
    "datetime": ("eventdatetime", "f:eventtime"),
    "date": ("date", "eventdate"),
    "time": ("time", "eventtime"),
    "recovery_date": ("eventrecoverydate",),
    "recovery_time": ("eventrecoverytime",),
    "recovery_datetime": ("f:recoverytime",),
    "tags": ("tags", "eventtags", "eventtagsjson", "tagsjson", "expresstags"),
    "host_groups": ("hostgroups", "triggerhostgroupname"),
    "message": ("message", "alertmessage", "text", "expressmessage", "f:statemessage",
                "f:description"),
    "sendto": ("sendto", "to", "alertsendto"),
}
_ALIAS = {name: field for field, names in FIELDS.items() for name in names}

# A parameter value that is a macro the server left unresolved, or its "unknown".
_MACRO = re.compile(r"\s*\{[$#?]?[A-Za-z0-9_.]+(?:\.[^{}\s]+)?\}\s*")
_UNKNOWN = "*UNKNOWN*"
_FIELD_PREFIX = re.compile(r"field[a-z0-9_]*:", re.I)
_EVENT_ID = re.compile(r"[0-9]{1,20}")
_SEVERITY = {"not classified": 0, "information": 1, "warning": 2, "average": 3, "high": 4,
             "disaster": 5}
SOURCE_NAMES = {0: "trigger", 1: "discovery", 2: "autoregistration", 3: "internal", 4: "service"}


def canon(name):
    """'event_id', 'EventID', 'EVENT.ID' -> 'eventid'; 'field_2_short:Severity' ->
    'f:severity'; None for a name that cannot be a parameter (a placeholder such
    as "<'NUMBER' CUSTOMFIELD FOR EVENT.ID>")."""
    text = str(name).strip()
    if not text or text.startswith("<"):
        return None
    prefix = ""
    match = _FIELD_PREFIX.match(text)
    if match:
        prefix, text = "f:", text[match.end():]
    key = re.sub(r"[^a-z0-9]", "", text.lower())
    return prefix + key if key else None


def fields_of(obj):
    """Parameter object -> {field: value}, the best-ranked name winning for each
    field; unresolved macros and *UNKNOWN* are absent."""
    return {field: value for field, (_, value) in _ranked(obj).items()}


def _ranked(obj):
    ranked = {}
    for key, value in obj.items():
        name = canon(key)
        field = _ALIAS.get(name)
        if field is None or value is None or _absent(value):
            continue
        rank = FIELDS[field].index(name)
        if field not in ranked or rank < ranked[field][0]:
            ranked[field] = (rank, value)
    return ranked


def _absent(value):
    return isinstance(value, str) and (not value.strip() or _MACRO.fullmatch(value) is not None
                                       or value.strip() == _UNKNOWN)


# --- entry points ----------------------------------------------------------------------

@total
def from_zabbix(sendto, subject, message, max_size=1 << 20):
    """The three alert-script arguments -> Event."""
    for i, arg in enumerate((sendto, subject, message), 1):
        if not isinstance(arg, str):
            raise MalformedEvent(f"argument {i} must be text")
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            raise MalformedEvent(f"argument {i} is not valid UTF-8") from None
    if len(message) + len(subject) + len(sendto) > max_size:
        raise MalformedEvent(f"alert is larger than the limit of {max_size} bytes")
    fields = _message_fields(message)
    fields.setdefault("subject", subject)
    fields.setdefault("sendto", sendto)
    return _event(fields, {"sendto": sendto, "subject": subject, "message": message})


@total
def from_zabbix_params(obj):
    """A webhook media type's parameter object -> Event. A message parameter that
    holds the JSON body of docs/handlers.md is merged under the named parameters."""
    if not isinstance(obj, dict):
        raise MalformedEvent(f"webhook parameters must be a JSON object, got {kind(obj)}")
    ranked = _ranked(obj)
    message = ranked.pop("message", (0, None))[1]
    note = None
    if isinstance(message, str) and message.strip().startswith("{"):
        # The body's own keys are what the administrator wrote for us: a better
        # name for a field (host = {HOST.HOST}) wins over the media type's
        # weaker one (host_name = {HOST.NAME}); on a tie the parameter stays.
        # A message that is not such a body is only a message: the parameters
        # are the event.
        try:
            body = _ranked(_message_object(message))
        except MalformedEvent as exc:
            body, note = {}, str(exc)[:200]
        for field, (rank, value) in body.items():
            if field not in ranked or rank < ranked[field][0]:
                ranked[field] = (rank, value)
    event = _event({field: value for field, (_, value) in ranked.items()}, obj)
    if note:
        event.extra["message_unreadable"] = note
    return event


def _message_fields(message):
    return fields_of(_message_object(message))


def _message_object(message):
    text = message.strip()
    if not text:
        raise MalformedEvent("the alert message is empty: no event")
    if text.startswith(("{", "[")):
        try:
            obj = loads(text, "alert message")
        except MalformedEvent as exc:
            # Only a syntax error may be a macro value that broke the JSON; a
            # number out of range or NaN is refused as it is.
            if text.startswith("[") or "is not JSON" not in str(exc):
                raise
            obj = _lenient_json(text)
        if not isinstance(obj, dict):
            raise MalformedEvent(f"alert message must be a JSON object, got {kind(obj)}")
        return obj
    pairs = re.findall(r'([A-Za-z_.]+)=("[^"]*"|\S*)', text)
    if not pairs:
        raise MalformedEvent("alert message is neither a JSON object nor key=value pairs")
    return {k: v.strip('"') for k, v in pairs}


_LINE = re.compile(r'^\s*"([A-Za-z_.]+)"\s*:\s*(.*?)\s*,?\s*$')


def _lenient_json(text):
    """A body whose macros broke strict JSON: one '"key": value' per line. A
    quoted value that spans lines (an update's comment, {EVENT.UPDATE.MESSAGE},
    keeps the operator's line breaks) goes on until the next '"key":' line."""
    out, key, lines = {}, None, []

    def close():
        if key is None:
            return
        value = "\n".join(lines).rstrip()
        value = value[:-1].rstrip() if value.endswith(",") else value
        try:
            out[key] = loads(value, key)
        except MalformedEvent:
            quoted = value.startswith('"') and value.endswith('"') and len(value) >= 2
            out[key] = value[1:-1] if quoted else value   # an unescaped quote: keep the text

    body = text.strip()
    body = body[1:] if body.startswith("{") else body
    body = body[:-1] if body.endswith("}") else body
    for line in body.splitlines():
        match = _LINE.match(line)
        if match:
            close()
            key, lines = match.group(1), [match.group(2)]
        elif key is not None and lines[0].startswith('"'):
            # Not a key: the quoted value goes on (a comment's next line; its
            # first line may itself end with a quote, so the quote cannot tell).
            lines.append(line)
    close()
    if not out:
        raise MalformedEvent("alert message is not JSON and has no '\"key\": value' lines")
    return out


# --- the event ---------------------------------------------------------------------

def _event(fields, raw):
    source = _source(fields.get("event_source"))
    event_id = fields.get("event_id")
    if event_id is not None:
        event_id = _text(event_id).strip()
        if not _EVENT_ID.fullmatch(event_id):
            raise MalformedEvent(f"event_id must be a Zabbix event number, got {event_id[:30]!r}")
    recovery_id = _text(fields.get("recovery_id")).strip() or None
    if recovery_id is not None and not _EVENT_ID.fullmatch(recovery_id):
        recovery_id = None
    tags, tags_note = tags_to_labels(fields.get("tags"))
    resolved = _resolved(fields)
    updating = _updating(fields)
    nseverity = severity(fields.get("nseverity"))
    level = nseverity if nseverity is not None else severity(fields.get("severity"))
    if source != 0:
        action = NOTICE
        status = Status.OK if resolved else Status.UNKNOWN
    elif resolved and not updating:
        status, action = Status.OK, RESOLVE
    else:
        # Triggers of the autoremedy template carry the check's own verdict in the
        # autoremedy_status tag; any other trigger is judged by its severity.
        verdict = str(tags.get("autoremedy_status", "")).strip()
        if resolved:
            status = Status.OK
        elif verdict in ("1", "2", "3"):
            status = Status.coerce(int(verdict))
        else:
            status = Status.CRITICAL if (level is None or level >= 3) else Status.WARNING
        action = UPDATE if updating else PROBLEM
    if status is Status.OK and "autoremedy_status" in tags:
        # The tag is the problem's verdict, copied into every event of the
        # trigger (recovery included): an OK event must not claim it.
        tags["autoremedy_status"] = "0"
    host = _host(fields, source)
    check = _first_text(fields, "trigger", "subject", "item_key")
    if not check:
        raise MalformedEvent("zabbix alert has no trigger name (add \"trigger\": \"{TRIGGER.NAME}\")")
    ident = None                    # hashed from host, check, status and the problem time
    if event_id is not None:
        ident = f"zabbix-{event_id}"
        if action == RESOLVE and recovery_id:
            ident += f"-r{recovery_id}"
        elif action == UPDATE:
            ident += "-u" + _update_hash(fields)
    output = _first_text(fields, "opdata", "item_value", "update_message", "subject")
    extra = {k: _text(fields[k])[:1024] for k in (
        "trigger_id", "item_key", "item_value", "item_name", "event_id", "recovery_id",
        "update_action", "update_message", "update_user", "update_date", "update_time", "ack",
        "update_severity",
        "sendto", "subject", "host_ip", "trigger_description", "host_groups", "recovery_date",
        "recovery_time", "recovery_datetime")
        if _text(fields.get(k)).strip()}
    if event_id is not None and source == 0:
        # The problem's own event id: its recovery and its updates (acknowledged,
        # commented, closed) carry it, so a rule finds the workflow it started.
        extra["incident_id"] = f"zabbix-{event_id}"
    if level is not None:
        extra["severity"] = level
    name = _text(fields.get("severity")).strip()
    if name and small_int(name) is None:
        extra["severity_name"] = name[:64]
    if source != 0:
        extra["event_source"] = SOURCE_NAMES.get(source, str(source))
    if tags_note:
        extra["tags_unreadable"] = tags_note
    return Event("zabbix", host, check[:MAX_NAME], status, output, id=ident, action=action,
                 started=_clock(fields), timestamp=time.time(), labels=tags, extra=extra,
                 raw=raw, status_code=int(status))


def _text(value):
    """A scalar parameter as text ('' for absent, lists and objects)."""
    if value is None or isinstance(value, (list, dict)):
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int) and value.bit_length() > 64:
        return ""
    return str(value)


def _first_text(fields, *names):
    for name in names:
        text = _text(fields.get(name)).strip()
        if text:
            return text
    return ""


def _host(fields, source):
    host = _first_text(fields, "host")
    if not host and source in (1, 2):
        host = _first_text(fields, "discovery_host", "host_ip")
    if not host and source != 0:
        host = "zabbix"          # a service event is about no host: the monitor itself
    if not host:
        raise MalformedEvent("zabbix alert has no host (add \"host\": \"{HOST.HOST}\" to the message)")
    return host


def _source(value):
    number = small_int(_text(value)) if value is not None else None
    return number if number in SOURCE_NAMES else 0


def _resolved(fields):
    value = _text(fields.get("event_value")).strip()
    if value in ("0", "1"):
        return value == "0"
    status = _text(fields.get("event_status")).strip().upper()
    if status in ("PROBLEM", "RESOLVED", "OK"):
        return status != "PROBLEM"
    subject = _text(fields.get("subject")).strip().upper()
    return subject.startswith(("RESOLVED", "OK", "RECOVERY"))


def _updating(fields):
    status = _text(fields.get("update_status")).strip()
    if status in ("0", "1"):
        return status == "1"
    return bool(_text(fields.get("update_action")).strip())


def _update_hash(fields):
    """Each update of one problem (ack, comment, severity change, close) is its
    own event: a later one must not overwrite an earlier one still in the spool."""
    text = "\0".join(_text(fields.get(k)) for k in (
        "update_date", "update_time", "update_action", "update_message", "update_user",
        "update_nseverity", "ack"))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def severity(value):
    """0-5 from a number ('4') or a name ('High'); None when neither."""
    if value is None:
        return None
    text = _text(value).strip().lower()
    number = small_int(text)
    if number is not None:
        return min(number, 5) if number >= 0 else None
    return _SEVERITY.get(text)


_FORMATS = ("%Y.%m.%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y.%m.%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S",
            "%Y.%m.%d")


def _clock(fields):
    """Problem start: ``clock`` (epoch or '2024.01.31 12:00:00'), a date-time
    parameter, ``{EVENT.DATE} {EVENT.TIME}``; None when none is usable."""
    clock = fields.get("clock")
    if isinstance(clock, (int, float)) and not isinstance(clock, bool):
        try:
            return float(epoch(clock, "clock"))
        except MalformedEvent:
            return None
    date, tod = _text(fields.get("date")).strip(), _text(fields.get("time")).strip()
    for text in (_text(clock), _text(fields.get("datetime")), f"{date} {tod}", tod, date):
        text = text.strip()
        if not text or len(text) > 40:
            continue
        if small_int(text) is not None:
            try:
                return float(epoch(int(text), "clock"))
            except MalformedEvent:
                continue
        for fmt in _FORMATS:
            try:
                return time.mktime(time.strptime(text, fmt))
            except (ValueError, OverflowError):
                continue
    return None


def tags_to_labels(value):
    """{EVENT.TAGSJSON} (a JSON array, inline or as text) or {EVENT.TAGS}
    ('k:v, k2, k3:v3') -> (labels, note); note says why tags were unreadable."""
    if value in (None, ""):
        return {}, None
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = loads(text, "tags")
            except MalformedEvent as exc:
                return {}, str(exc)[:200]
        else:
            out = {}
            for part in text.split(", "):
                key, _, val = part.partition(":")
                if key.strip() and len(out) < MAX_LABELS:
                    out[key.strip()[:MAX_NAME]] = val.strip()
            return out, None
    if isinstance(value, list):
        out = {}
        for item in value:
            if len(out) >= MAX_LABELS:
                break
            if isinstance(item, dict) and isinstance(item.get("tag"), str) and item["tag"]:
                out[item["tag"][:MAX_NAME]] = _text(item.get("value"))[:1024]
        return out, None
    if isinstance(value, dict):
        return merge_labels(("tags", value)), None
    return {}, f"tags must be a list or text, got {kind(value)}"

