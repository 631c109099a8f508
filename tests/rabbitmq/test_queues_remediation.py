"""remediate rabbitmq-queues on the real shared broker (integration): a cap policy
bounds the depth and can be reverted, a move loses nothing (shovel and AMQP
republish), a purge only where disposable, and nothing outside the allowlist."""
import json

import pytest

import rmq_helpers as rh
from own_vhost import vhost  # noqa: F401  (this area's own vhosts)

pytestmark = pytest.mark.integration


def remediate(run_cli, config, target, *args):
    return run_cli("remediate", "rabbitmq-queues", "--config", config, target, *args, timeout=180)


def config_for(rmq_config, vhost, **policies):
    for policy in policies.values():
        policy.setdefault("vhost", vhost)
    return rmq_config({"queue_policies": policies},
                      remediations={"rabbitmq-queues": {"enabled": True, "verify_timeout": 30}})


def test_cap_bounds_the_depth_keeps_existing_policies_and_reverts(run_cli, rmq_config, vhost, shared):
    # An OpenStack-style user policy is already there; the cap must not replace it.
    shared.call("PUT", f"policies/{rh.q(vhost, 'ha-like')}",
                {"pattern": ".*", "apply-to": "queues", "definition": {"expires": 86400000}})
    rh.declare(vhost, "notifications.info")
    rh.flood(vhost, "notifications.info", 3000)
    # The plan reads depths through the API, like the check that triggered it: wait out its lag.
    shared.wait_api(vhost, "notifications.info", lambda r: r["messages"] == 3000)
    config = config_for(rmq_config, vhost, notifications={
        "pattern": r"^notifications\.info$", "action": "cap", "messages": 1000, "max_length": 1000})
    ran = remediate(run_cli, config, "notifications", "--json")
    assert ran.returncode == 0, ran
    outcome = ran.json
    assert outcome["outcome"] == "remediated", outcome
    assert outcome["verify"]["status"] == "OK"
    assert "notifications.info" in outcome["verify"]["summary"]
    assert rh.depth(vhost, "notifications.info")[0] == 1000
    # later publishes stay capped (drop-head)
    conn = rh.amqp(vhost)
    ch = conn.channel()
    ch.confirm_delivery()
    for _ in range(200):
        ch.basic_publish("", "notifications.info", b"late")
    conn.close()
    assert rh.depth(vhost, "notifications.info")[0] == 1000
    # The policy columns follow the statistics, ~2.5 s behind (measured).
    mine = shared.wait_api(vhost, "notifications.info", lambda r: r.get("operator_policy"),
                           columns="messages,policy,operator_policy,effective_policy_definition")
    assert mine["policy"] == "ha-like" and mine["operator_policy"] == "autoremedy-notifications"
    assert mine["effective_policy_definition"] == {"expires": 86400000, "max-length": 1000}

    again = remediate(run_cli, config, "notifications", "--json")     # nothing over 1000 any more
    assert again.json["outcome"] == "noop", again

    back = remediate(run_cli, config, "notifications", "--revert", "--json")
    assert back.json["outcome"] == "remediated", back
    assert shared.status("GET", f"operator-policies/{rh.q(vhost, 'autoremedy-notifications')}") == 404


def test_cap_with_an_overflow_mode_merges_the_user_policy_it_outranks(run_cli, rmq_config, vhost, shared):
    shared.call("PUT", f"policies/{rh.q(vhost, 'ha-like')}",
                {"pattern": ".*", "apply-to": "queues", "priority": 5, "definition": {"expires": 86400000}})
    rh.declare(vhost, "metering")
    rh.flood(vhost, "metering", 1500)
    shared.wait_api(vhost, "metering", lambda r: r["messages"] == 1500)
    config = config_for(rmq_config, vhost, meter={
        "pattern": "^metering$", "action": "cap", "messages": 1000, "max_length": 800,
        "overflow": "reject-publish"})
    ran = remediate(run_cli, config, "meter", "--json")
    assert ran.json["outcome"] == "remediated", ran
    applied = shared.call("GET", f"policies/{rh.q(vhost, 'autoremedy-meter')}")
    assert applied["priority"] == 6
    assert applied["definition"] == {"expires": 86400000, "max-length": 800, "overflow": "reject-publish"}
    assert rh.depth(vhost, "metering")[0] == 800
    import pika
    conn = rh.amqp(vhost)
    ch = conn.channel()
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.NackError):     # reject-publish: the publisher hears it
        ch.basic_publish("", "metering", b"one too many")
    conn.close()


def test_move_by_shovel_loses_nothing(run_cli, rmq_config, vhost, shared):
    rh.declare(vhost, "billing.events")
    rh.flood(vhost, "billing.events", 5000)
    shared.wait_api(vhost, "billing.events", lambda r: r["messages"] == 5000)
    config = config_for(rmq_config, vhost, parking={
        "pattern": r"^billing\.events$", "action": "move", "messages": 1000, "move_via": "shovel"})
    ran = remediate(run_cli, config, "parking", "--json")
    assert ran.returncode == 0, ran
    assert ran.json["outcome"] == "remediated", ran.json
    assert "shovel" in " ".join(ran.json["notes"])
    assert rh.depth(vhost, "billing.events")[0] == 0
    assert rh.depth(vhost, "billing.events.overflow")[0] == 5000
    assert shared.call("GET", f"parameters/shovel/{rh.q(vhost)}") == []     # it deleted itself


def test_move_by_amqp_republish_keeps_every_body_and_header(run_cli, rmq_config, vhost, shared):
    rh.declare(vhost, "audit")
    bodies = [f"event-{i}".encode() for i in range(1500)]
    rh.publish(vhost, "audit", bodies, headers={"trace": "req-42"})
    shared.wait_api(vhost, "audit", lambda r: r["messages"] == 1500)
    config = config_for(rmq_config, vhost, audit={
        "pattern": "^audit$", "action": "move", "messages": 1000, "move_via": "amqp",
        "overflow_queue": "{name}.parking"})
    ran = remediate(run_cli, config, "audit", "--json")
    assert ran.json["outcome"] == "remediated", ran.json
    assert "moved 1500 message(s) with publisher confirms" in " ".join(ran.json["notes"])
    assert rh.depth(vhost, "audit")[0] == 0
    moved = rh.drain(vhost, "audit.parking")
    assert [b for b, _ in moved] == bodies                      # all of them, in order
    assert {h["trace"] for _, h in moved} == {"req-42"}


def test_purge_only_where_disposable_and_only_without_consumers(run_cli, rmq_config, vhost, shared):
    rh.declare(vhost, "metering.aaaa", "metering.bbbb")
    rh.flood(vhost, "metering.aaaa", 2000)
    rh.flood(vhost, "metering.bbbb", 2000)
    conn = rh.amqp(vhost)                               # metering.bbbb has a live consumer
    ch = conn.channel()
    ch.basic_qos(prefetch_count=1)
    ch.basic_consume("metering.bbbb", lambda *a: None)
    conn.process_data_events(time_limit=0.3)
    shared.wait_api(vhost, "metering.bbbb", lambda r: r.get("consumers") == 1)
    shared.wait_api(vhost, "metering.aaaa", lambda r: r.get("messages") == 2000)
    config = config_for(rmq_config, vhost, replies={
        "pattern": "^metering\\.", "action": "purge", "disposable": True, "messages": 100})
    dry = remediate(run_cli, config, "replies", "--dry-run")
    assert dry.returncode == 0 and "would: purge metering.aaaa" in dry.stdout, dry
    assert "purge metering.bbbb" not in dry.stdout
    assert "reach: queue: metering.aaaa" in dry.stdout, dry
    assert rh.depth(vhost, "metering.aaaa")[0] == 2000     # dry-run changed nothing
    ran = remediate(run_cli, config, "replies", "--json")
    assert ran.json["outcome"] == "remediated", ran.json
    assert rh.depth(vhost, "metering.aaaa")[0] == 0
    assert rh.depth(vhost, "metering.bbbb")[0] >= 1999     # consumed queue untouched
    conn.close()


def test_purge_without_disposable_is_a_configuration_error(run_cli, rmq_config, vhost):
    config = config_for(rmq_config, vhost, replies={"pattern": "^reply_", "action": "purge"})
    ran = remediate(run_cli, config, "replies")
    assert ran.returncode == 3
    assert "queue_policies.replies: purge deletes messages; it needs disposable: true" in ran.stderr
    assert "Traceback" not in ran.stderr + ran.stdout


def test_nothing_outside_the_allowlist_is_touched(run_cli, rmq_config, vhost, shared):
    rh.declare(vhost, "other")
    rh.flood(vhost, "other", 1500)
    shared.wait_api(vhost, "other", lambda r: r["messages"] == 1500)
    config = config_for(rmq_config, vhost, replies={
        "pattern": "^reply_", "action": "purge", "disposable": True})
    ran = remediate(run_cli, config, "other")
    assert ran.returncode == 1
    assert "'other' is not in rabbitmq.queue_policies (known: replies)" in ran.stdout
    ran = remediate(run_cli, config, "replies", "--queue", "other")
    assert ran.returncode == 1
    assert "queue 'other' does not match rabbitmq.queue_policies.replies.pattern" in ran.stdout
    assert rh.depth(vhost, "other")[0] == 1500


def test_more_matching_queues_than_max_queues_is_refused(run_cli, rmq_config, vhost, shared):
    rh.declare(vhost, "r1", "r2", "r3")
    for name in ("r1", "r2", "r3"):
        rh.flood(vhost, name, 50)
    for name in ("r1", "r2", "r3"):
        shared.wait_api(vhost, name, lambda r: r.get("messages") == 50 and r.get("consumers") == 0)
    config = config_for(rmq_config, vhost, replies={
        "pattern": "^r[0-9]$", "action": "purge", "disposable": True, "messages": 10, "max_queues": 2})
    ran = remediate(run_cli, config, "replies", "--json")
    assert ran.returncode == 1
    assert ran.json["outcome"] == "refused" and ran.json["guard"] == "blast_radius"
    assert "3 queues match replies (max_queues 2)" in ran.json["reason"]


def until_non_empty(produce, timeout, interval=0.5):
    """``produce()`` until it gives something non-empty (its last answer at the deadline)."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        got = produce()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(interval)


def test_a_queue_deleted_between_listing_and_action_is_reported_not_recreated(rmq_config, vhost, shared):
    from autoremedy.config import Config
    from autoremedy.remediations import rabbitmq_queues
    rh.declare(vhost, "doomed")
    rh.flood(vhost, "doomed", 500)
    shared.wait_api(vhost, "doomed", lambda r: r.get("messages") == 500)
    for action, extra in (("move", {"move_via": "shovel"}), ("purge", {"disposable": True})):
        rh.declare(vhost, "doomed")
        rh.flood(vhost, "doomed", 500)
        shared.wait_api(vhost, "doomed", lambda r: r.get("messages") == 500)
        config = Config.load(config_for(rmq_config, vhost, doomed={
            "pattern": "^doomed$", "action": action, "messages": 100, **extra}))
        remediation = rabbitmq_queues.REMEDIATION(config)
        # The API's statistics lag the flood under load (once in a clean-clone run the plan
        # was empty right after wait_api saw 500): plan until the queue is planned.
        plan = until_non_empty(lambda: remediation.plan("doomed"), 20)
        assert len(plan) == 1
        shared.call("DELETE", f"queues/{rh.q(vhost, 'doomed')}")
        notes = remediation.run("doomed", plan)
        assert notes == [f"{plan[0].description}: queue doomed vanished before the {action}: nothing to do"]
        assert rh.depth(vhost, "doomed") is None                      # not re-created


def test_bad_credentials_refuse_cleanly(run_cli, rmq_config, vhost):
    config = config_for(rmq_config, vhost, replies={"pattern": "^reply_", "action": "purge",
                                                     "disposable": True})
    ran = run_cli("remediate", "rabbitmq-queues", "--config", config, "replies", "--json",
                  env={"AUTOREMEDY_RABBITMQ_PASSWORD": "wrong"})
    assert ran.returncode == 1
    outcome = json.loads(ran.stdout)
    assert outcome["outcome"] == "failed"
    assert "rejected the credentials of user 'guest' (401)" in outcome["reason"]
    assert "Traceback" not in ran.stdout + ran.stderr


def test_an_overflow_cap_over_queues_under_different_user_policies_is_refused(run_cli, rmq_config, vhost, shared):
    shared.call("PUT", f"policies/{rh.q(vhost, 'nova-ha')}",
                {"pattern": "^nova\\.", "apply-to": "queues", "definition": {"expires": 1000000}})
    shared.call("PUT", f"policies/{rh.q(vhost, 'cinder-ha')}",
                {"pattern": "^cinder\\.", "apply-to": "queues", "definition": {"expires": 2000000}})
    rh.declare(vhost, "nova.events", "cinder.events")
    for name in ("nova.events", "cinder.events"):
        rh.flood(vhost, name, 200)
    shared.wait_api(vhost, "cinder.events", lambda r: r["messages"] == 200)
    config = config_for(rmq_config, vhost, events={
        "pattern": "\\.events$", "action": "cap", "messages": 100, "max_length": 50, "overflow": "reject-publish"})
    ran = remediate(run_cli, config, "events", "--json")
    assert ran.returncode == 1
    assert ran.json["outcome"] == "refused" and ran.json["guard"] == "policy"
    assert "under different user policies (cinder-ha, nova-ha)" in ran.json["reason"]
    assert rh.depth(vhost, "nova.events")[0] == 200


def test_the_node_hook_falls_back_to_the_policy_when_stackstorm_is_away(run_cli, rmq_config, vhost, shared):
    """The whole path an operator relies on at 3 a.m.: check → event → StackStorm
    not configured → guarded local cap → verified; the event stays spooled."""
    rh.declare(vhost, "notifications.info")
    rh.flood(vhost, "notifications.info", 3000)
    shared.wait_api(vhost, "notifications.info", lambda r: r["messages"] == 3000)
    config = config_for(rmq_config, vhost, notifications={
        "pattern": r"^notifications\.info$", "action": "cap", "messages": 1000, "max_length": 1000})
    ran = run_cli("handle", "hook", "rabbitmq-queues", "--target", "notifications", "--config", config,
                  "--vhost", vhost, "-w", "1000", "-c", "2000", timeout=120)
    assert ran.returncode == 0, ran
    assert ran.stdout.startswith(f"RABBITMQ-QUEUES CRITICAL: 1 of 1 queues: {vhost}/notifications.info 3000 msgs")
    assert "local rabbitmq-queues notifications: remediated: verified OK" in ran.stdout, ran
    assert "kept in the spool" in ran.stdout
    assert rh.depth(vhost, "notifications.info")[0] == 1000
