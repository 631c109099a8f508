"""The check result contract: a status, a one-line summary, metrics with thresholds.

A check *probes* (returns metrics), the thresholds *judge* (each Metric knows its
warn/crit Range), and a renderer *presents* (autoremedy.contract.render). The same Range
objects decide the state and appear in perfdata, so the two can never disagree.
"""
from enum import IntEnum

from autoremedy.contract import exitcodes
from autoremedy.contract.ranges import Range


class Status(IntEnum):
    """A check's state, which is also its exit code (autoremedy/contract/exitcodes.py)."""
    OK = exitcodes.OK
    WARNING = exitcodes.WARNING
    CRITICAL = exitcodes.CRITICAL
    UNKNOWN = exitcodes.UNKNOWN

    @classmethod
    def coerce(cls, value):
        """Map any monitor status (int, numeric string, name) to a Status; others are UNKNOWN."""
        if isinstance(value, Status):
            return value
        if isinstance(value, str):
            name = value.strip().upper()
            if name in cls.__members__:
                return cls[name]
        try:
            number = int(value)
        except (TypeError, ValueError):
            return cls.UNKNOWN
        return cls(number) if 0 <= number <= 2 else cls.UNKNOWN

    def worse(self, other):
        """The more severe of two states; UNKNOWN ranks between WARNING and CRITICAL
        for aggregation (a check that cannot tell must not mask a CRITICAL)."""
        rank = {Status.OK: 0, Status.WARNING: 1, Status.UNKNOWN: 2, Status.CRITICAL: 3}
        return self if rank[self] >= rank[other] else other


class CheckError(Exception):
    """Raised by a check that cannot determine the state: it becomes UNKNOWN with this text."""


class Metric:
    """A named value in base units, with optional thresholds and bounds."""

    __slots__ = ("label", "value", "uom", "warn", "crit", "min", "max")

    def __init__(self, label, value, uom="", warn=None, crit=None, min=None, max=None):
        self.label, self.value, self.uom = label, value, uom
        self.warn, self.crit = Range.parse(warn), Range.parse(crit)
        self.min, self.max = min, max

    @property
    def status(self):
        if self.value is None:
            return Status.OK
        if self.crit is not None and self.crit.alerts(self.value):
            return Status.CRITICAL
        if self.warn is not None and self.warn.alerts(self.value):
            return Status.WARNING
        return Status.OK

    def violated(self):
        """The Range responsible for the current state, if any."""
        status = self.status
        if status is Status.CRITICAL:
            return self.crit
        if status is Status.WARNING:
            return self.warn
        return None

    def __repr__(self):
        return f"Metric({self.label!r}, {self.value!r}{self.uom})"


class Result:
    """What a check found. ``status`` defaults to the worst metric state.

    ``details`` are extra lines for long output (one finding each); ``data`` is the
    structured payload for JSON/Zabbix consumers and for the handlers (e.g. the
    list of failed mounts a remediation needs).
    """

    def __init__(self, name, summary="", status=None, metrics=(), details=(), data=None):
        self.name = name
        self.metrics = list(metrics)
        self.details = list(details)
        self.data = dict(data or {})
        self.summary = summary
        self._status = Status.coerce(status) if status is not None else None

    @property
    def status(self):
        if self._status is not None:
            return self._status
        worst = Status.OK
        for metric in self.metrics:
            worst = worst.worse(metric.status)
        return worst

    @status.setter
    def status(self, value):
        self._status = Status.coerce(value)

    @classmethod
    def unknown(cls, name, reason):
        return cls(name, reason, status=Status.UNKNOWN)

    def to_dict(self):
        return {
            "name": self.name,
            "status": int(self.status),
            "state": self.status.name,
            "summary": self.summary,
            "metrics": {m.label: m.value for m in self.metrics},
            "details": self.details,
            "data": self.data,
        }

    def __repr__(self):
        return f"Result({self.name!r}, {self.status.name}, {self.summary!r})"
