"""Zabbix's own webhook media types (6.0.14 and 7.0.22), their parameters filled the
way a Zabbix server fills them, parsed by ``from_zabbix_params``.

The definitions are in tests/fixtures/zabbix/mediatypes/ (see the README there).
``fill`` follows the server's macro substitution (zabbix/zabbix
src/libs/zbxserver/expression.c): known macros replaced, ``{EVENT.TAGS}`` sorted
``tag:value`` joined by ", ", ``{EVENT.TAGSJSON}`` a JSON array in event order,
``{EVENT.TAGS.<name>}`` the tag's value, and every macro the server cannot
resolve in that context (``{EVENT.RECOVERY.*}`` in a problem, ``{EVENT.UPDATE.*}``
outside an update, a missing tag) left as its literal text.
"""
import json
import os
import re
import time

import pytest

from autoremedy.pipeline.event import MalformedEvent
from autoremedy.contract.result import Status
from autoremedy.pipeline.sources.zabbix import canon, fields_of, from_zabbix_params

from handlerkit import FIXTURES, fixture_text, st2_env

VERSIONS = ("6.0", "7.0")


def definitions(version):
    with open(os.path.join(FIXTURES, "zabbix", "mediatypes", f"webhooks-{version}.json")) as handle:
        return json.load(handle)["media_types"]


TAGS = [("service", "nova"), ("autoremedy_class", "process"), ("autoremedy_target", "nova-compute"),
        ("scope", "")]
BODY = """{
"event_id": "{EVENT.ID}",
"recovery_event_id": "{EVENT.RECOVERY.ID}",
"value": "{EVENT.VALUE}",
"status": "{EVENT.STATUS}",
"severity": "{EVENT.NSEVERITY}",
"host": "{HOST.HOST}",
"trigger": "{EVENT.NAME}",
"trigger_id": "{TRIGGER.ID}",
"item_key": "{ITEM.KEY1}",
"item_value": "{ITEM.VALUE1}",
"time": "{EVENT.DATE} {EVENT.TIME}",
"tags": {EVENT.TAGSJSON}
}"""
DEFAULT_MESSAGE = ("Problem started at {EVENT.TIME} on {EVENT.DATE}\nProblem name: {EVENT.NAME}\n"
                   "Host: {HOST.NAME}\nSeverity: {EVENT.SEVERITY}\nOriginal problem ID: {EVENT.ID}\n")


def _tags_text(tags):
    def natural(text):
        return [int(t) if t.isdigit() else t for t in re.split(r"([0-9]+)", text)]
    ordered = sorted(tags, key=lambda t: (natural(t[0]), natural(t[1])))
    return ", ".join(f"{k}:{v}" if v else k for k, v in ordered)


def macros(kind, tags=TAGS, message=DEFAULT_MESSAGE):
    """The values a Zabbix server gives the macros of a trigger event that is a
    problem, its recovery, or an update of the problem (acknowledge + comment)."""
    values = {
        "EVENT.ID": "4711", "EVENT.NAME": "nova-compute is not running on cmp-07",
        "TRIGGER.NAME": "nova-compute is not running on cmp-07", "TRIGGER.ID": "23456",
        "TRIGGER.DESCRIPTION": "The nova-compute service is down", "TRIGGER.URL": "",
        "HOST.HOST": "cmp-07", "HOST.NAME": "Compute 07", "HOST.IP": "10.0.0.7",
        "HOST.CONN": "10.0.0.7", "HOST.PORT": "10050", "HOST.ID": "10584",
        "TRIGGER.HOSTGROUP.NAME": "Compute nodes", "EVENT.NSEVERITY": "2",
        "EVENT.SEVERITY": "Warning", "TRIGGER.SEVERITY": "Warning", "EVENT.SOURCE": "0",
        "EVENT.OBJECT": "0", "EVENT.DATE": "2024.01.31", "EVENT.TIME": "03:12:45",
        "EVENT.DURATION": "5m 2s", "EVENT.OPDATA": "PROCESS CRITICAL: 0 processes",
        "EVENT.TAGS": _tags_text(tags),
        "EVENT.TAGSJSON": json.dumps([{"tag": k, "value": v} for k, v in tags],
                                     separators=(",", ":")),
        "EVENT.ACK.STATUS": "No", "EVENT.UPDATE.STATUS": "0", "EVENT.VALUE": "1",
        "EVENT.STATUS": "PROBLEM", "TRIGGER.VALUE": "1", "TRIGGER.STATUS": "PROBLEM",
        "ITEM.KEY1": "proc.num[nova-compute]", "ITEM.VALUE1": "0",
        "ITEM.ID1": "42001", "ITEM.NAME1": "nova-compute processes",
        "ALERT.SENDTO": "ops@example.com", "$ZABBIX.URL": "https://zabbix.example.com",
        "ALERT.SUBJECT": "Problem: nova-compute is not running on cmp-07",
    }
    for k, v in tags:
        values[f"EVENT.TAGS.{k}"] = v
    if kind == "recovery":
        values.update({"EVENT.VALUE": "0", "EVENT.STATUS": "RESOLVED", "TRIGGER.VALUE": "0",
                       "TRIGGER.STATUS": "OK", "EVENT.RECOVERY.ID": "4790",
                       "EVENT.RECOVERY.DATE": "2024.01.31", "EVENT.RECOVERY.TIME": "03:17:47",
                       "EVENT.RECOVERY.VALUE": "0", "EVENT.RECOVERY.STATUS": "RESOLVED",
                       "ALERT.SUBJECT": "Resolved in 5m 2s: nova-compute is not running on cmp-07"})
    elif kind == "update":
        values.update({"EVENT.UPDATE.STATUS": "1", "EVENT.UPDATE.ACTION": "acknowledged and commented",
                       "EVENT.UPDATE.MESSAGE": "looking at it", "EVENT.UPDATE.DATE": "2024.01.31",
                       "EVENT.UPDATE.TIME": "03:14:00", "USER.FULLNAME": "Ops Person",
                       "EVENT.ACK.STATUS": "Yes", "EVENT.UPDATE.NSEVERITY": "2",
                       "EVENT.UPDATE.SEVERITY": "Warning",
                       "ALERT.SUBJECT": "Updated problem: nova-compute is not running on cmp-07"})
    values["ALERT.MESSAGE"] = fill(message, values)
    return values


def fill(text, values):
    """Replace every macro the server knows here; leave the others as they are."""
    return re.sub(r"\{([$]?[A-Z][A-Z0-9_.]*(?:\.[A-Za-z0-9_]+)?)\}",
                  lambda m: values.get(m.group(1), m.group(0)), text)


def filled(params, kind, **kw):
    values = macros(kind, **kw)
    return {name: fill(value, values) for name, value in params}


def has(params, *macro_names):
    return any(value in {"{" + m + "}" for m in macro_names} for _, value in params)


def cases(with_message=False):
    for version in VERSIONS:
        for name, params in sorted(definitions(version).items()):
            if with_message and not has(params, "ALERT.MESSAGE"):
                continue               # Event-Driven Ansible passes no message at all
            for kind in ("problem", "recovery", "update"):
                yield pytest.param(version, name, params, kind, id=f"{version}-{name}-{kind}")


@pytest.mark.parametrize("version,name,params,kind", list(cases(with_message=True)))
def test_every_official_media_type_with_the_documented_message_body(version, name, params, kind):
    """Configured as docs/handlers.md says (the action's message is the JSON body):
    every media type gives the whole event, whatever its own parameters are."""
    event = from_zabbix_params(filled(params, kind, message=BODY))
    assert event.host == "cmp-07"
    assert event.id.startswith("zabbix-4711")
    assert event.labels["autoremedy_class"] == "process" and event.labels["service"] == "nova"
    if kind == "recovery":
        assert (event.action, event.status) == ("resolve", Status.OK)
        assert event.id == "zabbix-4711-r4790"            # the body carries the recovery id
    elif kind == "update" and has(params, "EVENT.UPDATE.STATUS", "EVENT.UPDATE.ACTION"):
        assert event.action == "update" and not event.is_problem
    else:
        assert event.action == "problem" and event.status is Status.WARNING   # NSEVERITY 2
    assert event.started == time.mktime(time.strptime("2024.01.31 03:12:45", "%Y.%m.%d %H:%M:%S"))


@pytest.mark.parametrize("version,name,params,kind", list(cases()))
def test_every_official_media_type_by_its_own_parameters(version, name, params, kind):
    """With Zabbix's default plain-text message, only the media type's own
    parameters describe the event: whatever they carry is understood; a media
    type that passes no host at all (Telegram: To, Subject, Message) cannot make
    an event, and that is refused with the reason (the handler dead-letters it)."""
    args = filled(params, kind)
    if not has(params, "HOST.HOST", "HOST.NAME"):
        with pytest.raises(MalformedEvent, match="no host"):
            from_zabbix_params(args)
        return
    event = from_zabbix_params(args)
    assert event.host == ("cmp-07" if has(params, "HOST.HOST") else "Compute 07")
    if has(params, "EVENT.NAME", "TRIGGER.NAME"):
        assert event.check == "nova-compute is not running on cmp-07"
    elif has(params, "ALERT.SUBJECT"):
        assert event.check == args[next(n for n, v in params if v == "{ALERT.SUBJECT}")]
    if has(params, "EVENT.ID"):
        assert event.id.startswith("zabbix-4711")
    if has(params, "EVENT.TAGSJSON", "EVENT.TAGS"):
        assert event.labels == {"service": "nova", "autoremedy_class": "process",
                                "autoremedy_target": "nova-compute", "scope": ""}
    else:
        assert event.labels == {}
    severity_known = has(params, "EVENT.NSEVERITY", "EVENT.SEVERITY", "TRIGGER.SEVERITY")
    value_known = has(params, "EVENT.VALUE", "EVENT.STATUS", "TRIGGER.VALUE", "TRIGGER.STATUS",
                      "ALERT.SUBJECT")
    if kind == "recovery" and value_known:
        assert (event.action, event.status) == ("resolve", Status.OK)
    elif kind == "update" and has(params, "EVENT.UPDATE.STATUS", "EVENT.UPDATE.ACTION"):
        assert event.action == "update" and not event.is_problem
        assert event.id != "zabbix-4711"                 # an update is an event of its own
    elif kind == "problem":
        assert event.action == "problem"
        # Warning (2) when the media type says the severity; unknown is CRITICAL.
        assert event.status is (Status.WARNING if severity_known else Status.CRITICAL)


# One entry per macro the event model takes: the field a parameter holding it fills.
MACRO_FIELD = {
    "{EVENT.ID}": "event_id", "{EVENT.VALUE}": "event_value", "{TRIGGER.VALUE}": "event_value",
    "{EVENT.RECOVERY.VALUE}": "recovery_value", "{EVENT.STATUS}": "event_status",
    "{TRIGGER.STATUS}": "event_status", "{EVENT.SOURCE}": "event_source",
    "{EVENT.OBJECT}": "event_object", "{EVENT.UPDATE.STATUS}": "update_status",
    "{EVENT.UPDATE.ACTION}": "update_action", "{EVENT.UPDATE.MESSAGE}": "update_message",
    "{USER.FULLNAME}": "update_user", "{EVENT.UPDATE.DATE}": "update_date",
    "{EVENT.UPDATE.TIME}": "update_time", "{EVENT.UPDATE.NSEVERITY}": "update_nseverity",
    "{EVENT.UPDATE.SEVERITY}": "update_severity", "{EVENT.ACK.STATUS}": "ack", "{EVENT.NSEVERITY}": "nseverity",
    "{EVENT.SEVERITY}": "severity", "{TRIGGER.SEVERITY}": "severity", "{HOST.HOST}": "host",
    "{HOST.NAME}": "host", "{HOST.IP}": "host_ip", "{HOST.CONN}": "host_ip",
    "{DISCOVERY.DEVICE.DNS}": "discovery_host", "{DISCOVERY.DEVICE.IPADDRESS}": "discovery_host",
    "{EVENT.NAME}": "trigger", "{TRIGGER.NAME}": "trigger", "{TRIGGER.ID}": "trigger_id",
    "{TRIGGER.DESCRIPTION}": "trigger_description", "{EVENT.OPDATA}": "opdata",
    "{EVENT.DATE}": "date", "{EVENT.TIME}": "time", "{EVENT.DATE} {EVENT.TIME}": "datetime",
    "{EVENT.TAGSJSON}": "tags", "{EVENT.TAGS}": "tags", "{ALERT.MESSAGE}": "message",
    "{TRIGGER.HOSTGROUP.NAME}": "host_groups", "{ITEM.NAME1}": "item_name",
    "{ALERT.SUBJECT}": "subject", "{EVENT.RECOVERY.DATE}": "recovery_date",
    "{EVENT.RECOVERY.TIME}": "recovery_time", "{EVENT.RECOVERY.DATE} {EVENT.RECOVERY.TIME}":
    "recovery_datetime",
}
# Not taken, on purpose: {ALERT.SENDTO} under a vendor's name (channel, github_repo,
# teamsecret...: where the alert goes), {$ZABBIX.URL}, vendor ticket ids kept in
# tags ({EVENT.TAGS.__zbx_*}: they are in the tags anyway), {EVENT.DURATION},
# {TRIGGER.URL}, {HOST.PORT}, {HOST.ID}, {ITEM.ID<n>}, names of items 2-5, and
# display fields that join several macros ("{HOST.NAME} [{HOST.IP}]").
# 'User' is {USER.FULLNAME} in one media type and 'user' {ALERT.SENDTO} in another:
# one name both ways, so it is not taken (it would only have been an extra).
AMBIGUOUS = {"user"}


def every_event_parameter():
    seen = set()
    for version in VERSIONS:
        for params in definitions(version).values():
            for name, value in params:
                if value in MACRO_FIELD and (name, value) not in seen and not name.startswith("<"):
                    seen.add((name, value))
                    yield pytest.param(name, value, id=f"{name}={value}")


@pytest.mark.parametrize("name,value", list(every_event_parameter()))
def test_every_parameter_name_of_the_official_media_types_is_understood(name, value):
    got = set(fields_of({name: "x"}))
    if canon(name) in AMBIGUOUS:
        assert got == set()
    elif (canon(name), value) == ("eventname", "{ALERT.SUBJECT}"):
        assert got == {"trigger"}                  # PagerDuty 6.0 names the event by its subject
    elif (canon(name), value) == ("severity", "{EVENT.NSEVERITY}"):
        assert got == {"severity"}                 # PagerDuty 6.0; 'severity' takes 0-5 or a name
    else:
        assert got == {MACRO_FIELD[value]}, f"{name} ({value}) -> {got}"


def test_the_fields_cover_every_official_parameter_that_names_the_event():
    """Every parameter of both versions whose value is exactly one event macro is
    mapped, or is in the short list above of what is not about the event."""
    not_taken = {"{ALERT.SENDTO}", "{$ZABBIX.URL}", "{EVENT.DURATION}", "{TRIGGER.URL}",
                 "{HOST.PORT}", "{HOST.ID}"}
    left = sorted({(n, v) for ver in VERSIONS for p in definitions(ver).values() for n, v in p
                   if re.fullmatch(r"\{[$A-Z][A-Z0-9_.]*\}", v) and v not in MACRO_FIELD
                   and v not in not_taken and not re.fullmatch(r"\{ITEM\.(ID[1-5]|NAME[2-5])\}", v)
                   and not v.startswith("{EVENT.TAGS.")})
    assert left == [], left


def test_event_nseverity_decides_over_the_severity_name():
    params = {"event_id": "1", "host_host": "h", "event_name": "t", "event_nseverity": "2",
              "event_severity": "Disaster", "event_value": "1"}
    assert from_zabbix_params(params).status is Status.WARNING


@pytest.mark.parametrize("tags", ['[{"tag":"a","value":"1"},{"tag":"b","value":""}]', "a:1, b"])
def test_event_tags_in_both_forms_become_labels(tags):
    params = {"event_id": "1", "host_host": "h", "event_name": "t", "event_tags": tags}
    assert from_zabbix_params(params).labels == {"a": "1", "b": ""}


def test_tag_values_with_colons_and_the_autoremedy_status_tag():
    params = {"eventid": "9", "hostname": "h", "eventname": "t", "severity": "5",
              "eventtags": "autoremedy_status:1, url:http://x:8080/a"}
    event = from_zabbix_params(params)
    assert event.labels == {"autoremedy_status": "1", "url": "http://x:8080/a"}
    assert event.status is Status.WARNING                # the check's verdict wins over Disaster


def test_updates_of_one_problem_are_separate_events():
    base = {"event_id": "7", "host_host": "h", "event_name": "t", "event_value": "1",
            "event_update_status": "1"}
    ack = from_zabbix_params(dict(base, event_update_action="acknowledged",
                                  event_update_date="2024.01.31", event_update_time="03:14:00"))
    comment = from_zabbix_params(dict(base, event_update_action="commented",
                                      event_update_date="2024.01.31", event_update_time="03:15:00"))
    assert ack.action == comment.action == "update"
    assert ack.id != comment.id and ack.id.startswith("zabbix-7-u")
    assert ack.spool_key != comment.spool_key


@pytest.mark.parametrize("source,action,host", [("1", "notice", "10.0.0.9"),
                                                ("2", "notice", "new-node"),
                                                ("3", "notice", "new-node"),
                                                ("4", "notice", "zabbix")])
def test_events_that_are_not_about_a_trigger_are_notices(source, action, host):
    params = {"event_id": "5", "event_source": source, "alert_subject": "Discovery: up",
              "discovery_host_ip": "10.0.0.9", "event_value": "1"}
    if source in ("2", "3"):
        params["host_name"] = "new-node"
    event = from_zabbix_params(params)
    assert (event.action, event.host) == (action, host)
    assert not event.is_problem                           # never remediated


def test_unresolved_macros_and_unknown_values_count_as_absent():
    params = {"event_id": "{EVENT.ID}", "host_host": "*UNKNOWN*", "host_name": "cmp-07",
              "event_name": "t", "event_tags": "{EVENT.TAGSJSON}", "jira_issue_key":
              "{EVENT.TAGS.__zbx_jira_issuekey}", "event_recovery_date": "{EVENT.RECOVERY.DATE}"}
    event = from_zabbix_params(params)
    assert event.host == "cmp-07" and event.labels == {} and event.id.startswith("zabbix-")


def test_a_real_media_type_parameter_object_through_the_installed_handler(run_cli, st2, state_dir):
    """Event-Driven Ansible 7.0's parameters for a problem, on stdin of `handle
    zabbix --webhook`: delivered with its tags as labels and its severity."""
    params = filled(definitions("7.0")["Event-Driven Ansible"], "problem")
    ran = run_cli("handle", "zabbix", "--webhook", input=json.dumps(params), env=st2_env(st2))
    assert ran.returncode == 0, ran
    [delivered] = st2.accepted()
    event = delivered["body"]["event"]
    assert delivered["trace_tag"] == "zabbix-4711"
    assert event["host"] == "cmp-07"                      # host_host = {HOST.HOST}
    assert event["state"] == "WARNING" and event["labels"]["autoremedy_target"] == "nova-compute"
    assert delivered["body"]["raw"]["event_nseverity"] == "2"


def test_fixture_readme_names_every_media_type():
    readme = fixture_text("zabbix", "mediatypes", "README.md")
    for version in VERSIONS:
        for name in definitions(version):
            assert name in readme, name
