"""The two packaged Zabbix media types post the same body for the same alert.

A problem, its recovery and an update of it (acknowledged and commented, the
comment with a quote and a line break) are filled the way a Zabbix server fills
them (``macros``/``fill`` of test_zabbix_mediatypes.py), then sent both ways:

- alert script: the action's message (packaging/zabbix/action.yaml) through
  the installed ``autoremedy handle zabbix`` to the StackStorm double;
- webhook: the media type's parameters (packaging/zabbix/mediatypes.yaml)
  through its JavaScript (st2_webhook.js) in zabbix_js, Zabbix's own runtime
  (https://www.zabbix.com/documentation/6.0/en/manual/concepts/js), to the
  same double.

The bodies must be equal but for what only one side can know: the time the
event was made (``event.timestamp``), and the spool's marks (``spooled_at``,
``attempt``: a webhook has no spool and Zabbix does not tell it its attempt).
"""
import json
import os
import shutil
import subprocess

import pytest
import yaml

from autoremedy import __version__
from autoremedy.pipeline.sources.zabbix import from_zabbix, from_zabbix_params

from handlerkit import API_KEY, TESTS, st2_env
from test_zabbix_mediatypes import TAGS, definitions, filled, fill, macros

ZABBIX = os.path.join(os.path.dirname(TESTS), "packaging", "zabbix")
# The autoremedy template's triggers carry the check's verdict as a tag.
OUR_TAGS = TAGS + [("autoremedy_status", "2")]
COMMENT = 'restarting it, "nova" said "no"\n\nconnection refused, "retrying"'
HANDLER_HOST = "zbx-server"
KINDS = ("problem", "recovery", "update")


def load(name):
    with open(os.path.join(ZABBIX, name)) as handle:
        return yaml.safe_load(handle)


def zabbix_js():
    tool = shutil.which("zabbix_js") or "/usr/sbin/zabbix_js"
    if not os.path.exists(tool):
        pytest.fail("zabbix_js (zabbix-server package) is needed to run the webhook's JavaScript")
    return tool


def values(kind):
    out = macros(kind, tags=OUR_TAGS)
    out["ALERT.SENDTO"] = "autoremedy"
    if kind == "update":
        out["EVENT.UPDATE.MESSAGE"] = COMMENT
    action = load("action.yaml")
    subject, message = {"problem": ("subject", "message"),
                        "recovery": ("recovery_subject", "recovery_message"),
                        "update": ("update_subject", "update_message")}[kind]
    out["ALERT.SUBJECT"] = fill(action[subject], out)
    out["ALERT.MESSAGE"] = fill(action[message], out)
    return out


def via_script(run_cli, st2, make_config, kind):
    v = values(kind)
    config = make_config({"hostname": HANDLER_HOST})
    ran = run_cli("handle", "zabbix", "--", v["ALERT.SENDTO"], v["ALERT.SUBJECT"], v["ALERT.MESSAGE"],
                  env=st2_env(st2, AUTOREMEDY_CONFIG=config))
    assert ran.returncode == 0 and "delivered to StackStorm" in ran.stdout, ran
    return st2.accepted()[-1]


def via_webhook(st2, kind):
    v = values(kind)
    [media] = [m for m in load("mediatypes.yaml") if m["type"] == 4]
    params = {p["name"]: fill(p["value"], v) for p in media["parameters"]}
    params.update({"URL": st2.url, "Webhook": "autoremedy", "ApiKey": API_KEY,
                   "Version": __version__, "HandlerHost": HANDLER_HOST})
    ran = subprocess.run([zabbix_js(), "-s", os.path.join(ZABBIX, "st2_webhook.js"), "-p",
                          json.dumps(params)], capture_output=True, text=True, timeout=60)
    assert ran.stdout.strip() == "OK", ran
    return st2.accepted()[-1]


def comparable(delivered):
    body = json.loads(json.dumps(delivered["body"]))
    body["event"].pop("timestamp")
    for key in ("spooled_at", "attempt"):
        body["autoremedy"].pop(key)
    return delivered["trace_tag"], body


def differences(a, b, where=""):
    """The paths at which two JSON values differ, for the failure message."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str)
                for d in differences(a.get(k, "<missing>"), b.get(k, "<missing>"), f"{where}.{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: webhook {a!r} != script {b!r}"]


@pytest.mark.parametrize("kind", KINDS)
def test_both_media_types_post_the_same_body(run_cli, st2, make_config, kind):
    script = via_script(run_cli, st2, make_config, kind)
    webhook = via_webhook(st2, kind)
    assert comparable(webhook) == comparable(script), differences(comparable(webhook), comparable(script))
    event = script["body"]["event"]
    # What the webhook used to lack.
    assert event["extra"]["trigger_id"] == "23456"
    assert event["started"] is not None
    assert script["body"]["autoremedy"]["handler_host"] == HANDLER_HOST
    assert webhook["body"]["autoremedy"]["handler_host"] == HANDLER_HOST
    assert script["body"]["autoremedy"]["attempt"] == 1 and webhook["body"]["autoremedy"]["attempt"] is None


def test_recovery_and_update_are_events_of_the_same_incident(run_cli, st2, make_config):
    bodies = {kind: via_script(run_cli, st2, make_config, kind)["body"]["event"] for kind in KINDS}
    problem, recovery, update = bodies["problem"], bodies["recovery"], bodies["update"]
    # CRITICAL: the check's verdict (tag autoremedy_status 2) over the severity (Warning).
    assert (problem["id"], problem["action"], problem["status"]) == ("zabbix-4711", "problem", 2)
    assert (recovery["id"], recovery["action"], recovery["status"]) == ("zabbix-4711-r4790", "resolve", 0)
    assert update["id"].startswith("zabbix-4711-u") and update["action"] == "update"
    assert {e["extra"]["incident_id"] for e in bodies.values()} == {problem["id"]}
    assert {e["extra"]["event_id"] for e in bodies.values()} == {"4711"}
    # The update says what was done, by whom, when; the problem is still open.
    assert {k: update["extra"][k] for k in ("update_action", "update_message", "update_user",
                                            "update_date", "update_time", "ack")} == {
        "update_action": "acknowledged and commented", "update_message": COMMENT,
        "update_user": "Ops Person", "update_date": "2024.01.31", "update_time": "03:14:00",
        "ack": "Yes"}
    assert update["status"] == problem["status"] and update["labels"] == problem["labels"]


@pytest.mark.parametrize("kind", ("recovery",))
def test_a_recovery_does_not_claim_the_problems_status(run_cli, st2, make_config, kind):
    """The trigger's autoremedy_status tag travels with its recovery: its labels
    must say what its status says (0), on both media types."""
    for delivered in (via_script(run_cli, st2, make_config, kind), via_webhook(st2, kind)):
        event = delivered["body"]["event"]
        assert event["status"] == 0 and event["labels"]["autoremedy_status"] == "0", event


def test_an_update_is_never_remediated_locally(run_cli, make_config, service):
    """StackStorm unreachable and the service down: the update of the problem is
    only kept for delivery, while the problem itself is remediated locally by
    the same configuration (its tags name the allowlisted target)."""
    config = make_config({"hostname": "cmp-07", "remediations": {"process": {
        "enabled": True, "targets": {"nova-compute": service.target()}}},
        "stackstorm": {"url": "http://127.0.0.1:9", "connect_timeout": 0.5}})
    try:
        for kind, starts in (("update", 0), ("problem", 1)):
            v = values(kind)
            ran = run_cli("handle", "zabbix", "--", v["ALERT.SENDTO"], v["ALERT.SUBJECT"],
                          v["ALERT.MESSAGE"], env={"AUTOREMEDY_CONFIG": config})
            assert ran.returncode == 0 and "kept for delivery" in ran.stdout, ran
            if kind == "update":
                assert "nothing to remediate for an update event" in ran.stdout, ran
                assert "remediated locally" not in ran.stdout, ran
            else:
                assert "remediated locally" in ran.stdout, ran
            assert service.start_count() == starts, (kind, ran)
    finally:
        service.kill()


# Every official media type that passes the action's message (Event-Driven
# Ansible passes none: nothing of ours reaches it).
@pytest.mark.parametrize("version,name", [(ver, name) for ver in ("6.0", "7.0")
                                          for name, params in sorted(definitions(ver).items())
                                          if any(v == "{ALERT.MESSAGE}" for _, v in params)])
def test_official_media_types_recovery_labels_and_update_incident(version, name):
    """Zabbix's own media types, configured with the action's message bodies:
    a recovery's labels say OK, and an update names the problem's incident."""
    params = definitions(version)[name]
    action = load("action.yaml")
    recovery = from_zabbix_params(filled(params, "recovery", tags=OUR_TAGS,
                                         message=action["recovery_message"]))
    assert recovery.action == "resolve" and recovery.labels["autoremedy_status"] == "0"
    update = from_zabbix_params(filled(params, "update", tags=OUR_TAGS, message=action["update_message"]))
    assert update.action == "update" and not update.is_problem
    assert update.extra["incident_id"] == "zabbix-4711" and update.extra["update_user"] == "Ops Person"
    problem = from_zabbix_params(filled(params, "problem", tags=OUR_TAGS, message=action["message"]))
    assert problem.labels["autoremedy_status"] == "2" and problem.extra["incident_id"] == problem.id


def test_a_multi_line_comment_in_the_alert_script_body():
    v = values("update")
    event = from_zabbix(v["ALERT.SENDTO"], v["ALERT.SUBJECT"], v["ALERT.MESSAGE"])
    assert event.extra["update_message"] == COMMENT
    assert event.labels["autoremedy_class"] == "process"       # the keys after it are read too
