"""Human sizes and durations in configuration and options: '500M', '2G', '15m', '1h'."""
import re

_SIZE = {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4, "p": 1024 ** 5}
_TIME = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


_NUMBER = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)\s*$")


def _split(text, table, what):
    match = _NUMBER.match(str(text).lower())
    unit = match.group(2) if match else None
    if unit and table is _SIZE and len(unit) > 1 and unit.endswith(("ib", "b")):
        unit = unit[:-2] if unit.endswith("ib") else unit[:-1]
    if match is None or unit not in table:
        raise ValueError(f"invalid {what} {text!r}")
    return float(match.group(1)) * table[unit]


def size(text):
    """'1.5G' -> bytes (binary multiples). Plain numbers are bytes."""
    if isinstance(text, (int, float)):
        return int(text)
    return int(_split(text, _SIZE, "size"))


def duration(text):
    """'15m' -> 900.0 seconds. Plain numbers are seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    return _split(text, _TIME, "duration")


def human_size(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024.0
    return f"{n:.1f}TiB"


def human_duration(seconds):
    seconds = float(seconds)
    for unit, width in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= width:
            return f"{seconds / width:.1f}{unit}"
    return f"{seconds:.0f}s"
