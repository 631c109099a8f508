"""Zabbix: the template and agent parameters, checked on their own and against a
real Zabbix 6.0 (server + agent + frontend API) started by the test module, with
the commands run from the unpacked Sensu asset as the zabbix user runs them."""
import json
import os
import re
import subprocess
import sys
import time
import uuid

import pytest
import yaml

from pkgenv import AUTOREMEDY, PACKAGING, machine_lock, need
from loopback import st2_double

ZABBIX = os.path.join(PACKAGING, "zabbix")
sys.path.insert(0, ZABBIX)
import template as template_source  # noqa: E402  (packaging/zabbix/template.py)


def load_template():
    with open(os.path.join(ZABBIX, "autoremedy_template.yaml")) as handle:
        return yaml.safe_load(handle)["zabbix_export"]


def user_parameters():
    """{key: command} from the agent drop-in."""
    out = {}
    with open(os.path.join(ZABBIX, "zabbix_agentd.d", "autoremedy.conf")) as handle:
        for line in handle:
            if line.startswith("UserParameter="):
                key, command = line[len("UserParameter="):].rstrip("\n").split(",", 1)
                out[key] = command
    return out


def walk(node):
    """Every mapping in the export, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


# --- the files on their own ------------------------------------------------------------

def test_committed_template_is_the_generators_output():
    with open(os.path.join(ZABBIX, "autoremedy_template.yaml")) as handle:
        assert handle.read() == template_source.render(), \
            "run: python3 packaging/zabbix/template.py > packaging/zabbix/autoremedy_template.yaml"


def test_uuids_are_unique_v4():
    uuids = [n["uuid"] for n in walk(load_template()) if "uuid" in n]
    assert len(uuids) == len(set(uuids)) > 30
    for value in uuids:
        assert re.fullmatch(r"[0-9a-f]{32}", value) and uuid.UUID(value).version == 4


def test_every_agent_item_has_a_user_parameter_and_every_external_item_the_script():
    params = user_parameters()
    keys = [n["key"] for n in walk(load_template()) if "key" in n and n.get("type") in ("ZABBIX_PASSIVE", None)
            and "master_item" not in n and not n["key"].startswith("autoremedy_check[")]
    for key in keys:
        base = key.split("[", 1)[0]
        assert base in params or f"{base}[*]" in params, key
    for node in walk(load_template()):
        if node.get("type") == "EXTERNAL":
            assert node["key"].startswith("autoremedy_check[")
    # Parameters are quoted in the command: an unquoted $1 is word-split by the
    # sh -c the agent runs it with (measured on 6.0.14; UserParameter syntax:
    # https://www.zabbix.com/documentation/6.0/en/manual/config/items/userparameters).
    for key, command in params.items():
        if key.endswith("[*]"):
            assert re.findall(r"\$\d", command) and not re.findall(r'(?<!")\$\d', command), command


def test_triggers_reference_items_that_exist():
    export = load_template()
    body = export["templates"][0]
    items = {i["key"] for i in body["items"]}
    for rule in body["discovery_rules"]:
        protos = {p["key"] for p in rule["item_prototypes"]}
        for proto in rule["item_prototypes"]:
            for trig in proto.get("trigger_prototypes", []):
                assert re.search(r"/autoremedy/(.+?)\)", trig["expression"]).group(1) in protos
            if "master_item" in proto:
                assert proto["master_item"]["key"] in protos | items
    for item in body["items"]:
        for trig in item.get("triggers", []):
            assert re.search(r"/autoremedy/(.+?)\)", trig["expression"]).group(1) == item["key"]
            assert trig["manual_close"] == "YES"
        if "master_item" in item:
            assert item["master_item"]["key"] in items
    for trig in export["triggers"]:
        assert re.search(r"/autoremedy/(.+?),", trig["expression"]).group(1) in items


def test_every_check_class_is_monitored(check_classes):
    body = load_template()["templates"][0]
    covered = {t["value"] for n in walk(body) for t in n.get("tags", []) if t.get("tag") == "autoremedy_class"}
    covered |= {"batch"}
    missing = set(check_classes) - covered
    assert not missing, f"classes without a Zabbix item: {missing}"
    expected = {"process", "disk", "rabbitmq-queues", "rabbitmq-node", "mysql-replication", "galera",
                "compute-node", "openstack-consistency", "spool"}
    assert expected <= covered


def test_webhook_script_builds_the_event_offline():
    """zabbix_js runs the media type's JavaScript without a server
    (https://www.zabbix.com/documentation/6.0/en/manual/concepts/js)."""
    with st2_double("k3y") as st2:
        params = {"URL": st2.url, "Webhook": "autoremedy", "ApiKey": "k3y", "EventID": "77", "EventValue": "1",
                  "RecoveryEventID": "{EVENT.RECOVERY.ID}", "Host": "node-1", "TriggerName": "Process x is CRITICAL",
                  "EventTags": json.dumps([{"tag": "autoremedy_class", "value": "process"},
                                           {"tag": "autoremedy_target", "value": "nova-compute"},
                                           {"tag": "autoremedy_status", "value": "2"}]),
                  "Severity": "4", "ItemKey": "k", "ItemValue": "2", "Subject": "s", "Message": "m"}
        out = subprocess.run([need("zabbix_js"), "-s", os.path.join(ZABBIX, "st2_webhook.js"),
                              "-p", json.dumps(params)], capture_output=True, text=True)
        assert out.stdout.strip() == "OK", out
        first = st2.accepted()[0]
        hook, body = first["hook"], first["body"]
        assert hook == "autoremedy" and first["trace_tag"] == "zabbix-77"
        # The document the handlers post: {event, raw, autoremedy}.
        assert set(body) == {"event", "raw", "autoremedy"}
        event = body["event"]
        assert {k: event[k] for k in ("id", "source", "host", "check", "status", "state", "action")} == {
            "id": "zabbix-77", "source": "zabbix", "host": "node-1", "check": "Process x is CRITICAL",
            "status": 2, "state": "CRITICAL", "action": "problem"}
        assert event["labels"] == {"autoremedy_class": "process", "autoremedy_target": "nova-compute",
                                   "autoremedy_status": "2"}
        assert event["extra"]["event_id"] == "77" and "recovery_id" not in event["extra"]
        assert body["raw"] == {"sendto": "", "subject": "s", "message": "m"}
        assert "k3y" not in json.dumps(body)          # the API key never travels in the body
        subprocess.run([need("zabbix_js"), "-s", os.path.join(ZABBIX, "st2_webhook.js"), "-p",
                        json.dumps(dict(params, EventValue="0", RecoveryEventID="78"))], check=True,
                       capture_output=True)
        resolved = st2.accepted()[1]["body"]["event"]
        assert (resolved["id"], resolved["status"], resolved["action"]) == ("zabbix-77-r78", 0, "resolve")
        assert resolved["labels"]["autoremedy_status"] == "0"      # not the problem's "2"
        assert resolved["extra"]["incident_id"] == "zabbix-77"
        bad = subprocess.run([need("zabbix_js"), "-s", os.path.join(ZABBIX, "st2_webhook.js"),
                              "-p", json.dumps(dict(params, ApiKey="wrong"))], capture_output=True, text=True)
        assert "HTTP 401" in bad.stdout + bad.stderr and "configuration error" in bad.stdout + bad.stderr


def test_node_hook_commands_match_what_the_hook_and_the_sudo_gate_accept():
    from autoremedy.zabbix_setup import hook_command
    tags = "{EVENT.TAGS.autoremedy_class} {EVENT.TAGS.autoremedy_target} {EVENT.TAGS.autoremedy_check_args}"
    assert hook_command("/usr/bin/autoremedy") == (
        "/usr/bin/autoremedy handle hook {EVENT.TAGS.autoremedy_class} --target {EVENT.TAGS.autoremedy_target} "
        "{EVENT.TAGS.autoremedy_check_args}")
    assert hook_command("/usr/bin/autoremedy", sudo=True) == f"sudo -n /usr/libexec/autoremedy/remediate hook {tags}"
    # The check options the template puts in the tag are ones the gate lets through.
    gate = open(os.path.join(PACKAGING, "sudoers", "remediate")).read()
    allowed = re.search(r"^\s+(--watch\|[^)]*)\) ;;$", gate, re.M).group(1).split("|")
    for node in walk(load_template()):
        for tag in node.get("tags", []):
            if tag.get("tag") == "autoremedy_check_args":
                assert tag["value"].split()[0] in allowed, tag


# --- against a real Zabbix --------------------------------------------------------------



@pytest.fixture(scope="module")
def zabbix(unpacked_asset, artefacts):
    for tool in ("/usr/sbin/zabbix_server", "/usr/sbin/zabbix_agentd", "zabbix_get", "php", "mariadb"):
        need(tool)
    from zabbix_stack import Stack
    base = artefacts / "zabbix"
    (base / "state").mkdir(parents=True)
    token = f"ar-ci-daemon-{os.getpid()}"
    config = base / "autoremedy.yaml"
    config.write_text(yaml.safe_dump({
        "state_dir": str(base / "state"),
        "checks": {"process": {"watch": [{"name": "ar-dead", "cmdline": token}]}},
        # The node hook's --target must be in the allowlist before any probe runs
        # (handlers/hook.py), as on an operator's node. dry_run: a hook that could
        # not forward would only plan the restart.
        "remediations": {"process": {"enabled": True, "dry_run": True, "targets": {"ar-dead": {
            "start": [sys.executable, "-c", "import time; time.sleep(600)"],
            "check": {"cmdline": token}}}}},
    }))
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
           "AUTOREMEDY_CONFIG": str(config)}
    stack = Stack(base, str(unpacked_asset / "bin" / "autoremedy"), env)
    # One Zabbix per machine (fixed ports, the shared database, the frontend's
    # /etc/zabbix/zabbix.conf.php): another session's stack is waited for.
    with machine_lock("zabbix"):
        try:
            stack.start(PACKAGING)
        except Exception:
            stack.stop()
            raise
        stack.token = token
        stack.config = config
        try:
            yield stack
        finally:
            stack.stop()


def setup_cmd(*extra, env=None):
    from zabbix_stack import API_URL
    return subprocess.run([AUTOREMEDY, "zabbix-setup", "--url", API_URL, "--source", ZABBIX, *extra],
                          capture_output=True, text=True, env=dict(os.environ, **(env or {})))


def wire_alert_script(zabbix, url):
    """What an operator's Zabbix server has for `--via script`: the configuration
    the alert script reads (the stack's AUTOREMEDY_CONFIG) names StackStorm and an
    API key file the zabbix user can read and nobody else. zabbix-setup verifies it
    (and fails, exit 4, while an alert would fall back for lack of it)."""
    import pwd
    key = zabbix.path("st2.key")
    with open(key, "w") as handle:
        handle.write("ci-api-key\n")
    user = pwd.getpwnam("zabbix")
    os.chown(key, user.pw_uid, user.pw_gid)
    os.chmod(key, 0o600)
    config = yaml.safe_load(zabbix.config.read_text())
    config["stackstorm"] = {"url": url, "api_key_file": key}
    zabbix.config.write_text(yaml.safe_dump(config))
    return ["--node-config", str(zabbix.config)]


@pytest.mark.integration
def test_installer_imports_and_updates_in_place(zabbix, st2):
    node = wire_alert_script(zabbix, st2.url)
    first = setup_cmd(*node, env={"AUTOREMEDY_ZABBIX_PASSWORD": "zabbix"})
    assert first.returncode == 0, first
    api = zabbix.api()
    action = api.action.get(filter={"name": ["autoremedy to StackStorm"]}, output=["actionid"])
    media = api.mediatype.get(filter={"name": ["autoremedy (alert script)", "autoremedy (StackStorm webhook)"]},
                              output=["mediatypeid", "name", "exec_params", "type"])
    assert len(action) == 1 and len(media) == 2
    second = setup_cmd(*node, env={"AUTOREMEDY_ZABBIX_PASSWORD": "zabbix"})
    assert second.returncode == 0, second
    lines = second.stdout.splitlines()
    assert lines[0] == "template autoremedy: imported"
    assert all(line.endswith("updated") or "updated (media" in line for line in lines[1:-1]), lines
    assert lines[-1].startswith(f"node configuration {zabbix.config}: verified for zabbix "), lines
    # Updated in place: the same ids, never deleted and recreated.
    assert api.action.get(filter={"name": ["autoremedy to StackStorm"]}, output=["actionid"]) == action
    script = next(m for m in media if m["type"] == "1")
    assert script["exec_params"] == "{ALERT.SENDTO}\n{ALERT.SUBJECT}\n{ALERT.MESSAGE}\n"
    # Problems, recoveries and updates go to the same user through the same media.
    [got] = api.action.get(filter={"name": ["autoremedy to StackStorm"]}, selectOperations="extend",
                           selectRecoveryOperations="extend", selectUpdateOperations="extend")
    user = api.user.get(filter={"username": ["autoremedy-st2"]}, output=["userid"])[0]["userid"]
    kinds = ("operations", "recovery_operations", "update_operations")
    for kind in kinds:
        [op] = got[kind]
        assert op["operationtype"] == "0" and op["opmessage"]["mediatypeid"] == script["mediatypeid"], op
        assert [u["userid"] for u in op["opmessage_usr"]] == [user], op
    assert "{EVENT.UPDATE.ACTION}" in got["update_operations"][0]["opmessage"]["message"]
    webhook = api.mediatype.get(filter={"name": ["autoremedy (StackStorm webhook)"]}, output=["parameters"])[0]
    params = {p["name"]: p["value"] for p in webhook["parameters"]}
    assert params["HandlerHost"] == "127.0.0.1" and params["Version"], params


def test_installer_rejects_broken_definitions_before_any_network(tmp_path):
    broken = tmp_path / "zabbix"
    broken.mkdir()
    (broken / "autoremedy_template.yaml").write_text(open(os.path.join(ZABBIX, "autoremedy_template.yaml")).read())
    (broken / "mediatypes.yaml").write_text("- name: [unclosed\n")
    ran = subprocess.run([AUTOREMEDY, "zabbix-setup", "--url", "http://127.0.0.1:9", "--source", str(broken)],
                         capture_output=True, text=True, env=dict(os.environ, AUTOREMEDY_ZABBIX_PASSWORD="x"))
    assert ran.returncode == 3 and ran.stderr.startswith(f"autoremedy: {broken}: unusable definitions: ")
    assert len(ran.stderr.splitlines()) == 1 and "Connection" not in ran.stderr


@pytest.mark.integration
def test_installer_errors_are_one_line(zabbix, tmp_path):
    wrong = tmp_path / "pw"
    wrong.write_text("not-the-password\n")
    ran = setup_cmd("--password-file", str(wrong))
    assert ran.returncode == 3 and ran.stderr.startswith("autoremedy: login to ") and "Traceback" not in ran.stderr
    ran = setup_cmd()
    assert ran.returncode == 2 and "--password-file" in ran.stderr


@pytest.mark.integration
def test_every_user_parameter_answers_through_the_agent(zabbix, check_classes):
    from zabbix_stack import zabbix_get
    samples = {"autoremedy.process[*]": "autoremedy.process[ar-dead]",
               "autoremedy.disk[*]": "autoremedy.disk[/,85,95]"}
    for key in user_parameters():
        got = zabbix_get(samples.get(key, key))
        assert not got.startswith("ZBX_NOTSUPPORTED"), (key, got)
        value = json.loads(got)
        if key.endswith(".discovery"):
            assert isinstance(value, list), (key, value)
            continue
        assert value["status"] in (0, 1, 2, 3), (key, value)
        cls = value["name"]
        if cls in check_classes:
            assert "unknown check class" not in value["summary"], (key, value)
    dead = json.loads(zabbix_get("autoremedy.process[ar-dead]"))
    assert dead["status"] == 2 and zabbix.token in dead["summary"]
    disks = json.loads(zabbix_get("autoremedy.disk.discovery"))
    assert {"{#FSNAME}": "/", "{#FSTYPE}": disks[0]["{#FSTYPE}"]} in disks


def host_with_template(api, macros):
    from zabbix_stack import AGENT_PORT, HOSTNAME
    for old in api.host.get(filter={"host": [HOSTNAME]}, output=["hostid"]):
        api.host.delete(old["hostid"])
    group = api.hostgroup.get(filter={"name": ["Linux servers"]}, output=["groupid"])[0]["groupid"]
    template = api.template.get(filter={"host": ["autoremedy"]}, output=["templateid"])[0]["templateid"]
    host = api.host.create(host=HOSTNAME, groups=[{"groupid": group}], templates=[{"templateid": template}],
                           interfaces=[{"type": 1, "main": 1, "useip": 1, "ip": "127.0.0.1", "dns": "",
                                        "port": str(AGENT_PORT)}],
                           macros=[{"macro": k, "value": v} for k, v in macros.items()])
    return host["hostids"][0]


@pytest.fixture(scope="module")
def st2(zabbix):
    with st2_double("ci-api-key") as double:
        yield double


@pytest.fixture(scope="module")
def monitored_host(zabbix, st2, tmp_path_factory):
    keyfile = tmp_path_factory.mktemp("keys") / "st2.key"
    keyfile.write_text("ci-api-key\n")
    ran = setup_cmd("--via", "webhook", "--st2-url", st2.url, "--st2-api-key-file", str(keyfile),
                    env={"AUTOREMEDY_ZABBIX_PASSWORD": "zabbix"})
    assert ran.returncode == 0, ran
    api = zabbix.api()
    hostid = host_with_template(api, {"{$AR.INTERVAL}": "5s", "{$AR.LLD.INTERVAL}": "10s"})
    subprocess.run(["/usr/sbin/zabbix_server", "-c", zabbix.path("zabbix_server.conf"), "-R", "config_cache_reload"],
                   capture_output=True)
    return hostid


def updates_of(st2, eventid):
    """The bodies at the StackStorm double that are updates of problem ``eventid``."""
    return [a["body"] for a in st2.accepted() if a["body"]["event"]["action"] == "update"
            and a["body"]["event"]["extra"].get("incident_id") == f"zabbix-{eventid}"]


def event_started(api, eventid):
    """The problem's start as the handler reads {EVENT.DATE} {EVENT.TIME}: local time."""
    return int(api.event.get(eventids=eventid, output=["clock"])[0]["clock"])


def history(api, hostid, key, kind):
    items = api.item.get(hostids=hostid, filter={"key_": key}, output=["itemid", "state", "error"])
    if not items:
        return None
    values = api.history.get(itemids=items[0]["itemid"], history=kind, sortfield="clock", sortorder="DESC", limit=1)
    return values[0]["value"] if values else None


@pytest.mark.integration
def test_external_check_value_read_through_history(zabbix, monitored_host):
    from zabbix_stack import wait_for
    api = zabbix.api()
    interface = api.hostinterface.get(hostids=monitored_host, output=["interfaceid"])[0]["interfaceid"]
    api.item.create(hostid=monitored_host, interfaceid=interface, name="ci external disk",
                    key_="autoremedy_check[disk,-p,/]", type=10, value_type=4, delay="5s", history="1d", trends="0")
    value = wait_for(lambda: history(api, monitored_host, "autoremedy_check[disk,-p,/]", 4), 60,
                     what="the external check's first value")
    result = json.loads(value)
    assert result["name"] == "disk" and result["status"] in (0, 1, 2)
    # The template's own external items produce a status too (UNKNOWN with the reason
    # where the service is not reachable from here).
    status = wait_for(lambda: history(api, monitored_host, "autoremedy.status[compute-node]", 3), 60,
                      what="the compute-node status")
    assert status in ("0", "1", "2", "3")


@pytest.mark.integration
def test_problem_reaches_stackstorm_and_is_acknowledged_then_recovers(zabbix, monitored_host, st2):
    """A real failing check (a watched process that is not running) raises a
    problem; the action sends it through the webhook media type to the StackStorm
    double; the remediation's result is written back with event.acknowledge; the
    process comes up and the recovery is forwarded too."""
    from zabbix_stack import wait_for
    api = zabbix.api()

    def problem_bodies(status):
        # source zabbix: the database is kept between runs, and with it the node
        # hook action of an earlier run, whose `handle hook` forwards too.
        return [a["body"]["event"] for a in st2.accepted() if a["body"]["event"]["source"] == "zabbix"
                and a["body"]["event"]["labels"].get("autoremedy_target") == "ar-dead"
                and a["body"]["event"]["status"] == status]

    event = wait_for(lambda: problem_bodies(2), 120, 1, "the problem at the StackStorm double")[0]
    assert event["host"] == "ci-host" and event["action"] == "problem"
    assert event["labels"]["autoremedy_class"] == "process" and event["labels"]["autoremedy_status"] == "2"
    eventid = event["extra"]["event_id"]
    assert event["id"] == f"zabbix-{eventid}"

    # What the pack's zabbix_ack action does with the remediation's outcome.
    sys.path.insert(0, os.path.join(PACKAGING, "stackstorm", "autoremedy", "actions", "lib"))
    import zabbix_ack
    from zabbix_stack import API_URL
    zabbix_ack.acknowledge(API_URL, "Admin", "zabbix", eventid,
                           "autoremedy process ar-dead: remediated: verified OK")
    event = api.event.get(eventids=eventid, select_acknowledges=["action", "message"],
                          output=["acknowledged", "r_eventid"])[0]
    assert event["acknowledged"] == "1"
    assert any(a["message"] == "autoremedy process ar-dead: remediated: verified OK" for a in event["acknowledges"])
    # The acknowledgement comes back through the action's update operations, as an
    # update of the same incident (never a new problem).
    update = wait_for(lambda: updates_of(st2, eventid), 60, 1, "the update at the StackStorm double")[0]
    assert update["event"]["id"].startswith(f"zabbix-{eventid}-u")
    assert update["event"]["extra"]["update_message"] == "autoremedy process ar-dead: remediated: verified OK"
    assert "acknowledged" in update["event"]["extra"]["update_action"]
    assert update["event"]["extra"]["update_user"] and update["event"]["extra"]["ack"] == "Yes"
    assert update["event"]["started"] == event_started(api, eventid)
    assert update["autoremedy"]["spooled_at"] is None          # the webhook media type

    daemon = subprocess.Popen([zabbix.token, "-c", "import time; time.sleep(600)"],   # argv[0]: --cmdline is anchored
                              executable=sys.executable)
    try:
        # This problem's recovery: another trigger on the same item (e.g. "cannot be
        # checked" while a check timed out on a loaded machine) may resolve first.
        recovered = wait_for(lambda: [e for e in problem_bodies(0) if e["id"].startswith(f"zabbix-{eventid}-r")],
                             120, 1, "the recovery at the StackStorm double")[0]
        assert recovered["action"] == "resolve"
    finally:
        daemon.kill()
        daemon.wait()


@pytest.mark.integration
def test_alert_script_media_type_delivers_through_the_handler(zabbix, monitored_host, st2):
    """The spooled path: problem -> action -> alert-script media type ->
    `autoremedy handle zabbix` (as the zabbix user, from the asset) -> StackStorm,
    in a body the pack's process rule matches."""
    from zabbix_stack import wait_for
    api = zabbix.api()
    node = wire_alert_script(zabbix, st2.url)

    daemon = subprocess.Popen([zabbix.token, "-c", "import time; time.sleep(600)"],   # argv[0]: --cmdline is anchored
                              executable=sys.executable)
    try:
        wait_for(lambda: history(api, monitored_host, "autoremedy.process.status[ar-dead]", 3) == "0", 60,
                 what="the watched process to be seen running")
        ran = setup_cmd("--via", "script", *node, env={"AUTOREMEDY_ZABBIX_PASSWORD": "zabbix"})
        assert ran.returncode == 0, ran
        subprocess.run(["/usr/sbin/zabbix_server", "-c", zabbix.path("zabbix_server.conf"), "-R",
                        "config_cache_reload"], capture_output=True)
        time.sleep(6)                     # CacheUpdateFrequency: the action now uses the script media
    finally:
        daemon.kill()
        daemon.wait()

    def via_handler():
        # The handler's body has a spool time; the webhook's (no spool) has none.
        return [a["body"] for a in st2.accepted() if a["body"].get("autoremedy", {}).get("spooled_at")
                and a["body"]["event"]["source"] == "zabbix"
                and a["body"]["event"]["labels"].get("autoremedy_target") == "ar-dead"
                and a["body"]["event"]["status"] == 2]

    body = wait_for(via_handler, 120, 1, "the problem forwarded by `autoremedy handle zabbix`")[0]
    assert body["event"]["source"] == "zabbix" and body["event"]["host"] == "ci-host"
    from st2_rules import matching_rules
    assert matching_rules(body) == ["process.yaml"]
    # Zabbix marks the alert sent once the script has exited (after its POST).
    wait_for(lambda: any(a["alerttype"] == "0" and a["status"] == "1" for a in api.alert.get(
        eventids=body["event"]["extra"]["event_id"], output=["alerttype", "status", "error"])), 30,
        what="the alert-script alert marked sent")
    # An acknowledgement through the API comes back through `handle zabbix` as an
    # update of the same incident, delivered (StackStorm is up) and not remediated.
    eventid = body["event"]["extra"]["event_id"]
    api.event.acknowledge(eventids=[eventid], action=2 | 4, message='checked: "ar-dead"\nsecond line')
    [update] = wait_for(lambda: [u for u in updates_of(st2, eventid) if u["autoremedy"]["spooled_at"]], 60, 1,
                        "the update forwarded by `autoremedy handle zabbix`")[:1]
    assert update["event"]["extra"]["update_message"] == 'checked: "ar-dead"\nsecond line'
    assert update["event"]["status"] == body["event"]["status"] and update["autoremedy"]["local"] == []
    assert update["event"]["started"] == body["event"]["started"] == event_started(api, eventid)
    assert matching_rules(update) == ["update.yaml"]     # no remediation rule fires for an update


@pytest.mark.integration
def test_node_hook_remote_command_runs_handle_hook_on_the_agent(zabbix, monitored_host, st2):
    """`zabbix-setup --node-hook`: a new problem on a watched process makes Zabbix
    run `autoremedy handle hook process --target ar-dead --watch ar-dead` on the
    agent (a remote command); the hook re-runs the check there and forwards it."""
    from zabbix_stack import wait_for
    api = zabbix.api()
    daemon = subprocess.Popen([zabbix.token, "-c", "import time; time.sleep(600)"],   # argv[0]: --cmdline is anchored
                              executable=sys.executable)
    try:
        wait_for(lambda: history(api, monitored_host, "autoremedy.process.status[ar-dead]", 3) == "0", 60,
                 what="the watched process to be seen running")
        ran = setup_cmd("--via", "webhook", "--node-hook", "--autoremedy-bin", zabbix.bin,
                        env={"AUTOREMEDY_ZABBIX_PASSWORD": "zabbix"})
        assert ran.returncode == 0, ran
        lines = ran.stdout.splitlines()
        # The node side, then the check that the chosen path is wired (zabbix-setup
        # refuses to report success otherwise: autoremedy/zabbix_setup.py).
        assert lines[-3].startswith("script autoremedy node hook: "), lines
        assert lines[-2].startswith("action autoremedy node hook: "), lines
        assert lines[-1].startswith("global macro {$AR.ST2.URL}: verified ("), lines
        subprocess.run(["/usr/sbin/zabbix_server", "-c", zabbix.path("zabbix_server.conf"), "-R",
                        "config_cache_reload"], capture_output=True)
        time.sleep(6)
    finally:
        daemon.kill()
        daemon.wait()

    def from_hook():
        return [a["body"] for a in st2.accepted() if a["body"]["event"]["source"] == "hook"
                and a["body"]["event"]["labels"].get("autoremedy_target") == "ar-dead"]

    body = wait_for(from_hook, 120, 1, "the event `handle hook` forwarded from the agent")[0]
    event = body["event"]
    assert event["status"] == 2 and event["labels"]["autoremedy_class"] == "process"
    from st2_rules import matching_rules
    assert matching_rules(body) == ["process.yaml"]
    script = api.script.get(filter={"name": ["autoremedy node hook"]}, output=["command"])[0]
    assert script["command"].startswith(f"{zabbix.bin} handle hook {{EVENT.TAGS.autoremedy_class}} ")
