"""Nagios range expressions, parsed once and used for both the verdict and perfdata.

Grammar (monitoring-plugins guidelines, "Range expressions"): ``[@][start:][end]``.
Start defaults to 0, an empty end means +infinity, ``~`` as start means -infinity.
Without ``@`` the range alerts when the value lies *outside* [start, end] (inclusive
ends); with ``@`` it alerts when the value lies *inside*.

    >>> Range.parse("10").alerts(11), Range.parse("10:").alerts(9), Range.parse("@10:20").alerts(15)
    (True, True, True)
"""
import math

INF = math.inf


class RangeError(ValueError):
    """A threshold string that is not a Nagios range."""


def _number(text, spec):
    try:
        value = float(text)
    except ValueError:
        raise RangeError(f"invalid range {spec!r}: {text!r} is not a number") from None
    if math.isnan(value):
        raise RangeError(f"invalid range {spec!r}: NaN is not a bound")
    return value


class Range:
    __slots__ = ("start", "end", "inside", "spec")

    def __init__(self, start=0.0, end=INF, inside=False, spec=None):
        if start > end:
            raise RangeError(f"invalid range {spec!r}: start {start:g} is above end {end:g}")
        self.start, self.end, self.inside = start, end, inside
        self.spec = spec if spec is not None else self._render()

    @classmethod
    def parse(cls, spec):
        """Parse ``spec``; an int/float means ``0:value``; ``None``/'' means no threshold."""
        if spec is None or isinstance(spec, Range):
            return spec
        if isinstance(spec, (int, float)):
            return cls(0.0, float(spec), False, _fmt(spec))
        text = str(spec).strip()
        if not text:
            return None
        inside = text.startswith("@")
        body = text[1:] if inside else text
        if not body:
            raise RangeError(f"invalid range {spec!r}: nothing after '@'")
        if ":" in body:
            start_s, _, end_s = body.partition(":")
            if ":" in end_s:
                raise RangeError(f"invalid range {spec!r}: more than one ':'")
            start = -INF if start_s == "~" else (_number(start_s, spec) if start_s else 0.0)
            end = _number(end_s, spec) if end_s else INF
        else:
            start, end = 0.0, _number(body, spec)
        return cls(start, end, inside, text)

    def alerts(self, value):
        """True when ``value`` should raise this range's state."""
        within = self.start <= value <= self.end
        return within if self.inside else not within

    def _render(self):
        end = "" if self.end == INF else _fmt(self.end)
        if self.start == 0 and end:
            body = end
        else:
            body = ("~" if self.start == -INF else _fmt(self.start)) + ":" + end
        return ("@" if self.inside else "") + body

    def describe(self):
        """Human wording of the alert condition, for summaries: '>95', '<1', 'in 10..20'."""
        if self.inside:
            return f"in {_fmt(self.start)}..{_fmt(self.end)}"
        if self.start in (0, -INF) and self.end != INF:
            return f">{_fmt(self.end)}"
        if self.end == INF:
            return f"<{_fmt(self.start)}"
        return f"outside {_fmt(self.start)}..{_fmt(self.end)}"

    def __str__(self):
        return self.spec

    def __repr__(self):
        return f"Range({self.spec!r})"

    def __eq__(self, other):
        return isinstance(other, Range) and (self.start, self.end, self.inside) == (
            other.start, other.end, other.inside)

    def __hash__(self):
        return hash((self.start, self.end, self.inside))


def _fmt(value):
    """Plain decimal, never scientific notation (perfdata rule)."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")
