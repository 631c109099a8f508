"""Zabbix: the template and agent parameters, checked on their own and against a
real Zabbix 6.0 (server + agent + frontend API, started once per session:
conftest.py, zabbix_kit.py), with
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

from pkgenv import AUTOREMEDY, PACKAGING, need
from loopback import st2_double
from zabbix_kit import (ADMIN, ZABBIX, event_started, fake_daemon, history, host_with_template, settle_alerts,
                        reload_config_cache, setup_cmd, stop, updates_of, wire_alert_script)

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
    assert len(uuids) == len(set(uuids)) > 50
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


EXPR_ITEM = re.compile(r"\(/([^/]+)/([^,)]+)[,)]")      # last(/template/key) or nodata(/template/key,...)


def templates():
    return {t["template"]: t for t in load_template()["templates"]}


def triggers_of(body):
    """(trigger, its item or prototype, is a prototype) of one template."""
    for item in body.get("items", []):
        for trig in item.get("triggers", []):
            yield trig, item, False
    for rule in body.get("discovery_rules", []):
        for proto in rule["item_prototypes"]:
            for trig in proto.get("trigger_prototypes", []):
                yield trig, proto, True


def tags_of(node):
    return {t["tag"]: t["value"] for t in node.get("tags", [])}


def test_triggers_reference_items_of_their_own_template():
    export = load_template()
    for body in export["templates"]:
        name = body["template"]
        items = {i["key"] for i in body.get("items", [])}
        for rule in body.get("discovery_rules", []):
            protos = {p["key"] for p in rule["item_prototypes"]}
            for proto in rule["item_prototypes"]:
                if "master_item" in proto:
                    assert proto["master_item"]["key"] in protos | items
        for trig, item, _ in triggers_of(body):
            refs = EXPR_ITEM.findall(trig["expression"])
            assert refs and all(t == name for t, _ in refs), trig
            assert item["key"] in {k for _, k in refs}, trig
            assert trig["manual_close"] == "YES"
        for item in body.get("items", []):
            if "master_item" in item:
                assert item["master_item"]["key"] in items
    for trig in export["triggers"]:
        (template, key), = EXPR_ITEM.findall(trig["expression"])
        assert key in {i["key"] for i in templates()[template]["items"]}


def test_every_check_class_is_monitored(check_classes):
    covered = {t["value"] for n in walk(load_template()) for t in n.get("tags", [])
               if t.get("tag") == "autoremedy_class"}
    covered |= {"batch"}
    missing = set(check_classes) - covered
    assert not missing, f"classes without a Zabbix item: {missing}"
    expected = {"process", "disk", "rabbitmq-queues", "rabbitmq-node", "mysql-replication", "galera",
                "compute-node", "openstack-consistency", "spool"}
    assert expected <= covered


# --- the templates' structure (issue 19: Zabbix as an operator runs it) -------------------

def classes_in(body):
    return {t["value"] for n in walk(body) for t in n.get("tags", []) if t.get("tag") == "autoremedy_class"}


def test_one_template_per_role_and_the_node_template_holds_no_control_plane_check():
    found = templates()
    assert set(found) == {"autoremedy node", "autoremedy RabbitMQ", "autoremedy MySQL replication",
                          "autoremedy Galera", "autoremedy OpenStack consistency", "autoremedy compute-node failure"}
    assert classes_in(found["autoremedy node"]) == {"process", "disk", "spool", "{#AR.CLASS}"}
    assert classes_in(found["autoremedy RabbitMQ"]) == {"rabbitmq-node", "rabbitmq-queues"}
    assert classes_in(found["autoremedy MySQL replication"]) == {"mysql-replication"}
    assert classes_in(found["autoremedy Galera"]) == {"galera"}
    assert classes_in(found["autoremedy OpenStack consistency"]) == {"openstack-consistency"}
    assert classes_in(found["autoremedy compute-node failure"]) == {"compute-node"}
    # Linked to any node, the node template runs nothing on the server and
    # nothing that needs a role's macros.
    node = found["autoremedy node"]
    assert not [n for n in walk(node) if n.get("type") == "EXTERNAL"]
    assert "{$AR." not in " ".join(n["key"] for n in walk(node) if "key" in n).replace("{$AR.DISK.PUSED", "")
    # Every template carries the value map its items name.
    for body in found.values():
        assert [v["name"] for v in body["valuemaps"]] == ["autoremedy status"]


def test_no_placeholder_target_and_no_sample_role_macro():
    for body in templates().values():
        macros = {m["macro"]: m["value"] for m in body["macros"]}
        for node in walk(body):
            target = tags_of(node).get("autoremedy_target")
            if target is None:
                continue
            # An LLD macro (what discovery found) or a macro the operator sets on
            # the host (empty by default): never a literal.
            assert re.fullmatch(r"\{#[A-Z.]+\}|\{\$[A-Z.]+\}", target), (body["template"], node.get("name"))
            if target.startswith("{$"):
                assert macros[target] == "", (body["template"], target)
        for macro in ("{$AR.MYSQL.SERVER}", "{$AR.GALERA.SERVER}", "{$AR.GALERA.CLUSTER}"):
            assert macros.get(macro, "") == ""
    assert not hasattr(template_source, "TARGETS")


def test_every_trigger_has_class_and_target_or_a_documented_reason():
    docs = open(os.path.join(PACKAGING, "..", "docs", "handlers.md")).read()
    for body in templates().values():
        for trig, _, _ in triggers_of(body):
            tags = tags_of(trig)
            assert tags.get("autoremedy_class") and tags.get("autoremedy_status") in ("1", "2", "3"), trig
            if "autoremedy_target" in tags:
                assert tags["autoremedy_target"], trig
                continue
            if tags["autoremedy_class"] == "{#AR.CLASS}":
                continue        # the batch: its override (next test) adds the discovered target
            assert tags["autoremedy_class"] in template_source.NO_TARGET, trig
    for cls in template_source.NO_TARGET:
        assert f"`{cls}`" in docs.split("### One failure, one problem")[1], f"docs/handlers.md: no reason for {cls}"
    # The batch's silence: not a check's verdict, nothing to remediate.
    assert [t["name"] for t in load_template()["triggers"]] == [
        "autoremedy: no batch results from {HOST.NAME} for {$AR.NODATA}"]


def rule(template, key):
    return next(r for r in templates()[template]["discovery_rules"] if r["key"] == key)


def passes(rule_, macros, row):
    """The rule's LLD filter (AND of regex conditions) with ``macros`` resolved,
    as Zabbix evaluates it (https://www.zabbix.com/documentation/6.0/en/manual/discovery/low_level_discovery#filter)."""
    assert rule_["filter"]["evaltype"] == "AND"
    for cond in rule_["filter"]["conditions"]:
        found = re.search(macros.get(cond["value"], cond["value"]), row[cond["macro"]]) is not None
        if found != (cond.get("operator", "MATCHES_REGEX") == "MATCHES_REGEX"):
            return False
    return True


def test_batch_discovery_leaves_the_per_object_classes_out_and_tags_the_target():
    batch = rule("autoremedy node", "autoremedy.batch.discovery")
    macros = {m["macro"]: m["value"] for m in templates()["autoremedy node"]["macros"]}
    # A dead process, a full disk, a stuck spool: one problem each, from the
    # per-object rules; what else an operator adds to checks.batch stays.
    for cls in ("process", "disk", "spool"):
        assert not passes(batch, macros, {"{#AR.CLASS}": cls}), cls
    for cls in ("rabbitmq-node", "openstack-consistency", "galera"):
        assert passes(batch, macros, {"{#AR.CLASS}": cls}), cls
    assert {r["key"] for r in templates()["autoremedy node"]["discovery_rules"]} >= {
        "autoremedy.process.discovery", "autoremedy.disk.discovery"}
    (override,) = batch["overrides"]
    (cond,) = override["filter"]["conditions"]
    assert (cond["macro"], cond["value"]) == ("{#AR.TARGET}", ".+")
    (operation,) = override["operations"]
    assert operation["operationobject"] == "TRIGGER_PROTOTYPE" and operation["operator"] == "LIKE"
    protos = [t for p in batch["item_prototypes"] for t in p.get("trigger_prototypes", [])]
    assert protos and all(operation["value"] in t["name"] for t in protos)
    assert operation["tags"] == [{"tag": "autoremedy_target", "value": "{#AR.TARGET}"}]


def test_disk_discovery_filters_by_type_and_mount_point_like_zabbix_linux_template():
    disk = rule("autoremedy node", "autoremedy.disk.discovery")
    assert [(c["macro"], c["value"], c.get("operator", "MATCHES_REGEX")) for c in disk["filter"]["conditions"]] == [
        ("{#FSTYPE}", "{$AR.DISK.FSTYPE.MATCHES}", "MATCHES_REGEX"),
        ("{#FSTYPE}", "{$AR.DISK.FSTYPE.NOT_MATCHES}", "NOT_MATCHES_REGEX"),
        ("{#FSNAME}", "{$AR.DISK.FSNAME.MATCHES}", "MATCHES_REGEX"),
        ("{#FSNAME}", "{$AR.DISK.FSNAME.NOT_MATCHES}", "NOT_MATCHES_REGEX")]
    macros = {m["macro"]: m["value"] for m in templates()["autoremedy node"]["macros"]}
    rows = {"/": "ext4", "/var": "xfs", "/dev/shm": "tmpfs", "/run": "tmpfs", "/var/lib/nova/tmp": "tmpfs",
            "/proc": "proc"}

    def watched(overrides):
        return sorted(m for m, t in rows.items()
                      if passes(disk, dict(macros, **overrides), {"{#FSNAME}": m, "{#FSTYPE}": t}))
    assert watched({}) == ["/", "/var"]
    assert watched({"{$AR.DISK.FSTYPE.MATCHES}": "^(ext4|xfs|tmpfs)$"}) == ["/", "/var", "/var/lib/nova/tmp"]
    assert watched({"{$AR.DISK.FSTYPE.MATCHES}": "^(ext4|tmpfs)$",
                    "{$AR.DISK.FSNAME.MATCHES}": "^(/|/var/lib/nova/tmp)$"}) == ["/", "/var/lib/nova/tmp"]
    # The discovery lists every mount and lets the filter choose.
    assert "check disk --discover --all" in user_parameters()["autoremedy.disk.discovery"]


def test_rabbitmq_queues_select_the_same_queues_as_the_docs_and_sensu():
    sys.path.insert(0, os.path.join(PACKAGING, "sensu"))
    import definitions
    (sensu,) = [d[2] for d in definitions.CHECKS if d[1] == "rabbitmq-queues"]
    rabbit = templates()["autoremedy RabbitMQ"]
    (item,) = [i for i in rabbit["items"] if i["key"].startswith("autoremedy_check[rabbitmq-queues")]
    args = item["key"][len("autoremedy_check[rabbitmq-queues,"):-1].split(",")
    assert args == sensu.split() == ["--exclude", "^amq\\.", "--rpc-grace", "1m"]
    docs = open(os.path.join(PACKAGING, "..", "docs", "rabbitmq.md")).read()
    assert f"check rabbitmq-queues {sensu} --format zabbix" in docs
    # The queue discovery selects as the check does.
    (queues,) = rabbit["discovery_rules"]
    assert queues["key"] == "autoremedy_check[rabbitmq-queues,--discover," + ",".join(args) + "]"


def test_compute_node_problems_name_the_dead_compute():
    compute = templates()["autoremedy compute-node failure"]
    (lld,) = compute["discovery_rules"]
    assert lld["key"] == "autoremedy_check[compute-node,--discover]"
    (proto,) = [t for p in lld["item_prototypes"] for t in p.get("trigger_prototypes", [])]
    assert tags_of(proto)["autoremedy_target"] == "{#OS.COMPUTE}"
    # The check's own CRITICAL is a problem only when no compute is dead (each
    # dead one raised its own): one failure, one problem.
    crit = next(t for t, _, _ in triggers_of(compute) if tags_of(t)["autoremedy_status"] == "2"
                and tags_of(t).get("autoremedy_target") is None)
    assert "autoremedy.compute.dead)=0" in crit["expression"]
    from autoremedy.checks import compute_node
    assert set(template_source.DEAD_VERDICTS) == {compute_node.DEAD, compute_node.UNREACHABLE_ON}


def test_compute_verdict_preprocessing_runs_in_zabbixs_javascript_engine(tmp_path):
    """The verdict item's steps as the server runs them: JSONPath $.data.hosts (no
    hosts: the value is discarded), then the JavaScript step, run by zabbix_js
    (the server's Duktape engine, https://www.zabbix.com/documentation/6.0/en/manual/config/items/preprocessing/javascript)."""
    compute = templates()["autoremedy compute-node failure"]
    (proto,) = compute["discovery_rules"][0]["item_prototypes"]
    jsonpath, javascript = proto["preprocessing"]
    assert (jsonpath["type"], jsonpath["parameters"], jsonpath["error_handler"]) == (
        "JSONPATH", ["$.data.hosts"], "DISCARD_VALUE")
    script = tmp_path / "verdict.js"
    script.write_text(javascript["parameters"][0].replace("{#OS.COMPUTE}", "cmp3"))
    hosts = [{"host": "cmp3", "verdict": "dead"}, {"host": "cmp7", "verdict": "service-down-host-alive"}]

    def run(value):
        return subprocess.run([need("zabbix_js"), "-s", str(script), "-p", json.dumps(value)],
                              capture_output=True, text=True, check=True).stdout.strip()
    assert run(hosts) == "dead"
    assert run(hosts[1:]) == "up"           # no longer listed: only computes that are not up are


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


# --- against a real Zabbix (the session's stack: conftest.py, zabbix_kit.py) -------------

@pytest.mark.integration
def test_installer_imports_and_updates_in_place(zabbix, st2):
    node = wire_alert_script(zabbix, st2.url)
    first = setup_cmd(*node, env=ADMIN)
    assert first.returncode == 0, first
    api = zabbix.api()
    action = api.action.get(filter={"name": ["autoremedy to StackStorm"]}, output=["actionid"])
    media = api.mediatype.get(filter={"name": ["autoremedy (alert script)", "autoremedy (StackStorm webhook)"]},
                              output=["mediatypeid", "name", "exec_params", "type"])
    assert len(action) == 1 and len(media) == 2
    second = setup_cmd(*node, env=ADMIN)
    assert second.returncode == 0, second
    lines = second.stdout.splitlines()
    names = [t["template"] for t in load_template()["templates"]]
    assert lines[:len(names)] == [f"template {name}: imported" for name in names]
    # A database that had the all-in-one template of earlier versions says so.
    rest = [line for line in lines[len(names):-1] if not line.startswith("template autoremedy: the all-in-one")]
    assert all(line.endswith("updated") or "updated (media" in line for line in rest), lines
    # The action sends the problems of every role's template.
    ids = {t["templateid"] for t in api.template.get(filter={"host": names}, output=["templateid"])}
    got = api.action.get(actionids=action[0]["actionid"], selectFilter="extend")[0]["filter"]["conditions"]
    assert {c["value"] for c in got if c["conditiontype"] == "13"} == ids
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
    # Every mount with its type (pseudo ones too): the template's filter macros choose.
    disks = {row["{#FSNAME}"]: row["{#FSTYPE}"] for row in json.loads(zabbix_get("autoremedy.disk.discovery"))}
    assert disks["/"] and disks.get("/proc") == "proc", disks


@pytest.fixture(scope="module")
def monitored_host(zabbix, st2, tmp_path_factory):
    keyfile = tmp_path_factory.mktemp("keys") / "st2.key"
    keyfile.write_text("ci-api-key\n")
    ran = setup_cmd("--via", "webhook", "--st2-url", st2.url, "--st2-api-key-file", str(keyfile),
                    env=ADMIN)
    assert ran.returncode == 0, ran
    api = zabbix.api()
    hostid = host_with_template(api, {"{$AR.INTERVAL}": "5s", "{$AR.LLD.INTERVAL}": "10s"})
    reload_config_cache(zabbix)
    yield hostid
    # Gone with this module: its checks (some say "cannot be checked" here) must not
    # keep raising problems whose alerts reach the next module's StackStorm double.
    zabbix.api().host.delete(hostid)
    reload_config_cache(zabbix)
    settle_alerts(zabbix.api())


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

    daemon = fake_daemon(zabbix.token)
    try:
        # This problem's recovery: another trigger on the same item (e.g. "cannot be
        # checked" while a check timed out on a loaded machine) may resolve first.
        recovered = wait_for(lambda: [e for e in problem_bodies(0) if e["id"].startswith(f"zabbix-{eventid}-r")],
                             120, 1, "the recovery at the StackStorm double")[0]
        assert recovered["action"] == "resolve"
    finally:
        stop(daemon)


@pytest.mark.integration
def test_alert_script_media_type_delivers_through_the_handler(zabbix, monitored_host, st2):
    """The spooled path: problem -> action -> alert-script media type ->
    `autoremedy handle zabbix` (as the zabbix user, from the asset) -> StackStorm,
    in a body the pack's process rule matches."""
    from zabbix_stack import wait_for
    api = zabbix.api()
    node = wire_alert_script(zabbix, st2.url)

    daemon = fake_daemon(zabbix.token)
    try:
        wait_for(lambda: history(api, monitored_host, "autoremedy.process.status[ar-dead]", 3) == "0", 60,
                 what="the watched process to be seen running")
        ran = setup_cmd("--via", "script", *node, env=ADMIN)
        assert ran.returncode == 0, ran
        reload_config_cache(zabbix)
        time.sleep(6)                     # CacheUpdateFrequency: the action now uses the script media
    finally:
        stop(daemon)

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
    daemon = fake_daemon(zabbix.token)
    try:
        wait_for(lambda: history(api, monitored_host, "autoremedy.process.status[ar-dead]", 3) == "0", 60,
                 what="the watched process to be seen running")
        ran = setup_cmd("--via", "webhook", "--node-hook", "--autoremedy-bin", zabbix.bin,
                        env=ADMIN)
        assert ran.returncode == 0, ran
        lines = ran.stdout.splitlines()
        # The node side, then the check that the chosen path is wired (zabbix-setup
        # refuses to report success otherwise: autoremedy/zabbix_setup.py).
        assert lines[-3].startswith("script autoremedy node hook: "), lines
        assert lines[-2].startswith("action autoremedy node hook: "), lines
        assert lines[-1].startswith("global macro {$AR.ST2.URL}: verified ("), lines
        reload_config_cache(zabbix)
        time.sleep(6)
    finally:
        stop(daemon)

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


# --- the templates by role on the real server (issue 19) ---------------------------------
# Last in the module: the batch test below changes the host's macros and raises
# problems of its own, which no earlier test must see.

CONTROL_PLANE = {"rabbitmq-node", "rabbitmq-queues", "mysql-replication", "galera", "openstack-consistency",
                 "compute-node"}


@pytest.mark.integration
def test_node_template_alone_raises_no_control_plane_problem(zabbix, monitored_host):
    """An operator links "autoremedy node" to a compute node: its checks run, and
    no RabbitMQ / MySQL / Galera / OpenStack check is there to say "cannot be
    checked". The batch leaves the process, disk and spool checks to the
    per-object rules: the host has no batch item for them (one failure, one problem)."""
    from zabbix_stack import wait_for
    api = zabbix.api()
    wait_for(lambda: history(api, monitored_host, "autoremedy.status[spool]", 3) is not None, 90,
             what="the node's spool status")
    wait_for(lambda: history(api, monitored_host, "autoremedy.process.status[ar-dead]", 3) is not None, 90,
             what="the watched process discovered and checked")
    # What the templates put there (not the item an earlier test created by hand).
    # (inherited: templateid set; discovered by a template's rule: flags 4).
    items = [i for i in api.item.get(hostids=monitored_host, output=["key_", "templateid", "flags"],
                                     selectTags="extend") if i["templateid"] != "0" or i["flags"] == "4"]
    assert items
    classes = {t["value"] for i in items for t in i["tags"] if t["tag"] == "autoremedy_class"}
    assert classes == {"process", "disk", "spool"}, classes
    assert not [i for i in items if i["key_"].startswith(("autoremedy_check[", "autoremedy.batch.status["))], items
    rules = api.discoveryrule.get(hostids=monitored_host, output=["key_", "state", "error"])
    assert {r["key_"] for r in rules} == {"autoremedy.batch.discovery", "autoremedy.process.discovery",
                                         "autoremedy.disk.discovery"}
    problems = api.problem.get(hostids=monitored_host, output=["name"], selectTags="extend")
    assert not [p for p in problems if {t["value"] for t in p["tags"] if t["tag"] == "autoremedy_class"}
                & CONTROL_PLANE], problems
    assert not [p for p in problems if "cannot be checked" in p["name"]], problems


@pytest.mark.integration
def test_macros_include_a_tmpfs_mount_and_the_batch_tags_its_targets(zabbix, monitored_host, request):
    """The operator's macros on the host: a tmpfs mount point is watched
    ({$AR.DISK.FSTYPE.MATCHES} / {$AR.DISK.FSNAME.*}), and with the batch told to
    cover processes and disks too, its triggers carry the target the batch
    discovery found (the override) and none where there is no single one."""
    from zabbix_stack import wait_for
    api = zabbix.api()
    point = zabbix.path("watched-tmpfs")
    os.makedirs(point, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", point], check=True)
    request.addfinalizer(lambda: subprocess.run(["umount", "-l", point], check=False))
    found = api.host.get(hostids=monitored_host, selectMacros=["macro", "value"], output=["hostid"])[0]
    macros = {m["macro"]: m["value"] for m in found["macros"]}
    # tmpfs as a watched type, and of the mounts only / and this one.
    macros.update({"{$AR.DISK.FSTYPE.MATCHES}": "^(ext4|xfs|tmpfs)$",
                   "{$AR.DISK.FSNAME.MATCHES}": f"^(/|{re.escape(point)})$",
                   "{$AR.BATCH.CLASS.NOT_MATCHES}": "^spool$"})
    api.host.update(hostid=monitored_host, macros=[{"macro": k, "value": v} for k, v in macros.items()])
    reload_config_cache(zabbix)

    def keys(prefix):
        return {i["key_"] for i in api.item.get(hostids=monitored_host, output=["key_"],
                                                search={"key_": prefix}, startSearch=True)}
    mine = f"autoremedy.disk.pused[{point}]"
    wait_for(lambda: mine in keys("autoremedy.disk.pused["), 120, 1, f"the tmpfs mount {point} discovered")
    assert keys("autoremedy.disk.pused[") == {"autoremedy.disk.pused[/]", mine}
    wait_for(lambda: history(api, monitored_host, mine, 0) is not None, 60, what=f"a value for {point}")

    def batch_triggers():
        return api.trigger.get(hostids=monitored_host, search={"description": "autoremedy "},
                               output=["description"], selectTags="extend", selectItems=["key_"])
    wait_for(lambda: {"autoremedy.batch.status[ar-dead]", "autoremedy.batch.status[disk]"} <= {
        i["key_"] for t in batch_triggers() for i in t["items"]}, 120, 1, "the batch's process and disk triggers")
    by_key = {}
    for trig in batch_triggers():
        for item in trig["items"]:
            if item["key_"].startswith("autoremedy.batch.status["):
                by_key.setdefault(item["key_"], []).append({t["tag"]: t["value"] for t in trig["tags"]})
    for tags in by_key["autoremedy.batch.status[ar-dead]"]:
        assert (tags["autoremedy_class"], tags.get("autoremedy_target")) == ("process", "ar-dead"), tags
    # The batch's disk check covers every mount: no single target, no tag (never "").
    for tags in by_key["autoremedy.batch.status[disk]"]:
        assert tags["autoremedy_class"] == "disk" and "autoremedy_target" not in tags, tags
