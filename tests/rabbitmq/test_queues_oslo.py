"""remediate rabbitmq-queues under real oslo.messaging traffic (integration).

Two RPC servers (compute/node1, compute/node2), a client that calls and casts
all the time, and a notifier nobody consumes, all real oslo.messaging processes
(tests/rabbitmq/oslo_traffic.py) in a vhost of their own on the shared broker.
Every test records the client's counts before and proves after the run: RPC
calls kept flowing, **zero failed calls, zero lost casts** (every cast id the
client sent was received by a server).

Covered: cap, move and purge of the notification queues; the issue's '.*' cap
(now confined to its plan: a consumer-less queue outside it keeps every
message); --queue narrowing a cap, re-planning as queues join, --revert; every
loose pattern (PCRE-only pattern: config error; move of an RPC server queue,
purge of RPC queues: refused naming the queue). The no-harm case of the class
(expect_no_harm) runs here too; its widened counterpart (expect_harm) is in
test_queues_noharm.py.
"""
import json
import time

import pytest

import oslo_traffic
import own_vhost
import rmq_helpers as rh
from noharm_harness import Case, expect_no_harm, remediate_json

pytestmark = pytest.mark.integration

NOTIFY = ("notifications.info", "versioned_notifications.info")


@pytest.fixture(scope="module")
def oslo_vhost():
    name = own_vhost.make()
    yield name
    rh.Client().drop_vhost(name)


@pytest.fixture(scope="module")
def traffic(oslo_vhost, tmp_path_factory):
    running = oslo_traffic.Traffic(oslo_vhost, tmp_path_factory.mktemp("oslo"))
    try:
        yield running.start()
    finally:
        running.stop()


@pytest.fixture
def rpc(traffic, shared, oslo_vhost):
    """The traffic, its counts before the test, and a clean slate after it."""
    before = traffic.counts()
    yield traffic, before
    for kind in ("operator-policies", "policies"):
        for pol in shared.call("GET", f"{kind}/{rh.q(oslo_vhost)}"):
            if pol["name"].startswith("autoremedy-"):
                shared.call("DELETE", f"{kind}/{rh.q(oslo_vhost, pol['name'])}", ok=(204, 404))
    # The queue listing's policy columns trail a deletion by a statistics round or more under
    # load: the next test's "before" reading must not see this test's policy still in force.
    deadline = time.monotonic() + 60
    while True:
        rows = shared.call("GET", f"queues/{rh.q(oslo_vhost)}?columns=name,policy,operator_policy")
        left = [r["name"] for r in rows
                if str(r.get("policy") or "").startswith("autoremedy-")
                or str(r.get("operator_policy") or "").startswith("autoremedy-")]
        if not left:
            break
        assert time.monotonic() < deadline, f"autoremedy policies still shown on {left} after 60 s"
        time.sleep(0.5)
    for row in shared.call("GET", f"queues/{rh.q(oslo_vhost)}?columns=name"):
        if row["name"].endswith(".overflow") or row["name"] == "billing":
            shared.call("DELETE", f"queues/{rh.q(oslo_vhost, row['name'])}", ok=(204, 404))
    for name in NOTIFY:
        shared.call("DELETE", f"queues/{rh.q(oslo_vhost, name, 'contents')}", ok=(204, 404))


def config_for(rmq_config, vhost, **policies):
    for policy in policies.values():
        policy.setdefault("vhost", vhost)
    return rmq_config({"queue_policies": policies},
                      remediations={"rabbitmq-queues": {"enabled": True, "verify_timeout": 30}})


def flood_notifications(shared, vhost, count=6000):
    for name in NOTIFY:
        rh.flood(vhost, name, count)
    for name in NOTIFY:     # the plan reads depths from the API, like the check: wait out its lag
        shared.wait_api(vhost, name, lambda r: r["messages"] >= count)


def canary(shared, vhost, count=2000):
    """A consumer-less queue outside every plan: it must keep every message."""
    rh.declare(vhost, "billing")
    rh.flood(vhost, "billing", count)
    shared.wait_api(vhost, "billing", lambda r: r["messages"] == count)


def policies_of(shared, vhost):
    """{queue: (policy, operator_policy, effective definition)} as the API shows it."""
    rows = shared.call("GET", f"queues/{rh.q(vhost)}?columns=name,policy,operator_policy,"
                              "effective_policy_definition")
    return {r["name"]: (r.get("policy"), r.get("operator_policy"),
                        json.dumps(r.get("effective_policy_definition"), sort_keys=True))
            for r in rows}


def remediate(run_cli, config, target, *args):
    return run_cli("remediate", "rabbitmq-queues", "--config", config, target, *args, timeout=180)


class OsloCapCase(Case):
    """The issue's '.*' cap under real RPC traffic: reaches the two notification
    queues, nothing else (the canary and every RPC queue keep their policies)."""

    cls_name = "rabbitmq-queues"

    def __init__(self, run_cli, config, shared, vhost):
        self.run_cli, self.config, self.shared, self.vhost = run_cli, config, shared, vhost
        self.outcome = None

    def snapshot(self):
        # Read with the test's own client and pika, not autoremedy's code.
        state = {f"policy {q}": v for q, v in policies_of(self.shared, self.vhost).items()}
        state["billing messages"] = rh.depth(self.vhost, "billing")[0]
        return state

    def remediate(self):
        self.outcome = remediate_json(self.run_cli, "rabbitmq-queues", "--config", self.config, "all")
        # The policy columns trail a change by one statistics round: read the
        # "after" snapshot once the planned queues show it.
        for name in NOTIFY:
            self.shared.wait_api(self.vhost, name, lambda r: r.get("operator_policy") == "autoremedy-all",
                                 columns="messages,operator_policy")
        return self.outcome

    def allowed(self):
        return {f"policy {q}" for q in NOTIFY}


def test_a_dot_star_cap_is_confined_to_its_plan(run_cli, rmq_config, shared, oslo_vhost, rpc):
    traffic, before = rpc
    canary(shared, oslo_vhost)
    flood_notifications(shared, oslo_vhost)
    config = config_for(rmq_config, oslo_vhost, all={
        "pattern": ".*", "messages": 5000, "no_consumers": True, "action": "cap", "max_length": 100})
    dry = remediate_json(run_cli, "rabbitmq-queues", "--config", config, "all", "--dry-run")
    assert dry["outcome"] == "dry-run", dry
    assert dry["reach"][0]["names"] == sorted(NOTIFY)
    case = OsloCapCase(run_cli, config, shared, oslo_vhost)
    run = expect_no_harm(case)
    outcome = run.outcome
    # What the dry-run showed is what the run changed.
    assert outcome["reach"][0]["names"] == dry["reach"][0]["names"]
    applied = shared.call("GET", f"operator-policies/{rh.q(oslo_vhost, 'autoremedy-all')}")
    assert applied["pattern"] == r"^(?:notifications\.info|versioned_notifications\.info)$"
    assert rh.depth(oslo_vhost, "billing")[0] == 2000          # outside the plan: every message
    for name in NOTIFY:
        assert rh.depth(oslo_vhost, name)[0] <= 100
    traffic.assert_no_loss(before)


def why(outcome):
    """An outcome in full, one key a line: the short summary of pytest cuts a dict's repr."""
    return json.dumps(outcome, indent=1, default=str)


def test_queue_narrows_a_cap_then_the_next_run_replans_and_revert_releases(
        run_cli, rmq_config, shared, oslo_vhost, rpc):
    traffic, before = rpc
    flood_notifications(shared, oslo_vhost)
    config = config_for(rmq_config, oslo_vhost, notifications={
        "pattern": r"^(versioned_)?notifications\.info$", "messages": 5000, "no_consumers": True,
        "action": "cap", "max_length": 1000})
    one = remediate_json(run_cli, "rabbitmq-queues", "--config", config, "notifications",
                         "--queue", "notifications.info")
    assert one["outcome"] == "remediated", why(one)
    assert one["reach"][0]["names"] == ["notifications.info"]
    pol = rh.q(oslo_vhost, "autoremedy-notifications")
    assert shared.call("GET", f"operator-policies/{pol}")["pattern"] == r"^notifications\.info$"
    assert rh.depth(oslo_vhost, "versioned_notifications.info")[0] >= 6000     # not truncated
    assert rh.depth(oslo_vhost, "notifications.info")[0] <= 1000

    both = remediate_json(run_cli, "rabbitmq-queues", "--config", config, "notifications")
    assert both["outcome"] == "remediated", why(both)
    assert both["reach"][0]["names"] == ["versioned_notifications.info"]     # the other one only joins
    assert shared.call("GET", f"operator-policies/{pol}")["pattern"] == \
        r"^(?:notifications\.info|versioned_notifications\.info)$"
    assert "notifications.info: stays capped" in json.dumps(both["plan"])

    back = remediate_json(run_cli, "rabbitmq-queues", "--config", config, "notifications", "--revert")
    assert back["outcome"] == "remediated", why(back)
    assert back["reach"][0]["names"] == sorted(NOTIFY)
    assert shared.status("GET", f"operator-policies/{pol}") == 404
    traffic.assert_no_loss(before)


def test_move_and_purge_of_notifications_touch_only_them(run_cli, rmq_config, shared, oslo_vhost, rpc):
    traffic, before = rpc
    canary(shared, oslo_vhost)
    flood_notifications(shared, oslo_vhost)
    config = config_for(rmq_config, oslo_vhost, park={
        "pattern": r"^notifications\.info$", "messages": 5000, "action": "move", "move_via": "amqp"},
        drop={"pattern": r"^versioned_notifications\.info$", "messages": 5000, "action": "purge",
              "disposable": True})
    moved = remediate_json(run_cli, "rabbitmq-queues", "--config", config, "park")
    assert moved["outcome"] == "remediated", (moved["reason"], moved["harm"])
    assert moved["reach"][0]["names"] == ["notifications.info", "notifications.info.overflow"]
    assert rh.depth(oslo_vhost, "notifications.info.overflow")[0] >= 6000
    purged = remediate_json(run_cli, "rabbitmq-queues", "--config", config, "drop")
    assert purged["outcome"] == "remediated", (purged["reason"], purged["harm"])
    assert purged["reach"][0]["names"] == ["versioned_notifications.info"]
    assert rh.depth(oslo_vhost, "versioned_notifications.info")[0] < 5000
    assert rh.depth(oslo_vhost, "billing")[0] == 2000
    for outcome in (moved, purged):
        assert outcome["harm"] == [] and all(i["holds"] for i in outcome["invariants"])
        watched = [i["name"] for i in outcome["invariants"]]
        assert "messages in billing (no consumer, outside the plan)" in watched
    traffic.assert_no_loss(before)


@pytest.mark.parametrize("policy, why", [
    ({"pattern": r"^compute\.node1$", "action": "move", "messages": -1},
     "compute.node1: left alone: the RPC server queue of nova-compute on node1, 1 consumer(s): "
     "protected (rpc_queues: allow to move it)"),
    ({"pattern": "^compute", "action": "purge", "disposable": True, "messages": -1,
      "no_consumers": False},
     "compute.node1: left alone: the RPC server queue of nova-compute on node1, 1 consumer(s): "
     "RPC queues are never purged"),
    ({"pattern": "^compute", "action": "purge", "disposable": True, "messages": -1,
      "no_consumers": False, "rpc_queues": "allow"},
     "an oslo.messaging fanout queue: RPC queues are never purged"),
    ({"pattern": "^reply_", "action": "purge", "disposable": True, "messages": -1,
      "no_consumers": False},
     "an oslo.messaging reply queue: RPC queues are never purged"),
    ({"pattern": "^compute", "action": "cap", "max_length": 1, "messages": -1},
     "the RPC topic queue compute, 2 consumer(s): protected (rpc_queues: allow to cap it)"),
])
def test_rpc_queues_are_refused_naming_the_queue_and_why(run_cli, rmq_config, shared, oslo_vhost, rpc,
                                                          policy, why):
    traffic, before = rpc
    shared.wait_api(oslo_vhost, "compute", lambda r: r.get("consumers") == 2)
    config = config_for(rmq_config, oslo_vhost, loose=policy)
    outcome = remediate_json(run_cli, "rabbitmq-queues", "--config", config, "loose")
    assert outcome["outcome"] == "refused" and outcome["guard"] == "rpc", outcome
    assert why in outcome["reason"], outcome["reason"]
    assert "reach" not in outcome                      # refused before anything was read or moved
    for kind in ("operator-policies", "policies"):
        assert shared.status("GET", f"{kind}/{rh.q(oslo_vhost, 'autoremedy-loose')}") == 404
    traffic.assert_no_loss(before)


def test_a_pattern_that_pcre_reads_differently_is_a_config_error(run_cli, rmq_config, oslo_vhost, rpc):
    """The issue's pattern: Python saw only notifications.info, RabbitMQ also `compute`."""
    traffic, before = rpc
    config = config_for(rmq_config, oslo_vhost, loose={
        "pattern": r"^[[:lower:]_]+$|^notifications\.info$", "action": "cap", "max_length": 100})
    ran = remediate(run_cli, config, "loose")
    assert ran.returncode == 3, ran
    assert ("rabbitmq.queue_policies.loose.pattern: means something else to RabbitMQ (PCRE) than to "
            "Python: POSIX class [:lower:]") in ran.stderr
    assert "Traceback" not in ran.stdout + ran.stderr
    checked = run_cli("config", "check", "--config", config)
    assert checked.returncode != 0 and "queue_policies.loose.pattern" in checked.stdout + checked.stderr
    traffic.assert_no_loss(before)
