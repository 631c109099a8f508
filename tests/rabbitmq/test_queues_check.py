"""check rabbitmq-queues against the real shared broker (integration): flooded
queues go WARNING then CRITICAL, orphaned queues raise the no-consumer alarm,
stuck consumers and growth are seen, selection works, the AMQP fallback counts
exactly, and Zabbix gets its LLD and values."""
import json
import time

import pytest

import rmq_helpers as rh
from own_vhost import vhost  # noqa: F401  (this area's own vhosts)

pytestmark = pytest.mark.integration


def check(run_cli, config, *args):
    return run_cli("check", "rabbitmq-queues", "--config", config, *args)


def test_a_flooded_queue_goes_warning_then_critical_naming_the_worst_first(run_cli, rmq_config, vhost, shared):
    config = rmq_config()
    rh.declare(vhost, "orders", "quiet")
    rh.flood(vhost, "orders", 1500)
    shared.wait_api(vhost, "orders", lambda r: r["messages"] >= 1500)
    ran = check(run_cli, config, "--vhost", vhost, "-w", "1000", "-c", "5000", "--no-consumers", "off")
    assert ran.returncode == 1, ran
    assert ran.stdout.startswith(f"RABBITMQ-QUEUES WARNING: 1 of 2 queues: {vhost}/orders 1500 msgs (warn >1000)")
    assert f"'{vhost}/orders'=1500;1000;5000;0" in ran.stdout
    assert "'queues'=2;;;0" in ran.stdout and "'alerting'=1;;;0" in ran.stdout

    rh.declare(vhost, "billing")
    rh.flood(vhost, "billing", 6000)
    rh.flood(vhost, "orders", 4000)
    shared.wait_api(vhost, "billing", lambda r: r["messages"] >= 6000)
    shared.wait_api(vhost, "orders", lambda r: r["messages"] >= 5500)
    ran = check(run_cli, config, "--vhost", vhost, "-w", "1000", "-c", "5000", "--no-consumers", "off")
    assert ran.returncode == 2, ran
    head = ran.stdout.split(" | ")[0]
    # both critical; the deeper one first
    assert head == (f"RABBITMQ-QUEUES CRITICAL: 2 of 3 queues: {vhost}/billing 6000 msgs (crit >5000); "
                    f"{vhost}/orders 5500 msgs (crit >5000)")


def test_stopping_the_consumers_raises_the_no_consumer_alarm(run_cli, rmq_config, vhost, shared):
    config = rmq_config()
    rh.declare(vhost, "notifications.info")
    rh.flood(vhost, "notifications.info", 50)
    conn = rh.amqp(vhost)
    ch = conn.channel()
    ch.basic_qos(prefetch_count=5)
    ch.basic_consume("notifications.info", lambda *a: None)   # holds 5 unacked, never acks
    conn.process_data_events(time_limit=0.5)
    shared.wait_api(vhost, "notifications.info", lambda r: r.get("consumers") == 1)
    ran = check(run_cli, config, "--vhost", vhost)
    assert ran.returncode == 0, ran
    assert ran.stdout.startswith("RABBITMQ-QUEUES OK: 1 queues OK, 50 msgs")

    conn.close()                                              # the consumer dies: all 50 are ready again
    shared.wait_api(vhost, "notifications.info", lambda r: r.get("consumers") == 0)
    ran = check(run_cli, config, "--vhost", vhost)
    assert ran.returncode == 1, ran
    assert f"{vhost}/notifications.info 50 msgs, no consumers" in ran.stdout
    ran = check(run_cli, config, "--vhost", vhost, "--no-consumers", "critical")
    assert ran.returncode == 2, ran
    ran = check(run_cli, config, "--vhost", vhost, "--no-consumers-min", "100")
    assert ran.returncode == 0, ran


def test_a_consumer_that_holds_messages_and_acks_nothing_is_stuck(run_cli, rmq_config, vhost, shared):
    config = rmq_config()
    rh.declare(vhost, "compute")
    rh.flood(vhost, "compute", 40)
    conn = rh.amqp(vhost)
    try:
        ch = conn.channel()
        ch.basic_qos(prefetch_count=10)
        ch.basic_consume("compute", lambda *a: None)
        conn.process_data_events(time_limit=0.5)
        deadline = time.monotonic() + 30
        while True:   # the deliver rate decays to 0 only after a few stats samples, and
            # until the consumer shows in the statistics the queue reads "no consumers" (also 1)
            ran = check(run_cli, config, "--vhost", vhost, "--stuck-consumers", "warning")
            if "consumer(s) stuck" in ran.stdout or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert ran.returncode == 1, ran
        assert f"{vhost}/compute 1 consumer(s) stuck: 10 unacked, no acks" in ran.stdout
    finally:
        conn.close()


def test_growth_is_measured_between_runs_from_the_state_file(run_cli, rmq_config, vhost, shared, state_dir):
    config = rmq_config()
    rh.declare(vhost, "events")
    rh.flood(vhost, "events", 10)
    shared.wait_api(vhost, "events", lambda r: r["messages"] == 10)
    args = ("--vhost", vhost, "--growth-warning", "5", "--no-consumers", "off")
    first = check(run_cli, config, *args)
    assert first.returncode == 0, first                      # one reading: no rate yet
    rh.flood(vhost, "events", 3000)
    shared.wait_api(vhost, "events", lambda r: r["messages"] == 3010)
    second = check(run_cli, config, *args, "--format", "json")
    assert second.returncode == 1, second
    row = second.json["data"]["queues"][0]
    assert row["growth"] > 5 and "growing +" in second.json["summary"]
    assert list((state_dir / "checks").glob("rabbitmq-queues-*.json"))


def test_vhost_and_name_selection(run_cli, rmq_config, vhost, shared):
    config = rmq_config()
    rh.declare(vhost, "nova.compute", "nova.scheduler", "neutron.agent")
    for name in ("nova.compute", "nova.scheduler", "neutron.agent"):
        rh.flood(vhost, name, 20)
    shared.wait_api(vhost, "neutron.agent", lambda r: r["messages"] == 20)
    # one --include: the API filters server side (paginated listing)
    ran = check(run_cli, config, "--vhost", vhost, "--include", "^nova\\.", "--exclude", "scheduler$",
                "-w", "10", "--format", "json")
    assert [q["name"] for q in ran.json["data"]["queues"]] == ["nova.compute"]
    ran = check(run_cli, config, "--vhost", vhost, "--include", "agent", "--include", "compute",
                "--format", "json", "-w", "10")
    assert sorted(q["name"] for q in ran.json["data"]["queues"]) == ["neutron.agent", "nova.compute"]
    ran = check(run_cli, config, "--exclude-vhost", vhost, "--include", "^neutron\\.agent$")
    assert vhost not in ran.stdout


def test_amqp_fallback_counts_exactly_and_says_so(run_cli, rmq_config, vhost):
    rh.declare(vhost, "orphan")
    rh.flood(vhost, "orphan", 1234)
    port = rh.closed_port()
    config = rmq_config({"api_url": f"http://127.0.0.1:{port}",
                         "fallback_queues": [{"vhost": vhost, "name": "orphan"},
                                             {"vhost": vhost, "name": "never-declared"}]})
    ran = check(run_cli, config, "-w", "1000", "-c", "2000")
    assert ran.returncode == 1, ran
    assert ran.stdout.startswith(f"RABBITMQ-QUEUES WARNING: 2 of 2 queues: {vhost}/orphan 1234 msgs (warn >1000), "
                                 f"no consumers; {vhost}/never-declared does not exist (via AMQP passive "
                                 f"declares: management API http://127.0.0.1:{port} unreachable: connection refused)")


def test_amqp_can_be_asked_for_explicitly(run_cli, rmq_config, vhost):
    rh.declare(vhost, "a")
    rh.flood(vhost, "a", 5)
    ran = check(run_cli, rmq_config(), "--via", "amqp", "--vhost", vhost, "--fallback-queue", "a",
                "--format", "json")
    assert ran.json["data"]["via"] == "amqp"
    assert ran.json["data"]["queues"][0]["messages"] == 5


def test_zabbix_discovery_and_values(run_cli, rmq_config, vhost, shared):
    config = rmq_config()
    rh.declare(vhost, "x", "y")
    rh.flood(vhost, "y", 7)
    shared.wait_api(vhost, "y", lambda r: r["messages"] == 7)
    ran = check(run_cli, config, "--discover", "--vhost", vhost)
    assert ran.returncode == 0
    assert json.loads(ran.stdout) == [
        {"{#QUEUE.ID}": f"{vhost}/x", "{#QUEUE}": "x", "{#VHOST}": vhost},
        {"{#QUEUE.ID}": f"{vhost}/y", "{#QUEUE}": "y", "{#VHOST}": vhost}]
    deadline = time.monotonic() + 15
    while True:     # the consumer count (no consumers: WARNING) can trail the depth in the API
        ran = check(run_cli, config, "--vhost", vhost, "--format", "zabbix")
        assert ran.returncode == 0
        value = json.loads(ran.stdout)
        if value["state"] == "WARNING" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert value["state"] == "WARNING", value
    assert {q["id"]: q["messages"] for q in value["data"]["queues"]} == {f"{vhost}/x": 0, f"{vhost}/y": 7}
    ran = check(run_cli, config, "--vhost", vhost, "--format", "zabbix", "--field", f"{vhost}/y")
    assert ran.stdout.strip() == "7"


def test_a_monitoring_user_with_a_permission_entry_is_enough_for_the_checks(run_cli, rmq_config, vhost, shared):
    """What docs/rabbitmq.md promises about rights, on the real broker: the
    monitoring tag plus a permission entry (empty patterns will do) on the vhost."""
    user = f"ar-mon-{vhost[-6:]}"
    shared.call("PUT", f"users/{user}", {"password": "pw", "tags": "monitoring"})
    try:
        shared.call("PUT", f"permissions/{rh.q(vhost, user)}", {"configure": "", "write": "", "read": ""})
        rh.declare(vhost, "seen")
        rh.flood(vhost, "seen", 3)
        shared.wait_api(vhost, "seen", lambda r: r["messages"] == 3)
        config = rmq_config({"user": user})
        env = {"AUTOREMEDY_RABBITMQ_PASSWORD": "pw"}
        ran = run_cli("check", "rabbitmq-queues", "--config", config, "--vhost", vhost, "--format", "json", env=env)
        assert [(q["name"], q["messages"]) for q in ran.json["data"]["queues"]] == [("seen", 3)]
        ran = run_cli("check", "rabbitmq-node", "--config", config, "--cluster", env=env)
        assert ran.returncode == 1, ran
        assert ran.stdout.startswith(f"RABBITMQ-NODE WARNING: cannot export the definitions baseline: user "
                                     f"'{user}' is not an administrator (HTTP 401)")
    finally:
        shared.call("DELETE", f"users/{user}", ok=(204, 404))
