"""The parsers that turn what a monitor sends into an ``autoremedy.pipeline.event.Event``.

    sensu.py   Sensu Go and Sensu Classic pipe-handler events
    zabbix.py  Zabbix alert-script arguments and webhook parameter objects
    hook.py    a check run on this node (``autoremedy handle hook``)

What they share is here: typed access to nested keys (``get``), labels, bounded
numbers, and ``total``: a parser raises ``MalformedEvent`` with a one-line reason
for anything it cannot use, and nothing else, ever: an unexpected exception is
a MalformedEvent too, so the handler keeps the raw input as a dead letter
instead of losing it to a traceback.
"""
import functools
import json
import math
import re

from autoremedy.pipeline.event import MAX_COUNT, MAX_LABELS, MAX_NAME, MAX_TIME, MalformedEvent, kind

_DIGITS = re.compile(r"-?[0-9]{1,12}")     # ASCII digits only: '²'.isdigit() is True


def total(parser):
    """Make ``parser`` total: every exception it lets escape becomes MalformedEvent
    naming the error (RecursionError and MemoryError included)."""
    @functools.wraps(parser)
    def wrapper(*args, **kwargs):
        try:
            return parser(*args, **kwargs)
        except MalformedEvent:
            raise
        except Exception as exc:                  # noqa: BLE001 - that is the point
            from autoremedy.contract.runtime import describe
            raise MalformedEvent(f"unusable event ({describe(exc)[:200]})") from None
    return wrapper


def get(obj, path, types=None, required=False):
    """obj['a']['b'] for path 'a.b', type-checked; MalformedEvent names the path.
    A bool is never taken for a number."""
    node = obj
    for part in path.split("."):
        if not isinstance(node, dict):
            raise MalformedEvent(f"{path}: {part!r} is inside {kind(node)}, not an object")
        if part not in node or node[part] is None:
            if required:
                raise MalformedEvent(f"{path} is missing")
            return None
        node = node[part]
    if types is not None:
        kinds = types if isinstance(types, tuple) else (types,)
        if not isinstance(node, kinds) or (isinstance(node, bool) and bool not in kinds):
            raise MalformedEvent(f"{path} must be {_kind_name(kinds)}, got {kind(node)}")
    return node


def _kind_name(kinds):
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
             list: "an array", dict: "an object"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def count(obj, path, required=False):
    """A non-negative integer no larger than int32 (statuses, occurrences)."""
    value = get(obj, path, int, required)
    if value is not None and not 0 <= value <= MAX_COUNT:
        raise MalformedEvent(f"{path} must be between 0 and {MAX_COUNT}, got {_short(value)}")
    return value


def seconds(obj, path):
    """An epoch time: a finite number between 0 and year 9999, or None."""
    value = get(obj, path, (int, float))
    if value is None:
        return None
    return epoch(value, path)


def epoch(value, what):
    try:
        ok = math.isfinite(float(value)) and 0 <= float(value) <= MAX_TIME
    except OverflowError:
        ok = False
    if not ok:
        raise MalformedEvent(f"{what} must be an epoch time between 0 and {MAX_TIME:.0f}, "
                             f"got {_short(value)}")
    return value


def small_int(text):
    """'12' -> 12; None for anything that is not a short run of ASCII digits."""
    text = str(text).strip()
    return int(text) if _DIGITS.fullmatch(text) else None


def _short(value):
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return "an integer of more than 19 digits"      # str() of a huge int can itself fail
    return repr(value)[:60]


def labels(*maps):
    """Merge string->string maps (later maps win), at most MAX_LABELS keys;
    non-string values are kept as their JSON text."""
    out = {}
    for where, value in maps:
        if value is None:
            continue
        if not isinstance(value, dict):
            raise MalformedEvent(f"{where} must be a mapping, got {kind(value)}")
        for key, item in value.items():
            if len(out) >= MAX_LABELS:
                break
            out[str(key)[:MAX_NAME]] = item if isinstance(item, str) else json.dumps(item)[:1024]
    return out
