"""Every source parses to the expected Event, field by field; every malformed
input is refused with a one-line reason."""
import json
import time

import pytest

from autoremedy.pipeline.event import (Event, MalformedEvent, decode_json, from_check, from_sensu,
                              from_zabbix, from_zabbix_params, safe_id, stable_id)
from autoremedy.contract.result import Result, Status

from handlerkit import fixture_text


def test_sensu_go_fixture_parses_field_by_field(sensu_go):
    event = from_sensu(sensu_go)
    assert event.source == "sensu-go"
    assert event.id == "3c3e68f6-6db7-40d3-9b84-4d61817ae559"
    assert event.host == "sensu-centos"
    assert event.check == "check_cpu"
    assert event.status is Status.OK and event.status_code == 0
    assert event.output.startswith("CheckCPU TOTAL OK: total=0.4 user=0.2")
    assert event.occurrences == 5
    assert event.action == "resolve"                     # state "passing"
    assert event.silenced is False
    assert event.history == [0, 0, 0, 0, 0]
    assert event.started == 1617050261                   # first run of the OK streak
    assert event.timestamp == 1617050507
    assert event.labels == {}                            # absent in the docs example
    assert event.namespace == "default"
    assert event.extra == {"entity_class": "agent", "occurrences_watermark": 5}
    assert event.raw is sensu_go
    assert event.is_problem is False


def test_sensu_classic_fixture_parses_field_by_field(sensu_classic):
    event = from_sensu(sensu_classic)
    assert event.source == "sensu-classic"
    assert event.id == "ef6b87d2-1f89-439f-8bea-33881436ab90"
    assert event.host == "client-01"
    assert event.check == "keepalive"
    assert event.status is Status.CRITICAL and event.status_code == 2
    assert event.output == "No keepalive sent from client for 230 seconds (>=180)"
    assert event.occurrences == 2
    assert event.action == "problem"                     # action "create"
    assert event.history == [0, 0, 1, 1, 2, 2]          # strings in Classic
    assert event.silenced is False
    assert event.timestamp == 1460172826
    assert event.extra == {"address": "127.0.0.1"}
    assert event.is_problem is True


def test_sensu_classic_reads_like_sensu_plugin_does(sensu_classic):
    """sensu-plugin 0.8.0 works for reading a Classic event (PyPI sensu-plugin 0.8.0):
    it is the oracle for client/check/occurrences."""
    from sensu_plugin.handler import SensuHandler
    theirs = SensuHandler(autorun=False).read_event(json.dumps(sensu_classic))
    ours = from_sensu(sensu_classic)
    assert ours.host == theirs["client"]["name"]
    assert ours.check == theirs["check"]["name"]
    assert ours.occurrences == theirs["occurrences"]
    assert int(ours.status) == theirs["check"]["status"]


def test_sensu_plugin_cannot_map_a_sensu_go_event_and_we_can(sensu_go):
    """Its Go mapping targets the pre-GA 2.0 shape and raises KeyError: 'id'."""
    from sensu_plugin.utils import map_v2_event_into_v1
    with pytest.raises(KeyError):
        map_v2_event_into_v1(json.loads(json.dumps(sensu_go)))
    assert from_sensu(sensu_go).host == "sensu-centos"


def test_sensu_go_failing_silenced_with_labels(sensu_go):
    sensu_go["check"].update(status=2, state="failing", is_silenced=True, occurrences=3,
                             history=[{"status": 0, "executed": 10}, {"status": 2, "executed": 20},
                                      {"status": 2, "executed": 30}])
    sensu_go["check"]["metadata"]["labels"] = {"service": "nova", "tier": "compute"}
    sensu_go["entity"]["metadata"]["labels"] = {"service": "entity-level", "rack": "r1"}
    event = from_sensu(sensu_go)
    assert event.status is Status.CRITICAL and event.action == "problem"
    assert event.silenced is True and event.occurrences == 3
    assert event.started == 10                       # the last OK run: where the incident began
    assert event.labels == {"service": "nova", "tier": "compute", "rack": "r1"}  # check wins


def test_sensu_go_unknown_custom_status_is_unknown(sensu_go):
    sensu_go["check"]["status"] = 127
    event = from_sensu(sensu_go)
    assert event.status is Status.UNKNOWN and event.status_code == 127


def test_sensu_go_without_an_id_gets_a_stable_hash(sensu_go):
    del sensu_go["id"]
    first, second = from_sensu(sensu_go), from_sensu(json.loads(json.dumps(sensu_go)))
    assert first.id == second.id and first.id.startswith("sensu-go-")
    sensu_go["check"]["status"] = 2
    assert from_sensu(sensu_go).id != first.id       # status is part of the identity


def zabbix_args(name, subject="PROBLEM: nova-compute is not running on cmp-07"):
    return "ops@example.com", subject, fixture_text("zabbix", name)


def test_zabbix_problem_alert_parses_field_by_field():
    event = from_zabbix(*zabbix_args("problem-message.json"))
    assert event.source == "zabbix"
    assert event.id == "zabbix-4711"
    assert event.host == "cmp-07"
    assert event.check == "nova-compute is not running on cmp-07"
    assert event.status is Status.CRITICAL                # NSEVERITY 4 (High)
    assert event.action == "problem"
    assert event.output == "PROCESS CRITICAL: 0 processes matching unit nova-compute"
    assert event.labels == {"autoremedy": "process", "service": "nova"}
    assert event.started == time.mktime(time.strptime("2024.01.31 03:12:45", "%Y.%m.%d %H:%M:%S"))
    assert event.extra["item_key"] == "autoremedy.check[process,nova-compute]"
    assert event.extra["trigger_id"] == "23456"
    assert event.extra["severity"] == 4
    assert "recovery_id" not in event.extra               # the unresolved macro is dropped
    assert event.raw["sendto"] == "ops@example.com"


def test_zabbix_recovery_is_a_resolve_with_its_own_id():
    event = from_zabbix(*zabbix_args("recovery-message.json", "RESOLVED: nova-compute"))
    assert event.status is Status.OK and event.action == "resolve"
    assert event.id == "zabbix-4711-r4790"
    assert event.is_problem is False


def test_zabbix_message_with_an_unescaped_quote_is_read_line_by_line():
    text = fixture_text("zabbix", "unescaped-quote-message.txt")
    with pytest.raises(ValueError):
        json.loads(text)                                 # what Zabbix really produces
    event = from_zabbix("ops", "PROBLEM", text)
    assert event.id == "zabbix-4712" and event.host == "ctl-01"
    assert event.check == 'Disk "/var" is 96% full'
    assert event.status is Status.CRITICAL               # severity by name: High
    assert event.labels == {"autoremedy": "disk", "mount": "/var"}


@pytest.mark.parametrize("severity,status", [("0", Status.WARNING), ("2", Status.WARNING),
                                             ("3", Status.CRITICAL), ("5", Status.CRITICAL),
                                             ("Warning", Status.WARNING), ("Disaster", Status.CRITICAL)])
def test_zabbix_severity_maps_to_status(severity, status):
    message = json.dumps({"event_id": "1", "event_value": "1", "severity": severity,
                          "host": "h", "trigger": "t"})
    assert from_zabbix("x", "PROBLEM", message).status is status


def test_zabbix_key_value_message_and_subject_recovery():
    event = from_zabbix("ops", "RESOLVED: value too high on ci-host",
                        "host=ci-host value=44 eventid=1")
    assert event.host == "ci-host" and event.id == "zabbix-1"
    assert event.action == "resolve"                      # from the subject
    assert event.check == "RESOLVED: value too high on ci-host"


def test_zabbix_acknowledgement_is_an_update_not_a_problem():
    message = json.dumps({"event_id": "9", "event_value": "1", "host": "h", "trigger": "t",
                          "update_action": "acknowledged"})
    event = from_zabbix("x", "UPDATE", message)
    assert event.action == "update" and event.is_problem is False


def test_zabbix_message_of_the_packaged_action():
    event = from_zabbix("autoremedy-st2", "PROBLEM: nova-compute is not running on cmp-07",
                        fixture_text("zabbix", "action-message.txt"))
    assert event.id == "zabbix-4711" and event.host == "cmp-07"
    assert event.status is Status.CRITICAL               # autoremedy_status, not severity 2
    assert event.labels["autoremedy_class"] == "process"
    assert event.labels["autoremedy_target"] == "nova-compute"
    assert event.extra["item_key"] == "autoremedy_check[process,--watch,nova-compute]"
    assert event.started == time.mktime(time.strptime("2024.01.31 03:12:45", "%Y.%m.%d %H:%M:%S"))
    assert "recovery_id" not in event.extra


def test_sensu_classic_custom_check_attributes_become_labels(sensu_classic):
    sensu_classic["check"].update(autoremedy_class="process", autoremedy_target="nova-compute",
                                  team="compute", refresh=1800, nested={"a": 1}, flag=True)
    event = from_sensu(sensu_classic)
    assert event.labels == {"autoremedy_class": "process", "autoremedy_target": "nova-compute",
                            "team": "compute"}       # refresh is a known attribute; no objects/bools


def test_sensu_go_hook_results_travel_with_the_event(sensu_go):
    sensu_go["check"]["hooks"] = [{"metadata": {"name": "autoremedy-process"},
                                   "command": "autoremedy handle hook process --target svc",
                                   "output": "PROCESS CRITICAL ...\nautoremedy: local process svc: remediated",
                                   "status": 0, "executed": 1, "duration": 0.2}]
    [hook] = from_sensu(sensu_go).extra["hooks"]
    assert hook == {"name": "autoremedy-process", "command": "autoremedy handle hook process --target svc",
                    "output": "PROCESS CRITICAL ...\nautoremedy: local process svc: remediated",
                    "status": 0}


def test_zabbix_webhook_parameters():
    params = json.loads(fixture_text("zabbix", "webhook-params.json"))
    event = from_zabbix_params(params)
    assert event.id == "zabbix-4711" and event.host == "cmp-07"
    assert event.check == "nova-compute is not running on cmp-07"
    assert event.status is Status.CRITICAL and event.labels == {"autoremedy": "process"}
    assert event.extra["sendto"] == "ops@example.com"


def test_hook_event_from_a_check_result():
    result = Result("process", "0 processes matching unit nova-compute", status=2)
    event = from_check(result, "process", "cmp-07", "PROCESS CRITICAL: ...", started=100.0,
                       occurrences=3, labels={"autoremedy_class": "process"})
    assert event.source == "hook" and event.host == "cmp-07" and event.check == "process"
    assert event.status is Status.CRITICAL and event.occurrences == 3
    assert event.id == stable_id("hook", "cmp-07", "process", 2, 100.0)
    assert event.extra["summary"] == "0 processes matching unit nova-compute"


def test_event_round_trips_through_the_spool_form(sensu_go):
    event = from_sensu(sensu_go)
    again = Event.from_dict(json.loads(json.dumps(event.to_dict(with_raw=True))))
    assert again.to_dict(with_raw=True) == event.to_dict(with_raw=True)


@pytest.mark.parametrize("value,expected", [
    ("3c3e68f6-6db7-40d3-9b84-4d61817ae559", "3c3e68f6-6db7-40d3-9b84-4d61817ae559"),
    ("zabbix-42", "zabbix-42"),
])
def test_plain_ids_pass_unchanged(value, expected):
    assert safe_id("sensu-go", value) == expected


@pytest.mark.parametrize("value", ["a b", "x\r\nX-Evil: 1", "trailing-newline\n", "../../etc/passwd",
                                   "é", "x" * 200, "-lead"])
def test_unsafe_ids_are_hashed_not_passed_on(value):
    ident = safe_id("sensu-go", value)
    assert ident.startswith("sensu-go-h") and len(ident) == len("sensu-go-h") + 32
    assert ident == safe_id("sensu-go", value)           # still stable


def test_spool_key_separates_problem_and_resolution_of_one_classic_incident(sensu_classic):
    problem = from_sensu(sensu_classic)
    sensu_classic.update(action="resolve")
    sensu_classic["check"]["status"] = 0
    resolve = from_sensu(sensu_classic)
    assert problem.id == resolve.id                      # Classic keeps its id
    assert problem.spool_key != resolve.spool_key


GO = json.loads(fixture_text("sensu", "sensu-go-event.json"))


def _without(path):
    data = json.loads(json.dumps(GO))
    node = data
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[part]
    del node[parts[-1]]
    return json.dumps(data).encode()


def _with(path, value):
    data = json.loads(json.dumps(GO))
    node = data
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value
    return json.dumps(data).encode()


MALFORMED = [
    (b"", "is empty"),
    (b"   \n", "is empty"),
    (b"not json", "is not JSON"),
    (b"[1, 2]", "must be a JSON object, got an array"),
    (b'"text"', "must be a JSON object, got a string"),
    (b"\xff\xfe{}", "not valid UTF-8 (byte 0xff at offset 0)"),
    (b'{"entity": {}, "check": {"status": NaN}}', "NaN"),
    (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    (b'{"foo": 1}', "neither a Sensu Go event"),
    (_without("entity.metadata.name"), "entity.metadata.name is missing"),
    (_without("check.metadata"), "check.metadata.name is missing"),
    (_without("check.status"), "check.status is missing"),
    (_with("check.status", "two"), "check.status must be an integer, got a string"),
    (_with("check.status", True), "check.status must be an integer, got a boolean"),
    (_with("check.status", -1), "must be between 0 and 2147483647, got -1"),
    (_with("check.history", [{"executed": 1}]), "check.history[0] must be an object"),
    (_with("check.occurrences", "5"), "check.occurrences must be an integer"),
    (_with("entity.metadata", "x"), "'name' is inside a string"),
    (_with("check.metadata.labels", ["a"]), "check.metadata.labels must be a mapping"),
    (_with("entity.metadata.name", ""), "host name is missing or empty"),
    (_with("entity.metadata.name", "h" * 300), "host name is longer than 255"),
    (b'{"client": {"name": "c"}, "check": {"name": "n", "status": 2}, "action": "explode"}',
     "action must be create, resolve or flapping"),
    (b'{"client": {"name": "c"}, "check": {"name": "n", "status": 2, "history": ["x"]}}',
     "check.history[0] must be a status number"),
]


@pytest.mark.parametrize("data,reason", MALFORMED, ids=[r for _, r in MALFORMED])
def test_malformed_sensu_input_is_refused_with_a_reason(data, reason):
    with pytest.raises(MalformedEvent) as caught:
        from_sensu(decode_json(data, 1 << 20, "Sensu event"))
    assert reason in str(caught.value)
    assert "\n" not in str(caught.value)


def test_input_over_the_size_limit_is_refused_before_parsing():
    with pytest.raises(MalformedEvent, match="larger than the limit of 1048576"):
        decode_json(b"{" + b" " * (10 << 20) + b"}", 1 << 20)


ZABBIX_MALFORMED = [
    (("x", "PROBLEM", ""), "message is empty"),
    (("x", "PROBLEM", "just words"), "neither a JSON object nor key=value"),
    (("x", "PROBLEM", '{"event_id": "1", "trigger": "t"}'), "no host"),
    (("x", "", '{"event_id": "1", "host": "h"}'), "no trigger name"),
    (("x", "PROBLEM", '{"event_id": "1; rm -rf /", "host": "h", "trigger": "t"}'),
     "must be a Zabbix event number"),
    (("x", "PROBLEM", "[1]"), "alert message must be a JSON object"),
    (("x", "PROBLEM", "{garbage without lines}"), "no '\"key\": value' lines"),
    (("x", "S", "host=h\udcff eventid=1"), "argument 3 is not valid UTF-8"),
]


@pytest.mark.parametrize("args,reason", ZABBIX_MALFORMED, ids=[r for _, r in ZABBIX_MALFORMED])
def test_malformed_zabbix_alerts_are_refused_with_a_reason(args, reason):
    with pytest.raises(MalformedEvent) as caught:
        from_zabbix(*args)
    assert reason in str(caught.value)
