"""The StackStorm pack: every file parses, rules and workflows point at actions
that exist, parameters are validated before any command line is built, and the
events our forwarders post match the rules they are meant to."""
import glob
import json
import os
import re
import subprocess
import sys
import types

import pytest
import yaml

from pkgenv import PACKAGING, need
from loopback import Receiver, st2_double
from st2_rules import matching_rules

PACK = os.path.join(PACKAGING, "stackstorm", "autoremedy")
ACTIONS = os.path.join(PACK, "actions")
# StackStorm's core pack actions the workflows may use.
CORE = {"core.noop", "core.pause", "core.ask", "core.local", "core.remote", "core.echo", "core.http"}
RUNNERS = {"remote-shell-cmd", "local-shell-cmd", "python-script", "orquesta"}
OPERATORS = {"equals", "eq", "nequals", "iequals", "contains", "icontains", "ncontains", "startswith", "endswith",
             "matchwildcard", "matchregex", "regex", "iregex", "lt", "gt", "exists", "nexists", "inside", "in",
             "ninside", "nin", "search"}
ENGINE_COMMANDS = {"fail", "noop", "continue"}


def load(path):
    with open(path) as handle:
        return yaml.safe_load(handle)


def rules():
    return {os.path.basename(p): load(p) for p in sorted(glob.glob(os.path.join(PACK, "rules", "*.yaml")))}


def actions():
    return {load(p)["name"]: (p, load(p)) for p in sorted(glob.glob(os.path.join(ACTIONS, "*.yaml")))}


def workflows():
    return {os.path.basename(p): load(p) for p in sorted(glob.glob(os.path.join(ACTIONS, "workflows", "*.yaml")))}


def test_every_yaml_parses_and_pack_metadata_is_complete():
    files = glob.glob(os.path.join(PACK, "**", "*.yaml"), recursive=True)
    assert len(files) > 20
    for path in files:
        assert load(path) is not None, path
    pack = load(os.path.join(PACK, "pack.yaml"))
    for key in ("name", "description", "version", "author"):
        assert pack[key], key
    assert re.fullmatch(r"[a-z0-9_]+", pack["name"]) and pack["ref"] == "autoremedy"
    assert re.fullmatch(r"\d+\.\d+\.\d+", pack["version"])
    from autoremedy import __version__
    assert pack["version"] == __version__


def test_rules_are_complete_enabled_and_listen_on_the_handlers_webhook():
    from autoremedy.config import DEFAULTS
    webhook = DEFAULTS["stackstorm"]["webhook"]
    known = actions()
    for name, rule in rules().items():
        assert rule["name"] == name[:-5] and rule["pack"] == "autoremedy"
        assert rule["enabled"] is True, f"{name}: a rule without enabled: true never fires"
        assert rule["trigger"]["type"] == "core.st2.webhook"
        assert rule["trigger"]["parameters"]["url"] == webhook
        pack_name, action_name = rule["action"]["ref"].split(".", 1)
        assert pack_name == "autoremedy" and action_name in known, rule["action"]["ref"]
        params = known[action_name][1].get("parameters", {})
        given = rule["action"].get("parameters", {})
        assert set(given) <= set(params), (name, set(given) - set(params))
        for pname, spec in params.items():
            if spec.get("required") and "default" not in spec:
                assert pname in given, (name, pname)
        for key, criterion in rule.get("criteria", {}).items():
            assert key.startswith("trigger.body.") and criterion["type"] in OPERATORS, (name, key)


def test_every_failure_class_with_a_remediation_has_a_rule():
    key = "trigger.body.event.labels.autoremedy_class"
    classes = {r["criteria"][key]["pattern"] for r in rules().values()
               if r.get("criteria", {}).get(key, {}).get("type") == "equals"}
    # The rules are generated from the classes' manifests (packaging/tools/pack_rules.py):
    # every class that declares a remediation has one, and no other class.
    from autoremedy.contract.registry import manifests
    assert classes == {name for name, m in manifests().items() if m.get("remediation")}
    assert {"process", "disk", "compute-node"} <= classes
    unhandled = rules()["unhandled.yaml"]["criteria"][key]
    assert unhandled["type"] == "ninside" and set(unhandled["pattern"]) == classes


def test_actions_metadata_and_entry_points():
    schema = load(os.path.join(PACK, "config.schema.yaml"))
    for name, (path, meta) in actions().items():
        assert os.path.basename(path) == f"{name}.yaml" and meta["pack"] == "autoremedy"
        assert meta["runner_type"] in RUNNERS and meta["enabled"] is True
        if meta["runner_type"] in ("python-script", "orquesta"):
            assert os.path.isfile(os.path.join(ACTIONS, meta["entry_point"])), meta["entry_point"]
        if meta["runner_type"].endswith("shell-cmd"):
            cmd = meta["parameters"]["cmd"]
            assert cmd["immutable"] is True, f"{name}: the command must not be overridable"
        for pname, spec in meta.get("parameters", {}).items():
            assert "type" in spec, (name, pname)
            for ref in re.findall(r"config_context\.(\w+)", str(spec.get("default", ""))):
                assert ref in schema, (name, ref)
    for key, spec in schema.items():
        assert spec["type"] and "description" in spec, key
    assert schema["zabbix_password"]["secret"] is True


def test_workflows_reference_existing_actions_and_tasks():
    known = actions()
    seen = set()
    for name, flow in workflows().items():
        assert str(flow["version"]) == "1.0"
        meta = next(m for _, (p, m) in known.items() if m.get("entry_point") == f"workflows/{name}")
        assert set(flow["input"]) == set(meta["parameters"]), name
        tasks = flow["tasks"]
        reachable = {next(iter(tasks))}
        for tname, task in tasks.items():
            ref = task["action"].split()[0]
            if ref.startswith("autoremedy."):
                target = ref.split(".", 1)[1]
                assert target in known, (name, tname, ref)
                params = known[target][1].get("parameters", {})
                given = set((task.get("input") or {}).keys())
                assert given <= set(params), (name, tname, given - set(params))
                for pname, spec in params.items():
                    if spec.get("required") and "default" not in spec:
                        assert pname in given, (name, tname, pname)
            else:
                assert ref in CORE, (name, tname, ref)
            seen.add(ref)
            for branch in task.get("next", []):
                for target in [branch["do"]] if isinstance(branch["do"], str) else branch["do"]:
                    assert target in tasks or target in ENGINE_COMMANDS, (name, tname, target)
                    reachable.add(target)
        assert set(tasks) <= reachable, (name, set(tasks) - reachable)
    assert {"autoremedy.remediate_on_node", "autoremedy.remediate_local", "autoremedy.check_on_node",
            "autoremedy.notify", "autoremedy.escalate", "autoremedy.collect_on_node", "core.ask"} <= seen


@pytest.mark.parametrize("param, good, bad", [
    ("target", ["nova-compute", "/var", "rabbit@ctl-1", "/:notifications.info", "compute-017.example.net"],
     ["nova;reboot", "$(id)", "`id`", "a b", "-x", "--config=/tmp/x", "x|y", "x&y", "x\ny", "'x'"]),
    ("event_id", ["zabbix-123", "9c2e8f0a-1d4b-4c1a-9b8e-7f1e2d3c4b5a"], ["x y", "$(id)", "a;b", "-rf"]),
    ("hosts", ["compute-017", "10.0.0.5", "node.example.net"], ["a b", "a;b", "-oProxyCommand=x", "$(id)"]),
    ("cls", ["process", "rabbitmq-queues"], ["Process", "x;y", "-x", "a b"]),
])
def test_parameter_patterns_keep_event_text_out_of_the_shell(param, good, bad):
    for name in ("remediate_on_node", "remediate_local"):
        spec = actions()[name][1]["parameters"].get(param)
        if spec is None:
            continue
        pattern = re.compile(spec["pattern"])
        for value in good:
            assert pattern.search(value), (name, param, value)
        for value in bad:
            assert not pattern.search(value), (name, param, value)


def test_shell_commands_call_the_sudo_gate_with_exactly_the_validated_parameters():
    for name in ("remediate_on_node", "remediate_local"):
        cmd = actions()[name][1]["parameters"]["cmd"]["default"]
        assert cmd.startswith("{{ config_context.gate }} {{ cls }} {{ target }} {{ event_id }}")
        assert set(re.findall(r"\{\{\s*(\w+)", cmd)) == {"config_context", "cls", "target", "event_id"}
    assert load(os.path.join(PACK, "config.schema.yaml"))["gate"]["default"] == "/usr/libexec/autoremedy/remediate"


# --- an event from our forwarders meets the rules ------------------------------------------

def test_zabbix_webhook_event_matches_exactly_its_class_rule():
    with st2_double("k") as st2:
        params = {"URL": st2.url, "Webhook": "autoremedy", "ApiKey": "k", "EventID": "9", "EventValue": "1",
                  "Host": "compute-1", "TriggerName": "Disk /var is CRITICAL", "ItemValue": "2",
                  "EventTags": json.dumps([{"tag": "autoremedy_class", "value": "disk"},
                                           {"tag": "autoremedy_target", "value": "/var"},
                                           {"tag": "autoremedy_status", "value": "2"}])}
        out = subprocess.run([need("zabbix_js"), "-s", os.path.join(PACKAGING, "zabbix", "st2_webhook.js"),
                              "-p", json.dumps(params)], capture_output=True, text=True)
        assert out.stdout.strip() == "OK", out
        params.update(EventValue="0", RecoveryEventID="10")
        subprocess.run([need("zabbix_js"), "-s", os.path.join(PACKAGING, "zabbix", "st2_webhook.js"),
                        "-p", json.dumps(params)], capture_output=True, text=True, check=True)
    problem, recovery = (a["body"] for a in st2.accepted())
    assert matching_rules(problem) == ["disk.yaml"]
    assert matching_rules(recovery) == ["resolved.yaml"]

    def variant(status=None, **labels):
        event = dict(problem["event"], labels=dict(problem["event"]["labels"], **labels))
        if status is not None:
            event["status"] = status
        return dict(problem, event=event)
    assert matching_rules(variant(autoremedy_class="spool")) == ["unhandled.yaml"]
    assert matching_rules(variant(status=3)) == ["cannot_check.yaml"]
    # A Zabbix "cannot be checked" trigger arrives as a low-severity problem.
    assert matching_rules(variant(status=1, autoremedy_status="3")) == ["cannot_check_tagged.yaml"]
    assert matching_rules(variant(autoremedy_class="process", autoremedy_target="nova-compute")) == ["process.yaml"]


def test_an_update_of_a_problem_matches_only_the_update_rule():
    """A Zabbix acknowledgement (the action's update operations) reaches StackStorm
    with the problem's status and labels: no remediation rule may fire for it,
    on either media type; update.yaml tells the channel."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "handlers"))
    from test_zabbix_same_body import values
    from autoremedy.pipeline.stackstorm import document
    from autoremedy.pipeline.sources.zabbix import from_zabbix
    bodies = {}
    for kind in ("problem", "update", "recovery"):
        v = values(kind)
        event = from_zabbix(v["ALERT.SENDTO"], v["ALERT.SUBJECT"], v["ALERT.MESSAGE"])
        bodies[kind] = document({}, event.to_dict(), event.raw, "zbx")
    assert matching_rules(bodies["problem"]) == ["process.yaml"]
    assert matching_rules(bodies["update"]) == ["update.yaml"]
    assert matching_rules(bodies["recovery"]) == ["resolved.yaml"]
    closed = json.loads(json.dumps(bodies["update"]))
    closed["event"].update(status=0, state="OK")           # an update of a closed problem
    assert matching_rules(closed) == ["update.yaml"]


# --- the Python actions, through a stand-in for StackStorm's Action base class --------------

@pytest.fixture
def action_class(monkeypatch):
    """Load actions/<name>.py the way st2's python runner does (actions/ on
    sys.path), with st2common's Action replaced by a minimal stand-in."""
    base = types.ModuleType("st2common.runners.base_action")

    class Action:
        def __init__(self, config=None):
            import logging
            self.config = config or {}
            self.logger = logging.getLogger("autoremedy-pack-test")
    base.Action = Action
    for name in ("st2common", "st2common.runners"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "st2common.runners.base_action", base)
    monkeypatch.syspath_prepend(ACTIONS)
    for name in [m for m in sys.modules if m == "lib" or m.startswith("lib.")]:
        monkeypatch.delitem(sys.modules, name)

    def get(module, cls, config):
        import importlib.util
        spec = importlib.util.spec_from_file_location(f"pack_action_{module}", os.path.join(ACTIONS, f"{module}.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return getattr(mod, cls)(config)
    return get


def test_notify_posts_to_the_chat_webhook(action_class):
    with Receiver() as chat:
        ok, out = action_class("notify", "Notify", {"notify_url": chat.url}).run(
            "remediated and verified", {"check": "autoremedy-process-nova-compute", "host": "c-1", "id": "e-1",
                                        "labels": {"autoremedy_class": "process", "autoremedy_target": "nova-compute"}})
    assert ok and out["sent"]
    assert chat.bodies() == [{"text": "[autoremedy] remediated and verified - process nova-compute on c-1 (event e-1)"}]


def test_escalate_reaches_a_human_or_fails_loudly(action_class):
    event = {"check": "disk", "host": "c-2", "id": "e-2", "status": 2,
             "labels": {"autoremedy_class": "disk", "autoremedy_target": "/var"}}
    with Receiver() as pager:
        ok, out = action_class("escalate", "Escalate", {"escalation_url": pager.url}).run(
            "verification failed", event, {"check": "DISK CRITICAL"})
    assert ok and out["sent_to"] == ["escalation_url"]
    body = pager.bodies()[0]
    assert body["dedup_key"] == "e-2" and body["severity"] == "critical" and body["evidence"] == {"check": "DISK CRITICAL"}
    ok, out = action_class("escalate", "Escalate", {}).run("x", event)
    assert not ok and "no escalation_url" in out["error"]


def test_notify_surfaces_a_failing_webhook(action_class):
    from lib.notify import NotifyError
    with pytest.raises(NotifyError, match="ConnectionError"):
        action_class("notify", "Notify", {"notify_url": "http://127.0.0.1:9/hook"}).run("m", {})
