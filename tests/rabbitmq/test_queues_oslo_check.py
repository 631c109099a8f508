"""check rabbitmq-queues under real oslo.messaging traffic (integration).

Two real RPC servers, a client and a notifier (tests/rabbitmq/oslo_traffic.py)
in a vhost of their own. Healthy RPC queues raise nothing; a SIGKILLed RPC
server is named on the first run after the API shows its consumer gone
("RPC server gone (nova-compute on node1?)"), WARNING within --rpc-grace and
CRITICAL after; once it runs again its orphaned fanout queue (x-expires) is
reported without an alarm, unless --orphaned asks for one.
"""
import pytest

import oslo_traffic
import rmq_helpers as rh
from own_vhost import vhost  # noqa: F401  (this area's own vhosts)

pytestmark = pytest.mark.integration

NOT_NOTIFY = ("--exclude", r"^(versioned_)?notifications\.")


def check(run_cli, config, vhost, *args):
    return run_cli("check", "rabbitmq-queues", "--config", config, "--vhost", vhost, *args)


def fanouts(shared, vhost):
    return {r["name"]: r.get("consumers") for r in shared.call(
        "GET", f"queues/{rh.q(vhost)}?columns=name,consumers") if "_fanout_" in r["name"]}


def test_a_killed_rpc_server_is_named_and_its_orphaned_fanout_raises_no_alarm(
        run_cli, rmq_config, shared, vhost, tmp_path):
    config = rmq_config()
    traffic = oslo_traffic.Traffic(vhost, tmp_path).start()
    try:
        shared.wait_api(vhost, "compute.node1", lambda r: r.get("consumers") == 1)
        shared.wait_api(vhost, "compute", lambda r: r.get("consumers") == 2)
        for _ in range(3):                                    # healthy RPC queues: no false alarm
            ran = check(run_cli, config, vhost, *NOT_NOTIFY, "--format", "json")
            assert ran.returncode == 0, ran
            kinds = {q["name"]: q.get("kind") for q in ran.json["data"]["queues"]}
            assert kinds["compute"] == "topic" and kinds["compute.node1"] == "server"
        # the notifications without a consumer keep today's verdict
        shared.wait_api(vhost, "notifications.info", lambda r: r["messages"] > 0)
        ran = check(run_cli, config, vhost, "--include", r"^notifications\.info$")
        assert ran.returncode == 1 and "no consumers" in ran.stdout, ran
        old = set(fanouts(shared, vhost))

        traffic.kill("node1")
        shared.wait_api(vhost, "compute.node1", lambda r: r.get("consumers") == 0)
        # A cast node1 had taken when it was killed is lost: oslo.messaging's RPC server
        # acknowledges a message before it dispatches it (oslo_messaging/rpc/server.py: at most
        # once). Those sent from here on find no consumer and must wait in the queue.
        dead_from = len(traffic.sent_casts())
        ran = check(run_cli, config, vhost, *NOT_NOTIFY)          # the first run after the lag
        assert ran.returncode == 1, ran
        assert f"{vhost}/compute.node1 RPC server gone" in ran.stdout
        assert "(nova-compute on node1?)" in ran.stdout
        ran = check(run_cli, config, vhost, *NOT_NOTIFY, "--rpc-grace", "0s")
        assert ran.returncode == 2 and "RPC server gone" in ran.stdout, ran

        traffic.start_server("node1")
        shared.wait_api(vhost, "compute.node1", lambda r: r.get("consumers") == 1)
        now = fanouts(shared, vhost)
        orphan = [n for n in old if now.get(n) == 0]
        assert len(orphan) == 1, now                          # node1's old fanout queue stays
        ran = check(run_cli, config, vhost, *NOT_NOTIFY)
        assert ran.returncode == 0, ran                       # healthy again: no alarm for the orphan
        assert f"1 orphaned RPC queue(s), no alarm: {vhost}/{orphan[0]} orphaned, expires in" \
            in ran.stdout
        ran = check(run_cli, config, vhost, *NOT_NOTIFY, "--orphaned", "warning")
        assert ran.returncode == 1 and f"{vhost}/{orphan[0]} orphaned, expires in" in ran.stdout
        # the casts aimed at node1 while it was dead waited in compute.node1 and arrive
        # (the restarted server drains them, and the client keeps casting meanwhile)
        assert [c for to, c in traffic.sent_casts()[dead_from:] if to == "node1"]
        assert traffic.lost_casts(target="node1", since=dead_from) == []
    finally:
        traffic.stop()
