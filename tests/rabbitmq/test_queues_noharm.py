"""The no-harm contract of rabbitmq-queues on the real shared broker (integration).

expect_harm: a deliberately widened subclass whose cap policy pattern is '.*'
(what the class did before: the operator's pattern, not the plan) must end
``failed`` naming the queues outside the plan — their policy changed, and a
consumer-less one lost messages — never ``remediated``. The snapshot is read
with the test's own HTTP client and pika, not with autoremedy's code.

Also: a policy an older version left with a wide pattern is narrowed to the
plan on the next run, and the queues it releases are part of the reach.
(expect_no_harm for this class runs under real oslo.messaging traffic in
test_queues_oslo.py.)
"""
import json

import pytest

import rmq_helpers as rh
from own_vhost import vhost  # noqa: F401  (this area's own vhosts)
from noharm_harness import Case, expect_harm, remediate_json

pytestmark = pytest.mark.integration


def config_for(rmq_config, vhost, **policies):
    for policy in policies.values():
        policy.setdefault("vhost", vhost)
    return rmq_config({"queue_policies": policies},
                      remediations={"rabbitmq-queues": {"enabled": True, "verify_timeout": 30}})


def setup_queues(shared, vhost):
    rh.declare(vhost, "notifications.info", "billing", "orders")
    rh.flood(vhost, "notifications.info", 3000)
    rh.flood(vhost, "billing", 2000)
    rh.flood(vhost, "orders", 50)
    shared.wait_api(vhost, "notifications.info", lambda r: r["messages"] == 3000)
    shared.wait_api(vhost, "billing", lambda r: r["messages"] == 2000)


def snapshot(shared, vhost, exact=("notifications.info", "billing", "orders")):
    rows = shared.call("GET", f"queues/{rh.q(vhost)}?columns=name,policy,operator_policy,"
                              "effective_policy_definition")
    state = {f"policy {r['name']}": json.dumps([r.get("policy"), r.get("operator_policy"),
                                                r.get("effective_policy_definition")], sort_keys=True)
             for r in rows}
    state.update({f"messages {q}": rh.depth(vhost, q)[0] for q in exact})
    return state


class WidenedCapCase(Case):
    cls_name = "rabbitmq-queues"

    def __init__(self, config_path, shared, vhost):
        self.config_path, self.shared, self.vhost = config_path, shared, vhost

    def snapshot(self):
        return snapshot(self.shared, self.vhost)

    def remediate(self):
        from autoremedy.config import Config
        from autoremedy.contract.remediation import perform
        from autoremedy.remediations.rabbitmq_queues import QueuePolicies

        class Widened(QueuePolicies):
            def policy_pattern(self, names):
                return ".*"           # the operator's pattern, as before the fix

        outcome = perform(Widened(Config.load(self.config_path)), "notify").to_dict()
        # the snapshot after: once the policy columns show the change (stats lag)
        self.shared.wait_api(self.vhost, "billing", lambda r: r.get("operator_policy"),
                             columns="messages,operator_policy")
        return outcome

    def allowed(self):
        return {"policy notifications.info", "messages notifications.info"}


def test_a_policy_wider_than_its_plan_fails_naming_the_queues_outside_it(rmq_config, shared, vhost):
    setup_queues(shared, vhost)
    config = config_for(rmq_config, vhost, notify={
        "pattern": r"^notifications\.info$", "messages": 1000, "action": "cap", "max_length": 100})
    run = expect_harm(WidenedCapCase(config, shared, vhost), named=[
        "queue billing changed outside the plan",
        "queue orders changed outside the plan",
        "invariant broken: messages in billing (no consumer, outside the plan) (not fewer): [2000, 0] -> [100, 0]",
    ])
    assert run.outcome["outcome"] == "failed"
    assert run.outcome["reach"][0]["names"] == ["notifications.info"]
    assert sorted(run.outcome["reach"][0]["changed"]) == ["billing", "notifications.info", "orders"]
    # the test's own snapshot agrees with what the product named
    assert {d.split(":")[0] for d in run.differences} == {
        "policy billing", "policy orders", "messages billing"}


def test_a_wide_policy_left_by_an_older_version_is_narrowed_to_the_plan(run_cli, rmq_config, shared, vhost):
    setup_queues(shared, vhost)
    # what an earlier version applied: the operator's pattern
    shared.call("PUT", f"operator-policies/{rh.q(vhost, 'autoremedy-notify')}",
                {"pattern": "^(notifications|orders)", "apply-to": "queues", "definition": {"max-length": 5000}})
    shared.wait_api(vhost, "orders", lambda r: r.get("operator_policy") == "autoremedy-notify",
                    columns="messages,operator_policy")
    config = config_for(rmq_config, vhost, notify={
        "pattern": r"^notifications\.info$", "messages": 1000, "action": "cap", "max_length": 100})
    outcome = remediate_json(run_cli, "rabbitmq-queues", "--config", config, "notify")
    assert outcome["outcome"] == "remediated", outcome
    assert outcome["reach"][0]["names"] == ["notifications.info", "orders"]
    assert "orders: released (no longer matches the pattern)" in json.dumps(outcome["plan"])
    assert shared.call("GET", f"operator-policies/{rh.q(vhost, 'autoremedy-notify')}")["pattern"] == \
        r"^notifications\.info$"
    assert rh.depth(vhost, "orders")[0] == 50 and rh.depth(vhost, "billing")[0] == 2000
