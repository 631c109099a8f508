"""Every path of every workflow of the pack, conducted by orquesta 1.2.0 with
action results in the shapes StackStorm's runners return (st2kit).

A scenario is one path: the workflow, its input, the scripted executions per
task, then what must hold — the final status, the tasks in order, the input
the actions received, the output. ``test_every_transition_is_taken`` computes
the transitions from the specs and fails when a transition is taken by no
scenario.
"""
import json

import pytest

from st2kit import ask, local, remote, script

SENSU_EVENT = {"id": "3f7a2c1e-sensu", "source": "sensu-go", "host": "cmp-7", "status": 2,
               "check": "autoremedy-process-nova-compute",
               "labels": {"autoremedy_class": "process", "autoremedy_target": "nova-compute"}}
ZABBIX_EVENT = {"id": "zabbix-80412", "source": "zabbix", "host": "cmp-7", "status": 2,
                "check": "disk", "extra": {"event_id": "80412", "trigger_id": "23011"},
                "labels": {"autoremedy_class": "disk", "autoremedy_target": "/var/log"}}
COMPUTE_EVENT = {"id": "cn-cmp-3", "source": "sensu-go", "host": "ctl-1", "status": 2,
                 "check": "autoremedy-compute-node",
                 "labels": {"autoremedy_class": "compute-node", "autoremedy_target": "cmp-3"}}

# What the sudo gate prints (autoremedy remediate ... without --json) and what
# `autoremedy check ... --format json` prints: real shapes, from the CLI's output.
REMEDIATED = ("process nova-compute: remediated: verified OK\n"
              "  plan: restart unit nova-compute  [systemctl restart nova-compute]\n"
              "  done: restart unit nova-compute: ok\n  verify: OK: 1 process(es)")
REFUSED = "process nova-compute: refused: 3 runs on nova-compute in the last 3600s (limit 3)"
CHECK_OK = json.dumps({"status": "OK", "summary": "1 process(es)", "metrics": []})
CHECK_CRIT = json.dumps({"status": "CRITICAL", "summary": "0 process(es)", "metrics": []})
EVAC_PLAN = ("compute-node cmp-3: dry-run: would run the plan\n"
             "  would: force-down cmp-3\n  would: evacuate 4 instance(s)")
EVAC_DONE = "compute-node cmp-3: remediated: verified OK"
# The shape of `autoremedy collect --json` (autoremedy/collection/collect.py write_bundle), trimmed.
BUNDLE = {"path": "/var/lib/autoremedy/incidents/20261204T120000Z-cmp-7-event",
          "summary": "/var/lib/autoremedy/incidents/20261204T120000Z-cmp-7-event: 1 new error signature(s): "
                     "nova-compute \"Instance failed to spawn: <*>\" x3; effort small (~14 min, 7-28: ...)",
          "new_signatures": [{"service": "nova-compute", "template": "Instance failed to spawn: <*>",
                              "count": 3, "errors": 3, "new": True, "level": "ERROR",
                              "first": "2026-12-04T12:00:01.00Z", "last": "2026-12-04T12:00:03.00Z"}],
          "disagreements": [{"id": "6f9a3c2e-1b4d-4e8f-9a7b-2c3d4e5f6a7b", "rule": "host",
                             "text": "nova-compute on cmp-7 logs about instance 6f9a3c2e-...; "
                                     "Nova says its host is cmp-5"}],
          "effort": {"size": "small", "minutes": 14, "range_minutes": [7, 28]}}
PAUSED = script(None)                      # core.pause (python-script)
NOTIFIED = script({"sent": True, "text": "..."})
ESCALATED = script({"summary": "...", "sent_to": ["escalation_url"]})
ACKED = script({"eventids": ["80412"]})


def remediate_input(event=SENSU_EVENT, scope="node", remediated_locally=False):
    labels = event["labels"]
    return {"event": event, "remediated_locally": remediated_locally,
            "cls": labels["autoremedy_class"], "host": event["host"],
            "target": labels["autoremedy_target"], "scope": scope,
            "check_args": f"--watch {labels['autoremedy_target']}", "verify_delay": 30}


SCENARIOS = {
    # -- remediate.yaml ------------------------------------------------------------------
    "node: remediated, verified, notified": dict(
        workflow="remediate.yaml", input=remediate_input(),
        results={"remediate_node": [remote("cmp-7", REMEDIATED)], "wait": [PAUSED],
                 "verify_node": [remote("cmp-7", CHECK_OK)], "notify_done": [NOTIFIED]},
        status="succeeded", tasks=["start", "remediate_node", "wait", "verify_node", "notify_done"],
        inputs={"remediate_node": {"hosts": "cmp-7", "cls": "process", "target": "nova-compute",
                                   "event_id": "3f7a2c1e-sensu"},
                "wait": {"max_pause": 30},
                "verify_node": {"hosts": "cmp-7", "cls": "process", "check_args": "--watch nova-compute"},
                "notify_done": {"message": "remediated and verified: " + REMEDIATED,
                                "event": SENSU_EVENT}},
        output={"outcome": REMEDIATED, "check": json.loads(CHECK_OK)}),
    "node: a Zabbix problem is acknowledged after verification": dict(
        workflow="remediate.yaml", input=remediate_input(ZABBIX_EVENT),
        results={"remediate_node": [remote("cmp-7", "disk /var/log: remediated: verified OK")],
                 "wait": [PAUSED], "verify_node": [remote("cmp-7", CHECK_OK)],
                 "notify_done": [NOTIFIED], "ack_zabbix": [ACKED]},
        status="succeeded",
        tasks=["start", "remediate_node", "wait", "verify_node", "notify_done", "ack_zabbix"],
        inputs={"ack_zabbix": {"eventid": "80412",
                               "message": "autoremedy disk /var/log: remediated and verified"}}),
    "node: refused by a guard, escalated, the workflow fails": dict(
        workflow="remediate.yaml", input=remediate_input(),
        results={"remediate_node": [remote("cmp-7", REFUSED, code=3)], "escalate": [ESCALATED]},
        status="failed", tasks=["start", "remediate_node", "escalate", "fail"],
        inputs={"escalate": {
            "reason": "the process remediation of nova-compute was refused, failed, or did not verify",
            "event": SENSU_EVENT,
            "evidence": {"outcome": {"cmp-7": {"stdout": REFUSED, "stderr": "", "return_code": 3,
                                               "succeeded": False, "failed": True}},
                         "check": None}}}),
    "node: remediated but the check still fails, escalated": dict(
        workflow="remediate.yaml", input=remediate_input(),
        results={"remediate_node": [remote("cmp-7", REMEDIATED)], "wait": [PAUSED],
                 "verify_node": [remote("cmp-7", CHECK_CRIT, code=2)], "escalate": [ESCALATED]},
        status="failed", tasks=["start", "remediate_node", "wait", "verify_node", "escalate", "fail"]),
    "node: remediated locally while StackStorm was away, only verified": dict(
        workflow="remediate.yaml", input=remediate_input(remediated_locally=True),
        results={"notify_local": [NOTIFIED], "wait": [PAUSED],
                 "verify_node": [remote("cmp-7", CHECK_OK)], "notify_done": [NOTIFIED]},
        status="succeeded", tasks=["start", "notify_local", "wait", "verify_node", "notify_done"],
        inputs={"notify_local": {"message": "remediated on the node while StackStorm was "
                                            "unreachable; verifying", "event": SENSU_EVENT}}),
    "api: remediated here, verified here": dict(
        workflow="remediate.yaml", input=remediate_input(scope="api"),
        results={"remediate_api": [local(REMEDIATED)], "wait": [PAUSED],
                 "verify_api": [local(CHECK_OK)], "notify_done": [NOTIFIED]},
        status="succeeded", tasks=["start", "remediate_api", "wait", "verify_api", "notify_done"],
        inputs={"remediate_api": {"cls": "process", "target": "nova-compute",
                                  "event_id": "3f7a2c1e-sensu"},
                "verify_api": {"cls": "process", "check_args": "--watch nova-compute"}}),
    "api: the remediation fails, escalated": dict(
        workflow="remediate.yaml", input=remediate_input(scope="api"),
        results={"remediate_api": [local("failed: harm detected", code=3)],
                 "escalate": [ESCALATED]},
        status="failed", tasks=["start", "remediate_api", "escalate", "fail"]),
    "api: the check still fails, escalated": dict(
        workflow="remediate.yaml", input=remediate_input(scope="api"),
        results={"remediate_api": [local(REMEDIATED)], "wait": [PAUSED],
                 "verify_api": [local(CHECK_CRIT, code=2)], "escalate": [ESCALATED]},
        status="failed", tasks=["start", "remediate_api", "wait", "verify_api", "escalate", "fail"]),
    # -- evacuate_host.yaml --------------------------------------------------------------
    "evacuation: planned, approved by a human, run, notified": dict(
        workflow="evacuate_host.yaml", input={"event": COMPUTE_EVENT, "host": "cmp-3", "approve": True},
        results={"plan": [local(EVAC_PLAN)], "notify_plan": [NOTIFIED],
                 "approval": [ask({"approved": True})], "evacuate": [local(EVAC_DONE)],
                 "notify_done": [NOTIFIED]},
        status="succeeded", paused=["paused"],
        tasks=["plan", "notify_plan", "approval", "evacuate", "notify_done"],
        inputs={"plan": {"cls": "compute-node", "target": "cmp-3", "event_id": "cn-cmp-3",
                         "dry_run": True},
                "evacuate": {"cls": "compute-node", "target": "cmp-3", "event_id": "cn-cmp-3",
                             "dry_run": False},
                "approval": {"route": "autoremedy", "ttl": 30, "schema": {
                    "type": "object", "properties": {"approved": {
                        "type": "boolean", "required": True,
                        "description": "Evacuate every instance of cmp-3 now?"}}}}},
        output={"plan": EVAC_PLAN, "outcome": EVAC_DONE}),
    "evacuation: no approval configured, planned then run": dict(
        workflow="evacuate_host.yaml", input={"event": COMPUTE_EVENT, "host": "cmp-3", "approve": False},
        results={"plan": [local(EVAC_PLAN)], "evacuate": [local(EVAC_DONE)],
                 "notify_done": [NOTIFIED]},
        status="succeeded", tasks=["plan", "evacuate", "notify_done"]),
    "evacuation: declined by a human, nothing moves": dict(
        workflow="evacuate_host.yaml", input={"event": COMPUTE_EVENT, "host": "cmp-3", "approve": True},
        results={"plan": [local(EVAC_PLAN)], "notify_plan": [NOTIFIED],
                 "approval": [ask({"approved": False})], "notify_declined": [NOTIFIED]},
        status="succeeded", paused=["paused"],
        tasks=["plan", "notify_plan", "approval", "notify_declined"],
        inputs={"notify_declined": {"message": "evacuation of cmp-3 declined by a human; "
                                               "nothing was moved", "event": COMPUTE_EVENT}}),
    "evacuation: nobody answered in time, escalated": dict(
        workflow="evacuate_host.yaml", input={"event": COMPUTE_EVENT, "host": "cmp-3", "approve": True},
        results={"plan": [local(EVAC_PLAN)], "notify_plan": [NOTIFIED],
                 "approval": [ask(timeout=True)], "escalate": [ESCALATED]},
        status="failed", paused=["paused"], tasks=["plan", "notify_plan", "approval", "escalate", "fail"]),
    "evacuation: the plan is refused (a partition), escalated before anything moves": dict(
        workflow="evacuate_host.yaml", input={"event": COMPUTE_EVENT, "host": "cmp-3", "approve": True},
        results={"plan": [local("compute-node cmp-3: refused: 3 of 5 computes down", code=3)],
                 "escalate": [ESCALATED]},
        status="failed", tasks=["plan", "escalate", "fail"]),
    "evacuation: the run fails, escalated with the plan": dict(
        workflow="evacuate_host.yaml", input={"event": COMPUTE_EVENT, "host": "cmp-3", "approve": False},
        results={"plan": [local(EVAC_PLAN)],
                 "evacuate": [local("compute-node cmp-3: failed: NoValidHost", code=3)],
                 "escalate": [ESCALATED]},
        status="failed", tasks=["plan", "evacuate", "escalate", "fail"],
        inputs={"escalate": {"reason": "evacuation of cmp-3 refused, not approved in time, or failed",
                             "event": COMPUTE_EVENT,
                             "evidence": {"plan": EVAC_PLAN, "outcome": {
                                 "stdout": "compute-node cmp-3: failed: NoValidHost", "stderr": "",
                                 "return_code": 3, "succeeded": False, "failed": True}}}}),
    # -- collect_and_draw.yaml ------------------------------------------------------------
    "unhandled: the bundle is collected on the node and escalated, new signatures first": dict(
        workflow="collect_and_draw.yaml",
        input={"event": dict(SENSU_EVENT, timestamp=1764849600), "host": "cmp-7"},
        results={"collect": [remote("cmp-7", json.dumps(BUNDLE))], "escalate": [ESCALATED]},
        status="succeeded", tasks=["collect", "escalate"],
        inputs={"collect": {"hosts": "cmp-7", "at": "1764849600", "ids": ["nova-compute"]},
                "escalate": {"reason": "no registered remediation for this failure: " + BUNDLE["summary"],
                             "event": dict(SENSU_EVENT, timestamp=1764849600),
                             "evidence": {"new_signatures": BUNDLE["new_signatures"],
                                          "disagreements": BUNDLE["disagreements"], "bundle": BUNDLE}}},
        output={"bundle": BUNDLE, "new_signatures": BUNDLE["new_signatures"],
                "disagreements": BUNDLE["disagreements"]}),
    "unhandled: collecting fails, escalated anyway with the error": dict(
        workflow="collect_and_draw.yaml",
        input={"event": dict(SENSU_EVENT, timestamp=1764849600, labels={}), "host": "cmp-7"},
        results={"collect": [remote("cmp-7", "", code=255, stderr="ssh: connect refused")],
                 "escalate": [ESCALATED]},
        status="succeeded", tasks=["collect", "escalate"],
        inputs={"collect": {"hosts": "cmp-7", "at": "1764849600", "ids": []},
                "escalate": {"reason": "no registered remediation for this failure: the incident bundle "
                                       "could not be collected",
                             "event": dict(SENSU_EVENT, timestamp=1764849600, labels={}),
                             "evidence": {"new_signatures": [], "disagreements": [],
                                          "bundle": {"cmp-7": {"stdout": "", "stderr": "ssh: connect refused",
                                                               "return_code": 255, "succeeded": False,
                                                               "failed": True}}}}}),
}


EXECUTION_FAILED = "Execution failed. See result for details."


def expression_errors(trace):
    """Errors other than a failed action (which a path expects): expression
    errors, unknown variables, bad transitions."""
    return [e for e in trace["errors"] if e.get("message") != EXECUTION_FAILED]


def conducted(engine, name):
    case = SCENARIOS[name]
    return engine.conduct(case["workflow"], case["input"], case["results"])


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario(engine, name):
    case = SCENARIOS[name]
    trace = engine.conduct(case["workflow"], case["input"], case["results"])
    assert expression_errors(trace) == [], trace["errors"]
    assert trace["status"] == case["status"], trace
    assert trace["sequence"] == case["tasks"], trace["sequence"]
    assert trace["unused"] == {}, f"scripted executions never asked for: {trace['unused']}"
    assert trace["paused"] == case.get("paused", []), trace["paused"]
    received = {e["task"]: e["input"] for e in trace["executed"]}
    for task, expected in case.get("inputs", {}).items():
        assert received[task] == expected, (task, received[task])
    if "output" in case:
        assert trace["output"] == case["output"], trace["output"]


@pytest.mark.parametrize("workflow", ["remediate.yaml", "evacuate_host.yaml", "collect_and_draw.yaml"])
def test_every_workflow_passes_orquestas_inspection(engine, workflow):
    assert engine.inspect(workflow) == {}


def test_every_transition_is_taken(engine):
    taken = set()
    for name, case in SCENARIOS.items():
        trace = conducted(engine, name)
        taken |= {(case["workflow"], t) for t in trace["taken"]}
    missing = []
    for workflow in ("remediate.yaml", "evacuate_host.yaml", "collect_and_draw.yaml"):
        for t in engine.transitions(workflow):
            if (workflow, t["id"]) not in taken:
                missing.append(f"{workflow}: {t['task']} -{t['when']}-> {t['do']}")
    assert missing == [], "transitions no scenario takes:\n" + "\n".join(missing)


# -- the suite notices a break: each mutation must make a scenario fail ------------------------

def test_a_misspelt_ctx_variable_fails_the_scenario(engine):
    from st2kit import workflow_text
    case = SCENARIOS["node: remediated, verified, notified"]
    broken = workflow_text("remediate.yaml").replace("hosts: <% ctx(host) %>",
                                                     "hosts: <% ctx(hots) %>", 1)
    trace = engine.conduct("remediate.yaml", case["input"], case["results"], definition=broken)
    # orquesta's inspection refuses it before any task runs
    assert trace["status"] == "invalid", trace
    messages = [e["message"] for e in trace["inspect"]["context"]]
    assert 'Variable "hots" is referenced before assignment.' in messages


def test_a_changed_result_shape_fails_the_scenario(engine):
    """remote-shell-cmd results are keyed by host; a workflow reading them as a
    local result (or a runner answering unkeyed) is an expression error."""
    case = SCENARIOS["node: remediated, verified, notified"]
    results = dict(case["results"], remediate_node=[local(REMEDIATED)])
    trace = engine.conduct("remediate.yaml", case["input"], results)
    assert trace["status"] == "failed" and expression_errors(trace), trace


# -- the Python actions, run with what the workflows give them ---------------------------------

def test_python_actions_accept_what_every_workflow_path_gives_them(engine):
    """Every python-script execution of every scenario re-run with its real code
    on the input orquesta rendered: notifications and escalations reach their
    webhooks; a Zabbix acknowledgement without zabbix_url fails loudly."""
    from st2kit import Receiver, actions, pack_config, run_python_action
    kinds = {ref for ref, meta in actions().items() if meta["runner_type"] == "python-script"}
    ran = set()
    with Receiver() as chat, Receiver() as pager:
        config = pack_config(notify_url=chat.url, escalation_url=pager.url)
        for name in sorted(SCENARIOS):
            for execution in conducted(engine, name)["executed"]:
                ref = execution["action"]
                if ref not in kinds:
                    continue
                ran.add(ref)
                outcome = run_python_action(ref, execution["input"], config)
                if ref == "autoremedy.zabbix_ack":
                    assert outcome["status"] == "failed"
                    assert outcome["result"]["result"] == {"error": "zabbix_url is not configured"}
                else:
                    assert outcome["status"] == "succeeded", (name, ref, outcome)
        assert ran == kinds
        assert chat.received and all(set(b) == {"text"} for b in chat.received)
        assert pager.received and all(b["dedup_key"] for b in pager.received)
