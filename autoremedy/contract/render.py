"""Present a Result for the monitor that runs the check.

nagios  Sensu / Nagios: ``NAME STATUS: summary | 'label'=value[UOM];warn;crit;min;max``,
        long output on the next lines, exit code = status.
zabbix  one JSON object (the master item for dependent items) or, with a field,
        a single value; exit 0 always, because Zabbix ignores the exit code and
        merges stderr into the value (Zabbix manual, "External checks": the output is the value): the state must be
        in the value.
json    the Result as a JSON object, exit code = status.
"""
import math

from autoremedy.contract.ranges import _fmt


def perf_label(label):
    """Quote a perfdata label; '=' is not allowed, "'" doubles (guidelines §Perfdata)."""
    return "'" + str(label).replace("=", "_").replace("'", "''") + "'"


def perfdata(metric):
    """One perfdata entry; the thresholds are the normalised ranges that made the
    verdict ('10:20', '1000', '~:5'), never the text as typed ('10 : 20', '1e3'),
    which Icinga 2 and others reject. A value that is not a finite number has no
    perfdata entry (there is no way to write it)."""
    if metric.value is None:
        return None
    if isinstance(metric.value, float) and not math.isfinite(metric.value):
        return None
    value = _fmt(metric.value) if isinstance(metric.value, (int, float)) else str(metric.value)
    fields = [
        metric.warn.normalised() if metric.warn is not None else "",
        metric.crit.normalised() if metric.crit is not None else "",
        _fmt(metric.min) if metric.min is not None else "",
        _fmt(metric.max) if metric.max is not None else "",
    ]
    while fields and not fields[-1]:
        fields.pop()
    return ";".join([f"{perf_label(metric.label)}={value}{metric.uom}"] + fields)


def _one_line(text):
    """A status line must stay one line and must not open a second perfdata section."""
    return " ".join(str(text).split()).replace("|", "/")


def nagios(result):
    head = f"{result.name.upper()} {result.status.name}"
    if result.summary:
        head += ": " + _one_line(result.summary)
    perf = [p for p in (perfdata(m) for m in result.metrics) if p]
    if perf:
        head += " | " + " ".join(perf)
    lines = [head] + [_one_line(d) for d in result.details]
    return "\n".join(lines), int(result.status)


def zabbix(result, field=None):
    """Without ``field``: the JSON object. With it: 'status', 'summary' or a metric label."""
    if field is None:
        import json
        return json.dumps(result.to_dict(), sort_keys=True, separators=(",", ":")), 0
    if field == "status":
        return str(int(result.status)), 0
    if field == "summary":
        return f"{result.status.name}: {result.summary}", 0
    for metric in result.metrics:
        if metric.label == field:
            value = metric.value
            return (_fmt(value) if isinstance(value, (int, float)) else str(value)), 0
    # Zabbix turns this text into an unsupported item with the reason, which is what we want.
    return f"ZBX_NOTSUPPORTED: no metric {field!r} in {result.name} result", 0


def as_json(result):
    import json
    return json.dumps(result.to_dict(), sort_keys=True), int(result.status)


def render(result, fmt="nagios", field=None):
    """Return (text, exit code); credentials in a URL never reach the monitor."""
    from autoremedy import redact
    if fmt == "zabbix":
        text, code = zabbix(result, field)
    elif fmt == "json":
        text, code = as_json(result)
    else:
        text, code = nagios(result)
    return redact.text(text), code
