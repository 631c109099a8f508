"""From the body a handler really posts to the workflow StackStorm starts.

The handlers run as installed (``autoremedy handle sensu|zabbix``) on upstream
payloads (tests/fixtures: Sensu Go 6.14 and Sensu Core 1.8 documentation
events, Zabbix alert-script messages) and post to the StackStorm double; the
accepted body is then given to StackStorm's rules engine semantics
(rules_engine.py, in the orquesta venv): criteria with st2's operators, the
action parameters rendered with Jinja2 StrictUndefined and cast to the action's
parameter types. Exactly one rule must fire for an actionable body, ``resolved``
for a recovery; the cast parameters are then conducted into the workflow.
"""
import copy
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from st2kit import ask, local, remote, script

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
FIXTURES = os.path.join(TESTS, "fixtures")
AUTOREMEDY = os.path.join(os.path.dirname(sys.executable), "autoremedy")
API_KEY = "rule-chain-key"


def _double_module():
    spec = importlib.util.spec_from_file_location("st2_double", os.path.join(TESTS, "doubles", "st2.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def post(tmp_path_factory):
    """post(kind, payload_or_argv) -> the body StackStorm received."""
    double = _double_module().St2Double(api_key=API_KEY).start()
    state = tmp_path_factory.mktemp("state")
    (state / "autoremedy.yaml").write_text(f"state_dir: {state}\nmaintenance_file: {state}/maint\n")

    def run(kind, payload):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOREMEDY_")}
        env.update(AUTOREMEDY_ST2_URL=double.url, AUTOREMEDY_ST2_API_KEY=API_KEY,
                   AUTOREMEDY_STATE_DIR=str(state), AUTOREMEDY_CONFIG=str(state / "autoremedy.yaml"))
        before = len(double.accepted())
        if kind == "sensu":
            proc = subprocess.run([AUTOREMEDY, "handle", "sensu"], input=json.dumps(payload),
                                  capture_output=True, text=True, env=env, timeout=60)
        else:
            proc = subprocess.run([AUTOREMEDY, "handle", "zabbix", *payload], capture_output=True,
                                  text=True, env=env, timeout=60)
        accepted = double.accepted()[before:]
        assert proc.returncode == 0 and len(accepted) == 1, (proc.returncode, proc.stderr)
        return accepted[0]["body"]
    yield run
    double.stop()


def fixture(*parts):
    with open(os.path.join(FIXTURES, *parts), encoding="utf-8") as handle:
        return handle.read()


def sensu_go(status=None, **labels):
    event = json.loads(fixture("sensu", "sensu-go-event.json"))
    if status is not None:
        event["check"]["status"] = status
        event["check"]["output"] = "PROCESS CRITICAL: 0 processes"
    if labels:
        event["check"]["metadata"]["labels"] = labels
    return event


def sensu_classic(**attributes):
    event = json.loads(fixture("sensu", "sensu-classic-event.json"))
    event["check"].update(attributes)
    return event


def zabbix_alert(value="1", **tags):
    message = json.loads(fixture("zabbix", "action-message.txt"))
    message["value"] = value
    if value == "0":
        message["status"] = "RESOLVED"
        message["recovery_event_id"] = "4712"
    if tags:
        message["tags"] = [{"tag": k, "value": v} for k, v in tags.items()]
    return ["st2", f"{message['status']}: {message['trigger']}", json.dumps(message)]


def the_one(enforced):
    assert len(enforced) == 1, [e["rule"] for e in enforced]
    entry = enforced[0]
    assert "error" not in entry, entry["error"]
    return entry


# -- which rule fires -------------------------------------------------------------------------

def test_a_sensu_go_process_failure_starts_the_remediate_workflow_with_cast_parameters(engine, post):
    body = post("sensu", sensu_go(2, autoremedy_class="process", autoremedy_target="nova-compute"))
    entry = the_one(engine.enforce(body))
    assert (entry["rule"], entry["action"]) == ("process", "autoremedy.remediate")
    params = entry["params"]
    assert params["event"] == body["event"]                  # object, through the Python literal
    assert params["remediated_locally"] is False             # boolean, "False" capitalised
    assert params["verify_delay"] == 30                      # integer, from config_context
    assert (params["cls"], params["host"], params["target"], params["scope"]) == (
        "process", body["event"]["host"], "nova-compute", "node")
    trace = engine.conduct("remediate.yaml", params, {
        "remediate_node": [remote(params["host"], "process nova-compute: remediated: verified OK")],
        "wait": [script(None)], "verify_node": [remote(params["host"], '{"status": "OK"}')],
        "notify_done": [script({"sent": False})]})
    assert trace["status"] == "succeeded", trace
    node_call = trace["executed"][1]["input"]
    command = engine.command("autoremedy.remediate_on_node", dict(node_call, dry_run=True))
    assert command == (f"/usr/libexec/autoremedy/remediate process nova-compute "
                       f"{body['event']['id']} --dry-run")


def test_a_sensu_classic_keepalive_with_no_class_is_collected_and_escalated(engine, post):
    body = post("sensu", sensu_classic())
    assert body["event"]["status"] == 2
    entry = the_one(engine.enforce(body))
    assert (entry["rule"], entry["action"]) == ("unhandled", "autoremedy.collect_and_draw")
    assert entry["params"]["host"] == body["event"]["host"]
    event = entry["params"]["event"]
    trace = engine.conduct("collect_and_draw.yaml", entry["params"], {
        "collect": [remote(entry["params"]["host"], '{"effort": "small"}')],
        "escalate": [script({"sent_to": ["notify_url"]})]})
    assert trace["status"] == "succeeded", trace
    collect_input = trace["executed"][0]["input"]
    assert collect_input["at"] == str(event.get("timestamp", 0))
    command = engine.command("autoremedy.collect_on_node", dict(collect_input, window="15m",
                                                                ids=["nova-compute", "cmp-3"]))
    assert command == (f"/usr/bin/autoremedy collect --at {collect_input['at']} --window 15m "
                       "--id=nova-compute --id=cmp-3 --json")


def test_a_sensu_classic_disk_check_reaches_the_disk_rule(engine, post):
    body = post("sensu", sensu_classic(name="autoremedy-disk-var", autoremedy_class="disk",
                                       autoremedy_target="/var", output="DISK CRITICAL"))
    entry = the_one(engine.enforce(body))
    assert entry["rule"] == "disk" and entry["params"]["check_args"] == "-p /var"


def test_a_zabbix_alert_reaches_its_class_rule_and_its_recovery_the_resolved_rule(engine, post):
    problem = post("zabbix", zabbix_alert())
    entry = the_one(engine.enforce(problem))
    assert entry["rule"] == "process" and entry["params"]["target"] == "nova-compute"
    trace = engine.conduct("remediate.yaml", entry["params"], {
        "remediate_node": [remote("cmp-07", "process nova-compute: remediated: verified OK")],
        "wait": [script(None)], "verify_node": [remote("cmp-07", '{"status": "OK"}')],
        "notify_done": [script({"sent": False})], "ack_zabbix": [script({"eventids": ["4711"]})]})
    assert trace["status"] == "succeeded", trace
    assert trace["executed"][-1]["input"]["eventid"] == "4711"      # the problem's own id
    recovery = post("zabbix", zabbix_alert(value="0"))
    assert [e["rule"] for e in engine.enforce(recovery)] == ["resolved"]


def test_a_compute_node_failure_asks_a_human_by_default(engine, post):
    body = post("sensu", sensu_go(2, autoremedy_class="compute-node", autoremedy_target="cmp-3"))
    entry = the_one(engine.enforce(body))
    assert entry["action"] == "autoremedy.evacuate_host"
    assert entry["params"]["approve"] is True and entry["params"]["host"] == "cmp-3"
    trace = engine.conduct("evacuate_host.yaml", entry["params"], {
        "plan": [local("compute-node cmp-3: dry-run: would run the plan")],
        "notify_plan": [script({"sent": False})], "approval": [ask({"approved": True})],
        "evacuate": [local("compute-node cmp-3: remediated: verified OK")],
        "notify_done": [script({"sent": False})]})
    assert trace["status"] == "succeeded" and trace["paused"] == ["paused"], trace


def test_an_unknown_check_result_notifies_and_remediates_nothing(engine, post):
    body = post("sensu", sensu_go(3, autoremedy_class="process", autoremedy_target="nova-compute"))
    assert [e["rule"] for e in engine.enforce(body)] == ["cannot_check"]
    assert "error" not in engine.enforce(body)[0]


def test_a_recovery_fires_only_the_resolved_rule(engine, post):
    body = post("sensu", sensu_go(0, autoremedy_class="process", autoremedy_target="nova-compute"))
    assert [e["rule"] for e in engine.enforce(body)] == ["resolved"]


def test_a_known_class_without_a_target_label_is_escalated_not_a_failed_enforcement(engine, post):
    """A rule that renders a label the body lacks fails its enforcement under
    StrictUndefined: StackStorm logs it and nothing happens. Such a body goes to
    the untargeted rule, which escalates."""
    body = post("sensu", sensu_go(2, autoremedy_class="disk"))
    entry = the_one(engine.enforce(body))
    assert (entry["rule"], entry["action"]) == ("untargeted", "autoremedy.escalate")
    assert "autoremedy_target" in entry["params"]["reason"]


def test_a_rule_rendering_a_label_the_body_lacks_fails_the_enforcement(engine, post):
    """The deliberate break: the suite sees StrictUndefined fail an enforcement."""
    from st2kit import rules
    body = post("sensu", sensu_go(2, autoremedy_class="process", autoremedy_target="nova-compute"))
    broken = rules()
    broken["process"] = copy.deepcopy(broken["process"])
    broken["process"]["action"]["parameters"]["target"] = "{{ trigger.body.event.labels.autoremedy_unit }}"
    entry = the_one_error(engine.enforce(body, rule_set=broken))
    assert "autoremedy_unit" in entry["error"]


def the_one_error(enforced):
    assert len(enforced) == 1, enforced
    assert "error" in enforced[0], enforced[0]
    return enforced[0]


@pytest.mark.parametrize("status,labels,expected", [
    (2, {"autoremedy_class": cls, "autoremedy_target": "t-1"}, [rule])
    for cls, rule in [("process", "process"), ("disk", "disk"), ("rabbitmq-queues", "rabbitmq_queues"),
                      ("rabbitmq-node", "rabbitmq_node"), ("mysql-replication", "mysql_replication"),
                      ("galera", "galera"), ("compute-node", "compute_node"),
                      ("openstack-consistency", "openstack_consistency"), ("spool", "unhandled")]
] + [(1, {}, ["unhandled"]), (0, {}, ["resolved"]), (3, {}, ["cannot_check"]),
      (3, {"autoremedy_class": "galera", "autoremedy_target": "prod"}, ["galera"]),
      (3, {"autoremedy_class": "process", "autoremedy_target": "t-1"}, ["cannot_check"])])
def test_exactly_one_rule_per_body(engine, post, status, labels, expected):
    body = post("sensu", sensu_go(status, **labels))
    enforced = engine.enforce(body)
    assert [e["rule"] for e in enforced] == expected
    assert [e for e in enforced if "error" in e] == []
