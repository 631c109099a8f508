"""Read the lines of a log source that fall in a time window, cheaply.

A source is a file (a path or glob, rotated and gzipped siblings included) with
a timestamp format, or a journald unit. Large plain files are not read from the
top: a binary search on byte offsets finds the window's start (logs are
appended in time order), so a 2 GB nova-compute.log costs a few dozen seeks.
Lines without a timestamp (tracebacks, multi-line messages) belong to the
timestamped line before them.

Timestamp formats (``format:``)::

    oslo       2026-11-25 03:12:45.123 12345 ERROR nova.compute.manager [...]
    rabbitmq   2026-11-25 03:12:45.123456+00:00 [error] <0.1234.0> ...
    rabbitmq-legacy  =ERROR REPORT==== 25-Nov-2026::03:12:45 ===   (RabbitMQ < 3.7)
    iso8601    2026-11-25T03:12:45.123Z ...
    syslog     Nov 25 03:12:45 host program[pid]: ...   (year from the window)
    {regex: '^\\[(?P<ts>[^]]+)\\]', strptime: '%d/%b/%Y:%H:%M:%S %z'}   (anything else)

Naive timestamps are local time unless the source says ``utc: true``.
"""
import glob
import gzip
import os
import re
import time
from datetime import datetime, timezone

_NUM = r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?"
PRESETS = {
    "oslo": (re.compile(rf"^({_NUM})"), None),
    "rabbitmq": (re.compile(rf"^({_NUM}(?:Z|[+-]\d{{2}}:?\d{{2}})?)"), None),
    "iso8601": (re.compile(rf"^({_NUM}(?:Z|[+-]\d{{2}}:?\d{{2}})?)"), None),
    "rabbitmq-legacy": (re.compile(r"^=\w+ REPORT==== (\d{1,2}-\w{3}-\d{4}::\d{2}:\d{2}:\d{2})"),
                        "%d-%b-%Y::%H:%M:%S"),
    "syslog": (re.compile(r"^([A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2})"), "syslog"),
}
BISECT_ABOVE = 1024 * 1024          # plain files bigger than this are bisected
SLACK = 5.0                         # tolerated disorder (threads log slightly out of order)


class SourceError(Exception):
    pass


class Stamper:
    """Turns the head of a line into epoch seconds (or None)."""

    def __init__(self, fmt, utc=False, year_hint=None):
        if isinstance(fmt, dict):
            try:
                self.regex = re.compile(fmt["regex"])
            except (KeyError, re.error) as exc:
                raise SourceError(f"format.regex: {exc}") from None
            self.strptime = fmt.get("strptime")
        elif fmt in PRESETS:
            self.regex, self.strptime = PRESETS[fmt]
        else:
            raise SourceError(f"unknown format {fmt!r} (known: {', '.join(PRESETS)} or a regex)")
        self.tz = timezone.utc if utc else None
        self.year = year_hint or time.localtime().tm_year
        self._seconds = {}      # "YYYY-MM-DD HH:MM:SS" + offset -> epoch: lines share seconds

    def __call__(self, line):
        match = self.regex.match(line)
        if not match:
            return None
        text = match.group("ts") if "ts" in self.regex.groupindex else match.group(1)
        if not self.strptime:
            parts = _ISO_PARTS.match(text)
            if parts:
                key = (parts.group(1), parts.group(3))
                base = self._seconds.get(key)
                if base is None:
                    base = self._parse(f"{parts.group(1)}{parts.group(3)}")
                    if base is None:
                        return None
                    if len(self._seconds) > 100000:
                        self._seconds.clear()
                    self._seconds[key] = base
                frac = parts.group(2)
                return base + (int(frac) / 10 ** len(frac) if frac else 0.0)
        return self._parse(text)

    def _parse(self, text):
        try:
            if self.strptime == "syslog":
                when = datetime.strptime(f"{self.year} {text}", "%Y %b %d %H:%M:%S")
            elif self.strptime:
                when = datetime.strptime(text, self.strptime)
            else:
                when = datetime.fromisoformat(_iso(text))
        except ValueError:
            return None
        if when.tzinfo is None:
            if self.tz is None:
                return time.mktime(when.timetuple()) + when.microsecond / 1e6
            when = when.replace(tzinfo=self.tz)
        return when.timestamp()


_ISO_PARTS = re.compile(r"^(\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2})(?:[.,](\d{1,9}))?(.*)$")


def _iso(text):
    """Python 3.9/3.10 fromisoformat needs 'T'-or-space, 6 fraction digits, ':' in offsets."""
    text = text.replace(",", ".").replace("Z", "+00:00")
    match = re.match(r"^(.{19})(?:\.(\d+))?(.*)$", text)
    head, frac, rest = match.groups()
    frac = ((frac or "") + "000000")[:6]
    if re.fullmatch(r"[+-]\d{4}", rest):
        rest = rest[:3] + ":" + rest[3:]
    return f"{head}.{frac}{rest}"


def files_for(pattern, start):
    """The files of a (glob) path that may hold lines at or after ``start``,
    oldest first (rotated files before the live one)."""
    found = []
    for path in glob.glob(pattern):
        try:
            st = os.stat(path)
        except OSError:
            continue
        if os.path.isfile(path) and st.st_mtime >= start:
            found.append((st.st_mtime, path))
    return [p for _, p in sorted(found)]


def read_file(path, stamp, start, end):
    """[(ts, line)] of ``path`` between ``start`` and ``end`` (continuation lines
    carry their parent's time)."""
    opener = gzip.open if path.endswith(".gz") else open
    out = []
    with opener(path, "rb") as raw:
        if not path.endswith(".gz") and os.path.getsize(path) > BISECT_ABOVE:
            raw.seek(_bisect(raw, os.path.getsize(path), stamp, start))
        current = None
        for chunk in raw:
            line = chunk.decode("utf-8", "replace").rstrip("\n")
            ts = stamp(line)
            if ts is not None:
                current = ts
                if ts > end + SLACK:
                    break
            if current is None or current < start or current > end:
                continue
            out.append((current, line))
    return out


def _bisect(raw, size, stamp, start):
    """Byte offset of a line boundary at or before the first line >= start."""
    lo, hi = 0, size
    while hi - lo > 65536:
        mid = (lo + hi) // 2
        raw.seek(mid)
        raw.readline()                      # finish the partial line
        ts = None
        for _ in range(500):                # skip a traceback to the next stamped line
            chunk = raw.readline()
            if not chunk:
                break
            ts = stamp(chunk.decode("utf-8", "replace"))
            if ts is not None:
                break
        if ts is None or ts >= start - SLACK:
            hi = mid
        else:
            lo = mid
    if lo:
        raw.seek(lo)
        raw.readline()
        return raw.tell()
    return 0


def read_journal(unit, start, end, runner, host=None):
    """[(ts, line, hostname)] from journald for one unit, through the subprocess boundary."""
    import json
    from autoremedy.contract import execute
    argv = ["journalctl", "--no-pager", "-o", "json", "-u", unit,
            "--since", f"@{int(start)}", "--until", f"@{int(end) + 1}"]
    try:
        done = runner(argv, timeout=60)
    except execute.CommandError as exc:
        raise SourceError(f"journalctl: {exc}") from None
    if done.returncode != 0:
        raise SourceError(f"journalctl -u {unit}: {done.brief() or 'exit ' + str(done.returncode)}")
    out = []
    for raw in done.stdout.splitlines():
        try:
            entry = json.loads(raw)
            ts = int(entry["__REALTIME_TIMESTAMP"]) / 1e6
        except (ValueError, KeyError, TypeError):
            continue
        message = entry.get("MESSAGE")
        if isinstance(message, list):          # journald exports non-UTF-8 as bytes
            message = bytes(message).decode("utf-8", "replace")
        priority = entry.get("PRIORITY")
        out.append((ts, str(message or ""), entry.get("_HOSTNAME") or host,
                    int(priority) if str(priority).isdigit() else None))
    return out


def parse_when(text, now=None):
    """--at: 'now', '-10m' (ago), epoch seconds, or ISO 8601 (naive = local time)."""
    from autoremedy.contract import units
    now = time.time() if now is None else now
    text = str(text).strip()
    if text == "now":
        return now
    if text.startswith("-"):
        return now - units.duration(text[1:])
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    try:
        when = datetime.fromisoformat(_iso(text.replace("T", " ")) if len(text) >= 19 else text)
    except (ValueError, AttributeError):
        raise ValueError(f"cannot read time {text!r} (use ISO 8601, epoch seconds, 'now' or '-10m')") from None
    if when.tzinfo is None:
        return time.mktime(when.timetuple()) + when.microsecond / 1e6
    return when.timestamp()


def iso(ts):
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"

