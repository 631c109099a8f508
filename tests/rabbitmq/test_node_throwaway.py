"""check and remediate rabbitmq-node on a throwaway node (integration, destructive):
damage its mnesia the ways measured on RabbitMQ 3.10 (docs/rabbitmq.md), see the check go CRITICAL with the
reason, run the remediation, see the node healthy with its definitions back, and
time each whole cycle. The shared node is never touched."""
import json
import os
import time

import pytest

import rmq_helpers as rh

pytestmark = pytest.mark.integration

CYCLE_LIMIT = 90.0          # seconds from damage to verified recovery (measured: 28-50 s)


@pytest.fixture(scope="module")
def node_a():
    rh.kill_stale(f"rmqtest-a@{rh.HOST}")
    node = rh.Node("a", 0)
    node.start(timeout=90)
    node.wait_api()
    yield node
    node.destroy()


def seed(node):
    """The definitions a real node would carry, plus persistent messages."""
    api = node.client()
    api.make_vhost("nova")
    api.call("PUT", "users/openstack", {"password": "s3cret", "tags": "administrator"})
    for vhost in ("nova", "/"):
        api.call("PUT", f"permissions/{rh.q(vhost, 'openstack')}",
                 {"configure": ".*", "write": ".*", "read": ".*"})
    api.call("PUT", "queues/nova/compute", {"durable": True})
    api.call("PUT", "policies/nova/ha-like", {"pattern": "^compute", "definition": {"expires": 3600000}})
    rh.flood("nova", "compute", 200, port=node.amqp_port)


def assert_definitions_back(node):
    api = node.client("openstack", "s3cret")          # the user is back, with its password
    assert {v["name"] for v in api.call("GET", "vhosts")} >= {"nova", "/"}
    assert [q["name"] for q in api.call("GET", "queues/nova?columns=name")] == ["compute"]
    assert api.call("GET", "policies/nova/ha-like")["definition"] == {"expires": 3600000}


@pytest.fixture
def healthy_a(node_a):
    """Node A running with its definitions, whatever the previous test left."""
    if not node_a.running() or node_a.client().status("GET", "vhosts/nova") != 200:
        node_a.kill()
        os.system(f"rm -rf '{node_a.mnesia}'")
        node_a.truncate_log()
        node_a.start(timeout=90)
        node_a.wait_api()
        seed(node_a)
    return node_a


@pytest.fixture
def config_a(make_config, healthy_a):
    def make(accept=(), **rabbitmq):
        section = {"api_url": healthy_a.api_url, "user": "guest", "node": healthy_a.name,
                   "node_env": healthy_a.env, "boot_timeout": 20}
        section.update(rabbitmq)
        return make_config({"rabbitmq": section, "remediations": {"rabbitmq-node": {
            "enabled": True, "verify_timeout": 60,
            "accept_queue_loss": [{"vhost": v, "name": n} for v, n in accept]}}})
    return make


def check(run_cli, config, *args):
    ran = run_cli("check", "rabbitmq-node", "--config", config, "--format", "json", *args, timeout=90)
    assert "Traceback" not in ran.stdout + ran.stderr
    return ran.json


def wait_state(run_cli, config, states, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        result = check(run_cli, config)
        if result["data"].get("state") in states and result["state"] == "CRITICAL":
            return result
        assert time.monotonic() < deadline, f"never reached {states}: {result}"
        time.sleep(1)


def baseline_taken(run_cli, config, state_dir, node):
    result = check(run_cli, config)
    assert result["state"] == "OK", result
    path = state_dir / "rabbitmq" / f"{node.name}.definitions.json"
    assert json.loads(path.read_text())["vhosts"], "the first healthy check saves the baseline"
    assert oct(path.stat().st_mode)[-3:] == "600"        # it carries password hashes
    return path


def remediate(run_cli, config, node):
    ran = run_cli("remediate", "rabbitmq-node", "--config", config, node.name, "--json", timeout=240)
    assert ran.returncode == 0, ran
    outcome = ran.json
    assert outcome["outcome"] == "remediated", outcome
    return outcome


def _files(*parts):
    return [os.path.join(root, name) for root, _, names in os.walk(os.path.join(*parts)) for name in names]


def restart_damaged(node, damage):
    node.kill()
    damage()
    node.truncate_log()
    node.start(wait=False)


def test_truncated_schema_fails_the_boot_and_is_reset_from_the_baseline(run_cli, config_a, state_dir, healthy_a):
    config = config_a()
    baseline_taken(run_cli, config, state_dir, healthy_a)      # and the last reading of its queues
    started = time.monotonic()
    restart_damaged(healthy_a, lambda: os.truncate(os.path.join(healthy_a.mnesia, "schema.DAT"), 100))
    result = wait_state(run_cli, config, ("boot_failed",))
    detected = time.monotonic() - started
    assert result["summary"].startswith(f"{healthy_a.name} boot failed: ** FATAL ** mnesia_tm crashed: "
                                        '{{"Cannot read schema"')
    # Its queue's 200 persistent messages live only in this node's store: refused, named.
    ran = run_cli("remediate", "rabbitmq-node", "--config", config, healthy_a.name, "--json", timeout=120)
    assert (ran.returncode, ran.json["outcome"], ran.json["guard"]) == (1, "refused", "data_at_risk"), ran
    assert "classic queue 'compute' in vhost 'nova' (200 messages at the last reading" in ran.json["reason"]
    assert os.path.getsize(os.path.join(healthy_a.mnesia, "schema.DAT")) == 100        # untouched
    config = config_a(accept=[("nova", "compute")])                # the operator accepts that loss
    outcome = remediate(run_cli, config, healthy_a)
    notes = " ".join(outcome["notes"])
    assert ".corrupt-" in notes and "imported" in notes
    assert [d for d in os.listdir(os.path.dirname(healthy_a.mnesia)) if ".corrupt-" in d]   # kept
    assert_definitions_back(healthy_a)
    cycle = time.monotonic() - started
    print(f"\ncycle schema.DAT truncated: detect {detected:.1f}s, whole {cycle:.1f}s")
    assert cycle < CYCLE_LIMIT


def test_truncated_latest_log_loses_definitions_silently_and_they_come_back(run_cli, config_a, state_dir, healthy_a):
    # Check as the 'openstack' user: it vanishes with the data, so the API answers
    # 401 and the check has to read the users with rabbitmqctl.
    config = config_a(user="openstack")
    env = {"AUTOREMEDY_RABBITMQ_PASSWORD": "s3cret"}
    first = run_cli("check", "rabbitmq-node", "--config", config, env=env)
    assert first.returncode == 0, first
    started = time.monotonic()
    log = os.path.join(healthy_a.mnesia, "LATEST.LOG")
    restart_damaged(healthy_a, lambda: os.truncate(log, min(5000, os.path.getsize(log))))
    healthy_a.wait_running(90)
    deadline = time.monotonic() + 30
    while True:
        ran = run_cli("check", "rabbitmq-node", "--config", config, "--format", "json", env=env)
        if ran.json["data"].get("state") == "definitions_lost" or time.monotonic() > deadline:
            break
        time.sleep(1)
    result = ran.json
    assert result["state"] == "CRITICAL", result
    assert "running but definitions vanished" in result["summary"]
    assert "users openstack" in result["summary"]
    assert any("(401); definitions read with rabbitmqctl" in d or "(401)" in d for d in result["details"])
    detected = time.monotonic() - started
    ran = run_cli("remediate", "rabbitmq-node", "--config", config, healthy_a.name, "--json",
                  env=env, timeout=240)
    assert ran.json["outcome"] == "remediated", ran
    assert "snapshot" in " ".join(ran.json["notes"])            # exported before anything else
    steps = [s["step"] for s in ran.json["plan"]]               # a running node is never reset
    assert not any(s.startswith(("stop", "move")) for s in steps), steps
    assert steps[1].startswith("import the baseline's missing definitions (")
    assert_definitions_back(healthy_a)
    cycle = time.monotonic() - started
    print(f"\ncycle LATEST.LOG truncated: detect {detected:.1f}s, whole {cycle:.1f}s")
    assert cycle < CYCLE_LIMIT


def test_deleted_schema_boots_an_empty_node_which_is_seen_and_restored(run_cli, config_a, state_dir, healthy_a):
    config = config_a()
    baseline_taken(run_cli, config, state_dir, healthy_a)
    started = time.monotonic()
    restart_damaged(healthy_a, lambda: os.remove(os.path.join(healthy_a.mnesia, "schema.DAT")))
    healthy_a.wait_running(90)
    healthy_a.wait_api()
    result = wait_state(run_cli, config, ("definitions_lost",), timeout=30)
    assert "vhosts nova" in result["summary"] and "users openstack" in result["summary"]
    assert "queues (0 left of 1 durable in the baseline)" in result["summary"]
    remediate(run_cli, config, healthy_a)
    assert_definitions_back(healthy_a)
    cycle = time.monotonic() - started
    print(f"\ncycle schema.DAT deleted: whole {cycle:.1f}s")
    assert cycle < CYCLE_LIMIT


def test_a_node_stuck_booting_past_the_timeout_is_killed_and_reset(run_cli, config_a, state_dir, healthy_a):
    config = config_a(boot_timeout=15, accept=[("nova", "compute")])
    baseline_taken(run_cli, config, state_dir, healthy_a)
    # The hang (measured: 4 of 4 runs) comes from garbage in a queue index segment
    # (*.idx): the queue process crashes in journal_minus_segment1 and the boot waits on
    # it for good. Segments are written once the queue idles, so wait for one.
    rh.publish("nova", "compute", [b"y" * 200] * 500, port=healthy_a.amqp_port)
    deadline = time.monotonic() + 30
    while not [f for f in _files(healthy_a.mnesia, "msg_stores") if f.endswith(".idx") and os.path.getsize(f)]:
        assert time.monotonic() < deadline, "no queue index segment was written in 30s"
        time.sleep(0.2)
    started = time.monotonic()

    def garbage():
        for path in _files(healthy_a.mnesia, "msg_stores"):
            with open(path, "r+b") as handle:
                handle.write(b"GARBAGE!" * 8)
    restart_damaged(healthy_a, garbage)
    result = wait_state(run_cli, config, ("stuck_booting",), timeout=60)
    assert "stuck booting for" in result["summary"] and "(limit 15s)" in result["summary"]
    detected = time.monotonic() - started
    outcome = remediate(run_cli, config, healthy_a)
    assert "killed" in " ".join(outcome["notes"])
    assert outcome["reach"][1] == {"kind": "queue", "names": ["nova/compute"], "how": "standalone: every "
                                   "queue is on the target", "watched": None}
    assert_definitions_back(healthy_a)
    cycle = time.monotonic() - started
    print(f"\ncycle msg_stores garbage (stuck booting): detect {detected:.1f}s, whole {cycle:.1f}s")
    assert cycle < CYCLE_LIMIT


def test_a_dead_node_without_corruption_is_only_started(run_cli, config_a, state_dir, healthy_a):
    config = config_a()
    baseline_taken(run_cli, config, state_dir, healthy_a)
    healthy_a.kill()
    result = check(run_cli, config)
    assert result["data"]["state"] == "not_running", result
    assert result["summary"].startswith(f"{healthy_a.name} not running (no beam process)")
    aside = set(os.listdir(os.path.dirname(healthy_a.mnesia)))
    outcome = remediate(run_cli, config, healthy_a)
    assert [s["step"] for s in outcome["plan"]] == [f"start {healthy_a.name}: rabbitmq-server -detached"]
    assert set(os.listdir(os.path.dirname(healthy_a.mnesia))) == aside          # nothing moved aside
    assert_definitions_back(healthy_a)


def test_an_alarm_is_critical_but_no_reason_to_reset(run_cli, config_a, state_dir, healthy_a):
    config = config_a()
    baseline_taken(run_cli, config, state_dir, healthy_a)
    assert healthy_a.ctl("set_disk_free_limit", "100000GB").returncode == 0
    try:
        result = wait_state(run_cli, config, ("alarm",), timeout=30)
        assert f"{healthy_a.name} disk alarm (publishers blocked)" in result["summary"]
        ran = run_cli("remediate", "rabbitmq-node", "--config", config, healthy_a.name, "--json")
        assert ran.returncode == 1
        assert ran.json["outcome"] == "refused" and ran.json["guard"] == "precondition"
        assert "not something this remediation fixes" in ran.json["reason"]
    finally:
        healthy_a.ctl("set_disk_free_limit", "50MB")


def test_no_baseline_no_reset(run_cli, config_a, make_config, tmp_path, healthy_a):
    config = config_a(definitions_baseline=str(tmp_path / "none.json"))
    healthy_a.kill()
    os.truncate(os.path.join(healthy_a.mnesia, "schema.DAT"), 100)
    healthy_a.truncate_log()
    healthy_a.start(wait=False)
    wait_state(run_cli, config, ("boot_failed",))
    ran = run_cli("remediate", "rabbitmq-node", "--config", config, healthy_a.name, "--json")
    assert ran.returncode == 1
    assert ran.json["outcome"] == "refused" and ran.json["guard"] == "baseline"
    assert os.path.exists(os.path.join(healthy_a.mnesia, "schema.DAT"))       # untouched
    healthy_a.kill()           # leave it for healthy_a to rebuild
