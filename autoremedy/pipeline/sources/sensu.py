"""Sensu Go and Sensu Classic events -> Event.

Sensu Go (a pipe handler's stdin, docs.sensu.io/sensu-go/latest/observability-pipeline/
observe-events/events/): ``entity.metadata.name``, ``check.metadata.name``, history
as ``[{status, executed}]`` (the last 21 runs), ``check.is_silenced``, labels
possibly absent. Sensu Classic (Core 1.x, docs.sensu.io/sensu-core/1.8/reference/
events/): ``client.name``, ``check.name``, ``action``, top-level ``occurrences``,
history as strings. The flavour is told apart by shape (``entity`` or ``client``).

Incident start (what a derived event id hangs on, when the event has no ``id``:
Sensu Go 5.x and hand-made events). For a failing check it is the last time the
check was OK: the ``executed`` of the last OK run in the history, else
``check.last_ok`` — Sensu Go sets ``last_ok`` to ``executed`` on every OK run
(sensu/sensu-go, backend store ``updateEventHistory`` / ``Check.MergeWith``),
so both give the same number and the id does not move when that run slides out
of the 21-entry history. When neither is there (the history is all failures
and no ``last_ok``), the start is unknown here: ``started`` is None and the
handler keeps the first failing time it saw in a small state file
(``Event.restart``). A check that has never been OK and whose whole life is in
the history (fewer than 21 runs) started at its first run.
"""
from autoremedy.pipeline.event import FLAPPING, MAX_COUNT, PROBLEM, RESOLVE, Event, MalformedEvent, kind
from autoremedy.pipeline.sources import count, get, labels, seconds, small_int, total

HISTORY = 21        # entries Sensu keeps in check.history


@total
def from_sensu(obj):
    """A Sensu Go or Sensu Classic event object -> Event."""
    if not isinstance(obj, dict):
        raise MalformedEvent(f"a Sensu event must be a JSON object, got {kind(obj)}")
    if "entity" in obj:
        return _sensu_go(obj)
    if "client" in obj:
        return _sensu_classic(obj)
    raise MalformedEvent("neither a Sensu Go event (no 'entity') nor a Sensu Classic event "
                         "(no 'client')")


def _sensu_go(obj):
    status = count(obj, "check.status", required=True)
    history = []
    for i, item in enumerate(get(obj, "check.history", list) or []):
        if not isinstance(item, dict) or isinstance(item.get("status"), bool) \
                or not isinstance(item.get("status"), int) or not 0 <= item["status"] <= MAX_COUNT:
            raise MalformedEvent(f"check.history[{i}] must be an object with an integer status")
        executed = item.get("executed")
        if executed is not None:
            seconds(item, "executed")
        history.append(item)
    state = get(obj, "check.state", str)
    action = {"passing": RESOLVE, "failing": PROBLEM, "flapping": FLAPPING}.get(state)
    silenced = bool(get(obj, "check.is_silenced", bool)) or bool(get(obj, "check.silenced", list))
    executed = seconds(obj, "check.executed")
    return Event(
        "sensu-go", get(obj, "entity.metadata.name", str, required=True),
        get(obj, "check.metadata.name", str, required=True), status,
        get(obj, "check.output", str) or "",
        id=get(obj, "id", str), occurrences=count(obj, "check.occurrences"), action=action,
        silenced=silenced, history=[h["status"] for h in history],
        started=incident_start(status, history, seconds(obj, "check.last_ok")),
        timestamp=seconds(obj, "timestamp") or executed,
        labels=labels(("entity.metadata.labels", get(obj, "entity.metadata.labels")),
                      ("check.metadata.labels", get(obj, "check.metadata.labels"))),
        namespace=get(obj, "metadata.namespace", str) or get(obj, "entity.metadata.namespace", str),
        extra={k: v for k, v in (("entity_class", get(obj, "entity.entity_class", str)),
                                 ("proxy_entity_name", get(obj, "check.proxy_entity_name", str)),
                                 ("occurrences_watermark", count(obj, "check.occurrences_watermark")),
                                 ("hooks", _hooks(get(obj, "check.hooks", list))))
               if v},
        raw=obj)


def incident_start(status, history, last_ok):
    """When the current incident began (see the module docstring); None if the
    event cannot tell."""
    if status == 0:
        # A resolution: the first OK run after the last failure seen. A check OK
        # for longer than the history has no visible start: None, which is stable.
        start = None
        for item in reversed(history):
            if item.get("status") != 0:
                return start
            start = item.get("executed")
        return start if len(history) < HISTORY else None
    for item in reversed(history):
        if item.get("status") == 0:
            return item.get("executed")
    if last_ok:                        # 0 means "never OK" in Sensu Go
        return last_ok
    if history and len(history) < HISTORY:
        return history[0].get("executed")   # the check's whole life is in the history
    return None


def _hooks(items):
    """Check-hook results the agent ran on the node before the event was made
    (docs.sensu.io/sensu-go/latest/observability-pipeline/observe-schedule/hooks/):
    how the backend learns what the node hook did."""
    out = []
    for item in items or []:
        if not isinstance(item, dict):
            continue
        meta = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
        status = item.get("status")
        out.append({"name": str(meta.get("name", ""))[:255],
                    "command": str(item.get("command", ""))[:1024],
                    "status": status if isinstance(status, int) and not isinstance(status, bool)
                    and 0 <= status <= 255 else None,
                    "output": str(item.get("output", ""))[-2048:]})   # the verdict is last
    return out[:16]


# Sensu Core 1.x check attributes (docs.sensu.io/sensu-core/1.8/reference/checks/,
# .../events/); anything else in ``check`` is a custom attribute, the Classic
# counterpart of a Sensu Go label.
CLASSIC_CHECK_KEYS = frozenset("""
    name type command status output history issued executed subscribers interval handler
    handlers source total_state_change thresholds standalone publish occurrences refresh
    dependencies ttl ttl_status timeout low_flap_threshold high_flap_threshold aggregate
    aggregates subdue hooks proxy_requests extension duration auto_resolve force_resolve
    handle cron stdin contacts origin labels silenced silenced_by last_ok
""".split())


def _custom(section, known):
    """Scalar custom attributes of a Classic check, as labels."""
    out = {}
    for key, value in section.items():
        if key in known or isinstance(value, bool) or not isinstance(value, (str, int, float)):
            continue
        if isinstance(value, int) and value.bit_length() > 64:
            continue
        out[key] = value
    return out


def _classic_status(item, i):
    """A Classic history entry: a status as a string ("2"), or a number."""
    if isinstance(item, int) and not isinstance(item, bool):
        number = item if 0 <= item <= MAX_COUNT else None
    elif isinstance(item, str):
        number = small_int(item)
    else:
        number = None
    if number is None or number < 0 or number > MAX_COUNT:
        shown = repr(item[:20]) if isinstance(item, str) else kind(item)
        raise MalformedEvent(f"check.history[{i}] must be a status number, got {shown}")
    return number


def _sensu_classic(obj):
    status = count(obj, "check.status", required=True)
    history = []
    for i, item in enumerate(get(obj, "check.history", list) or []):
        history.append(_classic_status(item, i))
    action = get(obj, "action", str) or "create"
    if action not in ("create", "resolve", "flapping"):
        raise MalformedEvent(f"action must be create, resolve or flapping, got {action[:20]!r}")
    executed = seconds(obj, "check.executed")
    check = get(obj, "check", dict, required=True)
    return Event(
        "sensu-classic", get(obj, "client.name", str, required=True),
        get(obj, "check.name", str, required=True), status,
        get(obj, "check.output", str) or "",
        id=get(obj, "id", str), occurrences=count(obj, "occurrences"),
        action={"create": PROBLEM, "resolve": RESOLVE, "flapping": FLAPPING}[action],
        silenced=bool(get(obj, "silenced", bool)), history=history,
        started=seconds(obj, "last_ok") or executed,
        timestamp=seconds(obj, "timestamp") or executed,
        labels=labels(("client.labels", get(obj, "client.labels")),
                      ("check.labels", get(obj, "check.labels")),
                      ("custom check attributes", _custom(check, CLASSIC_CHECK_KEYS))),
        extra={k: v for k, v in (("address", get(obj, "client.address", str)),
                                 ("source", get(obj, "check.source", str)))
               if v},
        raw=obj)
