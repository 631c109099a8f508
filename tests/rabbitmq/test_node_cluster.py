"""rabbitmq-node in a two-node cluster of throwaway nodes (integration, destructive):
a member whose mnesia is damaged is forgotten by its healthy peer, reset and
joined again, and gets the definitions back from the cluster; with most of the
cluster down the remediation refuses."""
import time

import pytest

import rmq_helpers as rh

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster():
    nodes = []
    for letter, index in (("b", 1), ("c", 2)):
        rh.kill_stale(f"rmqtest-{letter}@{rh.HOST}")
        nodes.append(rh.Node(letter, index))
    b, c = nodes
    try:
        for node in nodes:                      # boot both at once: ~8 s instead of ~16
            node.start(wait=False)
        for node in nodes:
            node.wait_running(90)
        started = time.monotonic()
        for args in (("stop_app",), ("join_cluster", b.name), ("start_app",)):
            done = c.ctl(*args, timeout=120)
            assert done.returncode == 0, done.stderr
        print(f"\njoin took {time.monotonic() - started:.1f}s")
        b.wait_api()
        c.wait_api()
        api = b.client()
        api.make_vhost("nova")
        api.call("PUT", "users/openstack", {"password": "s3cret", "tags": "administrator"})
        api.call("PUT", f"permissions/{rh.q('nova', 'openstack')}",
                 {"configure": ".*", "write": ".*", "read": ".*"})
        api.call("PUT", "queues/nova/compute", {"durable": True})
        yield b, c
    finally:
        for node in nodes:
            node.destroy()


def config_for(make_config, node, peers):
    return make_config({
        "rabbitmq": {"api_url": node.api_url, "user": "guest", "node": node.name,
                     "node_env": node.env, "cluster_nodes": [p.name for p in peers]},
        "remediations": {"rabbitmq-node": {"enabled": True, "verify_timeout": 90}}})


def check(run_cli, config, *args):
    ran = run_cli("check", "rabbitmq-node", "--config", config, "--format", "json", *args, timeout=90)
    assert "Traceback" not in ran.stdout + ran.stderr
    return ran.json


def damage(node):
    node.kill()
    import os
    os.truncate(os.path.join(node.mnesia, "schema.DAT"), 100)
    node.truncate_log()
    node.start(wait=False)


def wait_state(run_cli, config, state, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        result = check(run_cli, config)
        if result["data"].get("state") == state:
            return result
        assert time.monotonic() < deadline, result
        time.sleep(1)


def test_a_damaged_member_is_reset_and_rejoins_its_healthy_peer(run_cli, make_config, cluster):
    b, c = cluster
    config_c = config_for(make_config, c, cluster)
    config_b = make_config({"rabbitmq": {"api_url": b.api_url, "node": b.name, "node_env": b.env,
                                         "cluster_nodes": [b.name, c.name]}}, name="b.yaml")
    healthy = check(run_cli, config_c)
    assert healthy["state"] == "OK", healthy
    assert healthy["summary"] == f"{c.name} running, 2/2 cluster nodes running"
    started = time.monotonic()
    damage(c)
    broken = wait_state(run_cli, config_c, "boot_failed")
    assert "Cannot read schema" in broken["summary"]
    seen_from_b = check(run_cli, config_b, "--cluster")           # the API-scoped cluster view
    assert seen_from_b["state"] == "CRITICAL"
    assert f"{c.name} not running" in seen_from_b["summary"]
    detected = time.monotonic() - started

    ran = run_cli("remediate", "rabbitmq-node", "--config", config_c, c.name, "--json", timeout=300)
    outcome = ran.json
    assert outcome["outcome"] == "remediated", outcome
    steps = [s["step"] for s in outcome["plan"]]
    assert steps[-1] == f"forget {c.name} on {b.name}, then reset and join_cluster {b.name}"
    assert f"joined {b.name}" in " ".join(outcome["notes"])
    assert check(run_cli, config_b, "--cluster")["state"] == "OK"
    queues = c.client("openstack", "s3cret").call("GET", "queues/nova?columns=name")
    assert [q["name"] for q in queues] == ["compute"]          # definitions came from the cluster
    print(f"\ncluster cycle: detect {detected:.1f}s, whole {time.monotonic() - started:.1f}s")


def test_with_most_of_the_cluster_down_the_reset_is_refused(run_cli, make_config, cluster):
    b, c = cluster
    config_c = config_for(make_config, c, cluster)
    b.kill()
    try:
        damage(c)
        wait_state(run_cli, config_c, "boot_failed")
        ran = run_cli("remediate", "rabbitmq-node", "--config", config_c, c.name, "--json", timeout=120)
        assert ran.returncode == 1
        assert ran.json["outcome"] == "refused" and ran.json["guard"] == "quorum"
        assert "2 of 2 cluster nodes are down" in ran.json["reason"]
    finally:
        c.kill()
