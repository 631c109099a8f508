"""Nagios range expressions, parsed once and used for both the verdict and perfdata.

Grammar (monitoring-plugins guidelines, "Range expressions"): ``[@][start:][end]``.
Start defaults to 0, an empty end means +infinity, ``~`` as start means -infinity.
Without ``@`` the range alerts when the value lies *outside* [start, end] (inclusive
ends); with ``@`` it alerts when the value lies *inside*.

    >>> Range.parse("10").alerts(11), Range.parse("10:").alerts(9), Range.parse("@10:20").alerts(15)
    (True, True, True)

Where the two reference implementations disagree or are lax, this is what we do
(measured against monitoring-plugins 2.3.3's ``parse_range_string`` through
``check_procs`` and nagiosplugin 1.4.0's ``Range``):

============  =======================  ======================  ==========================
spec          monitoring-plugins (C)   nagiosplugin            here
============  =======================  ======================  ==========================
``@``         @0: (alerts on >= 0)     @0: (alerts on >= 0)    @0:, like both
``""``        0: (no alert >= 0)       0:                      no threshold (an unset
                                                               template variable)
``" "``       0:0 (strtod of blank)    error                   error: blank
``10 : 20``   10:20                    10:20                   10:20
``1e3``       1000                     error                   1000
``abc``       0 (silently)             error                   error
``inf:``,     start +inf, accepted     error                   error: not finite (``~:``
``@inf``,                                                      and an empty end are the
``1e309:``                                                     infinities)
============  =======================  ======================  ==========================

Perfdata always carries the normalised range (``10:20``, ``1000``, ``~:5``), never
the text as typed: Icinga 2 rejects ``;10 : 20;``, and ``1e3`` is not a number
there (the guidelines forbid scientific notation).
"""
import math

INF = math.inf


class RangeError(ValueError):
    """A threshold string that is not a Nagios range."""


_HINT = "use '~' as start for minus infinity, an empty end for plus infinity"


def _number(text, spec):
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        raise RangeError(f"invalid range {spec!r}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise RangeError(f"invalid range {spec!r}: {text!r} is not a finite number ({_HINT})")
    return value


class Range:
    __slots__ = ("start", "end", "inside", "spec")

    def __init__(self, start=0.0, end=INF, inside=False, spec=None):
        if start > end:
            raise RangeError(f"invalid range {spec!r}: start {_fmt(start)} is above end {_fmt(end)}")
        self.start, self.end, self.inside = start, end, inside
        self.spec = spec if spec is not None else self._render()

    @classmethod
    def parse(cls, spec):
        """Parse ``spec``; an int/float means ``0:value``; ``None``/'' means no threshold."""
        if spec is None or isinstance(spec, Range):
            return spec
        if isinstance(spec, (int, float)) and not isinstance(spec, bool):
            return cls(0.0, _number(repr(float(spec)), spec), False)
        text = str(spec)
        if not text:
            return None
        if not text.strip():
            raise RangeError(f"invalid range {spec!r}: blank (leave the option out for no threshold)")
        text = text.strip()
        inside = text.startswith("@")
        body = text[1:].strip() if inside else text
        if not body:
            return cls(0.0, INF, True, text)          # '@' alone: @0:, as C and nagiosplugin
        if ":" in body:
            start_s, _, end_s = body.partition(":")
            if ":" in end_s:
                raise RangeError(f"invalid range {spec!r}: more than one ':'")
            start_s, end_s = start_s.strip(), end_s.strip()
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

    def normalised(self):
        """The canonical text: what perfdata carries ('10 : 20' -> '10:20')."""
        return self._render()

    def describe(self):
        """Human wording of the alert condition, for summaries: '>95', '<1', 'in 10..20'."""
        if self.inside:
            return f"in {_fmt(self.start)}..{_fmt(self.end)}" if self.end != INF \
                else f">={_fmt(self.start)}" if self.start != -INF else "always"
        if self.start in (0, -INF) and self.end != INF:
            return f">{_fmt(self.end)}"
        if self.end == INF:
            return f"<{_fmt(self.start)}" if self.start != -INF else "never"
        return f"outside {_fmt(self.start)}..{_fmt(self.end)}"

    def __str__(self):
        return self._render()

    def __repr__(self):
        return f"Range({self.spec!r})"

    def __eq__(self, other):
        return isinstance(other, Range) and (self.start, self.end, self.inside) == (
            other.start, other.end, other.inside)

    def __hash__(self):
        return hash((self.start, self.end, self.inside))


def _fmt(value):
    """Plain decimal, never scientific notation (perfdata rule), exact to the
    double's shortest repr: 1e-07 -> '0.0000001', 1e20 -> '100000000000000000000'.
    Infinities (a metric can hold one) are 'inf' / '-inf' rather than a crash."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return str(value) if value.bit_length() < 1000 else format(float(value), "f")
    if not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    from decimal import Decimal            # only for non-integral values: keeps start-up cheap
    text = format(Decimal(repr(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
