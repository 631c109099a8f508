import json

from autoremedy.contract.render import nagios, perfdata, render, zabbix
from autoremedy.contract.result import Metric, Result, Status


def sample(**kw):
    return Result("disk", "/var 96% used", metrics=[
        Metric("/var", 96.2, "%", "85", "95", 0, 100),
        Metric("/ used", 1234, "B", min=0),
    ], details=["second line"], **kw)


def test_nagios_line_has_status_summary_and_perfdata_with_the_thresholds_used_for_the_verdict():
    text, code = nagios(sample())
    first, second = text.split("\n")
    assert first == "DISK CRITICAL: /var 96% used | '/var'=96.2%;85;95;0;100 '/ used'=1234B;;;0"
    assert second == "second line"
    assert code == 2


def test_perf_labels_are_quoted_and_cannot_break_the_format():
    assert perfdata(Metric("it's=x", 1)) == "'it''s_x'=1"


def test_summary_pipes_and_newlines_cannot_open_a_second_perfdata_section():
    text, _ = nagios(Result("x", "a | b\nc", status=0))
    assert text == "X OK: a / b c"


def test_zabbix_object_exits_zero_even_when_critical():
    text, code = zabbix(sample())
    data = json.loads(text)
    assert code == 0
    assert data["status"] == 2 and data["metrics"]["/var"] == 96.2 and data["state"] == "CRITICAL"


def test_zabbix_single_values():
    assert zabbix(sample(), "status") == ("2", 0)
    assert zabbix(sample(), "/var") == ("96.2", 0)
    assert zabbix(sample(), "summary") == ("CRITICAL: /var 96% used", 0)
    assert zabbix(sample(), "nope")[0].startswith("ZBX_NOTSUPPORTED")


def test_json_keeps_the_exit_code():
    text, code = render(sample(), "json")
    assert code == 2 and json.loads(text)["summary"] == "/var 96% used"


def test_status_from_metrics_and_unknown_does_not_mask_critical():
    assert Result("x", metrics=[Metric("a", 1, warn="0")]).status is Status.WARNING
    assert Status.UNKNOWN.worse(Status.CRITICAL) is Status.CRITICAL
    assert Status.WARNING.worse(Status.UNKNOWN) is Status.UNKNOWN


def test_status_coercion_from_monitors():
    assert Status.coerce("2") is Status.CRITICAL
    assert Status.coerce("warning") is Status.WARNING
    assert Status.coerce(127) is Status.UNKNOWN
    assert Status.coerce(None) is Status.UNKNOWN
