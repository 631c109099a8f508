"""The rabbitmq-node remediation's decisions, without a broker: the members'
answers come from a fake CLI (cluster_status per node, shaped like 3.10.8's
real output), the queue listing from the API double. Every refusal names what
it protects; the real thing is in test_node_cluster.py."""
import json
import time

import pytest

from autoremedy.config import Config
from autoremedy.contract.execute import Completed
from autoremedy.contract.guard import Refused
from autoremedy.remediations import _rabbitmq_cluster as cluster
from autoremedy.contract.result import Result, Status

BASELINE = {"vhosts": [{"name": "/"}], "users": [{"name": "guest"}],
            "queues": [{"vhost": "/", "name": "cq-a", "durable": True, "arguments": {}}]}


def status(members, running, disc=None, partitions=None):
    """A cluster_status --formatter json answer (the fields 3.10.8 prints)."""
    disc = members if disc is None else disc
    return {"disk_nodes": disc, "ram_nodes": [m for m in members if m not in disc],
            "running_nodes": running, "partitions": partitions or {}, "alarms": [],
            "listeners": {}}


class Cli:
    """rabbitmqctl & co.: answers by (sub-command, node); records the calls."""

    def __init__(self, statuses=None, **answers):
        self.statuses = statuses or {}
        self.answers = answers
        self.calls = []
        self.envs = []

    def __call__(self, argv, timeout=None, env=None, input=None, **kw):
        self.calls.append(argv)
        self.envs.append(env)
        if argv[0] == "rabbitmq-server":
            return Completed(argv, 0, "", "", 0.04)
        node, sub = argv[3], argv[4]
        if sub == "cluster_status":
            answer = self.statuses.get(node)
            if answer is None:
                return Completed(argv, 69, "", "Error: unable to perform an operation on node", 0.6)
            return Completed(argv, 0, json.dumps(answer), "", 0.6)
        rc, out = self.answers.get(sub, (69, ""))
        return Completed(argv, rc, out, "" if rc == 0 else "Error: node not running", 0.6)


@pytest.fixture
def planner(make_config, double, tmp_path):
    from autoremedy.remediations import rabbitmq_node

    def build(state, statuses=None, queues=(), cluster_nodes=(), accept=(), baseline=True, ledger=None,
              node="a@h", vanished=None, **answers):
        base = tmp_path / "baseline.json"
        if baseline:
            base.write_text(json.dumps(BASELINE))
        double.set("/api/overview", {"node": "b@h"})
        double.set("/api/queues", [q for q in queues if q.get("state") != "unlisted"])
        double.set("/api/definitions", {"queues": [{"vhost": q["vhost"], "name": q["name"], "durable": True,
                                                    "arguments": {"x-queue-type": q["type"]}} for q in queues]})
        section = {"api_url": double.url, "cluster_nodes": list(cluster_nodes),
                   "definitions_baseline": str(base), "mnesia_dir": str(tmp_path / "mnesia"),
                   "pid_file": str(tmp_path / "none.pid")}
        if node:
            section["node"] = node
        config = Config.load(make_config({
            "rabbitmq": section,
            "remediations": {"rabbitmq-node": {"enabled": True,
                                               "accept_queue_loss": [dict(vhost="/", name=n) for n in accept]}}}),
            environ={})
        cli = Cli(statuses, **answers)
        remediation = rabbitmq_node.REMEDIATION(config, runner=cli)
        if ledger is not None:
            from autoremedy import statefile
            from autoremedy.checks.rabbitmq_node import ledger_path
            statefile.save(ledger_path(remediation.rmq, "a@h"), {"node": "a@h", "at": time.time() - 30,
                                                                 "queues": ledger})
        data = {"state": state, "nodes": {"a@h": True, "b@h": True}}
        if vanished:
            data["vanished"] = vanished
        if state == "partitioned":
            data["partitions"] = {"b@h": ["a@h"]}
        status_ = Status.OK if state == "running" else Status.CRITICAL
        remediation.probe = lambda extra=(): Result("rabbitmq-node", f"{state} here", status=status_, data=data)
        return remediation, cli
    return build


def record(tmp_path, *nodes):
    """The node's own cluster_nodes.config, as rabbit writes it."""
    mnesia = tmp_path / "mnesia"
    mnesia.mkdir(exist_ok=True)
    atoms = ",".join(f"'{n}'" for n in nodes)
    (mnesia / "cluster_nodes.config").write_text(f"{{[{atoms}],[{atoms}]}}.\n")


ABC = ["a@h", "b@h", "c@h"]


def classic(name, node, messages=None, state="running"):
    row = {"vhost": "/", "name": name, "type": "classic", "node": node, "durable": True, "state": state}
    if messages is not None:
        row["messages"] = messages
    return row


def quorum(name, members, online, messages=100):
    return {"vhost": "/", "name": name, "type": "quorum", "members": members, "online": online,
            "leader": online[0], "messages": messages, "durable": True, "state": "running"}


def refusal(remediation):
    with pytest.raises(Refused) as err:
        remediation.plan("a@h")
    return err.value


def test_the_own_record_is_read_as_rabbit_writes_it(tmp_path):
    record(tmp_path, "a@h", "b@h")
    assert cluster.own_record(str(tmp_path / "mnesia")) == (["a@h", "b@h"], ["a@h", "b@h"])
    assert cluster.own_record(str(tmp_path / "nowhere")) is None


def test_healthy_is_nothing_to_do(planner):
    remediation, _ = planner("running")
    assert remediation.plan("a@h") == []


@pytest.mark.parametrize("state", ["alarm", "exhausted", "cluster_degraded", "app_stopped", "booting",
                                   "membership_mismatch", "not_member"])
def test_states_this_remediation_does_not_fix_are_refused(planner, state):
    err = refusal(planner(state)[0])
    assert err.guard == "precondition" and "not something this remediation fixes" in err.reason


def test_a_partition_is_refused_with_its_map(planner):
    err = refusal(planner("partitioned")[0])
    assert err.guard == "partition" and '{"b@h": ["a@h"]}' in err.reason


def test_a_dead_standalone_node_is_only_started(planner):
    remediation, _ = planner("not_running")
    assert [s.description for s in remediation.plan("a@h")] == ["start a@h: rabbitmq-server -detached"]


def test_a_dead_member_of_a_dead_cluster_is_not_started(planner, tmp_path):
    record(tmp_path, *ABC)
    err = refusal(planner("not_running")[0])
    assert err.guard == "quorum" and "no other member of a@h's cluster answers" in err.reason


def test_standalone_without_a_baseline_is_refused(planner):
    err = refusal(planner("boot_failed", baseline=False)[0])
    assert err.guard == "baseline"


def test_standalone_queues_at_their_last_reading_are_named(planner):
    ledger = [{"vhost": "/", "name": "cq-a", "type": "classic", "home": "a@h", "members": [], "messages": 100}]
    err = refusal(planner("boot_failed", ledger=ledger)[0])
    assert err.guard == "data_at_risk"
    assert "classic queue 'cq-a' in vhost '/' (100 messages at the last reading 30s ago)" in err.reason


def test_standalone_with_the_queue_accepted_resets_and_imports_the_baseline(planner):
    remediation, _ = planner("boot_failed", accept=["cq-a"])
    steps = [s.description.split(" ")[0] for s in remediation.plan("a@h")]
    assert steps == ["keep", "stop", "move", "start", "import"]
    reach = remediation.reach("a@h", [])
    assert [(r.kind, r.names) for r in reach] == [("node", ["a@h"]), ("queue", ["/cq-a"])]


def test_most_of_the_cluster_down_is_refused(planner, tmp_path):
    record(tmp_path, *ABC)
    remediation, cli = planner("boot_failed", statuses={"b@h": status(ABC, ["b@h"])})
    err = refusal(remediation)
    assert err.guard == "quorum" and "2 of 3 cluster nodes are down" in err.reason
    assert [c[3] for c in cli.calls if c[4] == "cluster_status"] == ["b@h", "c@h"]


def test_membership_comes_from_the_cluster_and_config_is_only_a_cross_check(planner, tmp_path):
    record(tmp_path, "a@h", "b@h")
    answer = status(ABC, ["b@h", "c@h"])
    err = refusal(planner("boot_failed", statuses={"b@h": answer, "c@h": answer}, cluster_nodes=["a@h", "b@h"])[0])
    assert err.guard == "membership"
    assert "rabbitmq.cluster_nodes (a@h, b@h) differs from the cluster's own view: members a@h, b@h, c@h" \
        in err.reason


def test_a_node_the_cluster_does_not_know_is_refused(planner, tmp_path):
    record(tmp_path, "a@h", "b@h")
    err = refusal(planner("boot_failed", statuses={"b@h": status(["b@h"], ["b@h"])})[0])
    assert err.guard == "membership" and "a@h is not a member of the cluster" in err.reason


def test_members_that_disagree_are_refused(planner, tmp_path):
    record(tmp_path, *ABC)
    err = refusal(planner("boot_failed", statuses={"b@h": status(ABC, ["b@h", "c@h"]),
                                                "c@h": status(["b@h", "c@h"], ["b@h", "c@h"])})[0])
    assert err.guard == "membership" and "disagree" in err.reason


def test_an_unresolved_partition_among_the_others_is_refused(planner, tmp_path):
    record(tmp_path, *ABC)
    answer = status(ABC, ["b@h"], partitions={"b@h": ["c@h"]})
    err = refusal(planner("boot_failed", statuses={"b@h": answer})[0])
    assert err.guard == "partition" and '{"b@h": ["c@h"]}' in err.reason


def test_the_cluster_saying_the_target_runs_is_refused(planner, tmp_path):
    record(tmp_path, *ABC)
    answer = status(ABC, ABC)
    err = refusal(planner("stuck_booting", statuses={"b@h": answer, "c@h": answer})[0])
    assert err.guard == "running"


def test_no_other_running_disc_node_is_refused(planner, tmp_path):
    record(tmp_path, *ABC)
    answer = status(ABC, ["b@h", "c@h"], disc=["a@h"])
    err = refusal(planner("boot_failed", statuses={"b@h": answer, "c@h": answer})[0])
    assert err.guard == "disc_node"


def test_every_queue_only_the_node_holds_is_named_with_its_count(planner, tmp_path):
    record(tmp_path, *ABC)
    answer = status(ABC, ["b@h", "c@h"])
    queues = [classic("cq-a", "a@h", state="down"), classic("cq-b", "b@h", 100),
              quorum("qq-safe", ABC, ["b@h", "c@h"]),
              quorum("qq-lost", ["a@h", "b@h", "c@h"], ["b@h"], messages=42)]
    ledger = [{"vhost": "/", "name": "cq-a", "type": "classic", "home": "a@h", "members": [], "messages": 100}]
    err = refusal(planner("boot_failed", statuses={"b@h": answer, "c@h": answer}, queues=queues, ledger=ledger)[0])
    assert err.guard == "data_at_risk"
    assert "classic queue 'cq-a' in vhost '/' (100 messages at the last reading 30s ago)" in err.reason
    assert "quorum queue 'qq-lost' in vhost '/' (42 messages; 1 of 3 replicas online elsewhere)" in err.reason
    assert "cq-b" not in err.reason and "qq-safe" not in err.reason


def test_a_quorum_queue_the_listing_leaves_out_is_at_risk(planner, tmp_path):
    """3.10.8 leaves a quorum queue without a majority online out of /api/queues;
    /api/definitions still has it: it is named, with its last count."""
    record(tmp_path, "a@h", "b@h")
    answer = status(["a@h", "b@h"], ["b@h"])
    row = dict(quorum("qq-a", ["a@h", "b@h"], ["b@h"]), state="unlisted")
    ledger = [{"vhost": "/", "name": "qq-a", "type": "quorum", "members": ["a@h", "b@h"], "messages": 100}]
    err = refusal(planner("boot_failed", statuses={"b@h": answer}, queues=[row], ledger=ledger)[0])
    assert ("quorum queue 'qq-a' in vhost '/' (100 messages at the last reading 30s ago; not listed: "
            "no majority online)") in err.reason


def test_a_queue_never_read_is_at_risk_with_its_count_unknown(planner, tmp_path):
    record(tmp_path, *ABC)
    answer = status(ABC, ["b@h", "c@h"])
    err = refusal(planner("boot_failed", statuses={"b@h": answer, "c@h": answer},
                       queues=[classic("cq-a", "a@h", state="down")])[0])
    assert "classic queue 'cq-a' in vhost '/' (messages unknown, no reading)" in err.reason


def test_empty_replicated_or_accepted_queues_let_the_reset_proceed(planner, tmp_path):
    record(tmp_path, *ABC)
    answer = status(ABC, ["b@h", "c@h"])
    queues = [classic("cq-a", "a@h", state="down"), classic("cq-empty", "a@h", state="down"),
              quorum("qq-safe", ABC, ["b@h", "c@h"])]
    ledger = [{"vhost": "/", "name": "cq-a", "type": "classic", "home": "a@h", "members": [], "messages": 100},
              {"vhost": "/", "name": "cq-empty", "type": "classic", "home": "a@h", "members": [], "messages": 0}]
    remediation, _ = planner("boot_failed", statuses={"b@h": answer, "c@h": answer}, queues=queues,
                          ledger=ledger, accept=["cq-a"])
    steps = [s.description for s in remediation.plan("a@h")]
    assert steps == ["export the cluster's definitions from b@h to a snapshot (GET /api/definitions)",
                     "stop a@h (its boot is broken: end the beam process)",
                     f"move {tmp_path / 'mnesia'} aside (kept, never deleted)",
                     "start a@h: rabbitmq-server -detached",
                     "forget a@h on b@h, then reset and join_cluster b@h",
                     "add a@h back to the replicas of 1 queue(s)",
                     "import the snapshot on b@h"]
    reach = {r.kind: r.names for r in remediation.reach("a@h", [])}
    assert reach == {"node": ["a@h"], "queue": ["/cq-a", "/cq-empty", "/qq-safe"]}
    assert [i.name for i in remediation.invariants("a@h", [])] == [
        "membership of the other nodes", "running nodes other than the target",
        "messages in every queue outside the plan"]


def test_a_queue_count_alone_never_resets_nor_restores_a_running_node(planner):
    err = refusal(planner("definitions_lost", vanished={"vhosts": [], "users": [], "durable_queues": 1})[0])
    assert err.guard == "precondition" and "only the queue count dropped" in err.reason


def test_vanished_vhosts_are_restored_by_importing_only_what_is_missing(planner):
    live = {"vhosts": [{"name": "/"}], "users": [{"name": "guest", "password_hash": "new"}], "queues": []}
    baseline = {"vhosts": [{"name": "/"}, {"name": "nova"}],
                "users": [{"name": "guest", "password_hash": "old"}, {"name": "openstack"}],
                "permissions": [{"user": "openstack", "vhost": "nova", "configure": ".*"}],
                "queues": [{"vhost": "nova", "name": "compute", "durable": True}]}
    doc, names = cluster.missing_definitions(baseline, live)
    assert doc == {"vhosts": [{"name": "nova"}], "users": [{"name": "openstack"}],
                   "permissions": [{"user": "openstack", "vhost": "nova", "configure": ".*"}],
                   "queues": [{"vhost": "nova", "name": "compute", "durable": True}]}
    assert 'user ["guest"]' not in names          # a changed password is not reverted


def test_the_target_is_explicit_never_the_machines_own_broker(planner, double):
    remediation, _ = planner("boot_failed", node=None)
    assert remediation.resolve("b@h") == "b@h"             # the node api_url runs on
    remediation, _ = planner("boot_failed", node=None)
    with pytest.raises(Refused, match="'a@h' is not this node \\('b@h'\\)"):
        remediation.resolve("a@h")
    remediation, _ = planner("boot_failed", node=None)
    double.set("/api/overview", {"error": "down"}, status=503)
    with pytest.raises(Refused, match="rabbitmq.node is not set and the API at .* cannot say which node"):
        remediation.resolve("b@h")


def test_the_start_names_the_node_in_its_environment(planner):
    remediation, cli = planner("not_running")
    remediation.resolve("a@h")
    remediation.rmq.data["boot_timeout"] = 0.1
    remediation.running = lambda node: True
    remediation.start()
    assert cli.calls == [["rabbitmq-server", "-detached"]]
    assert cli.envs[0]["RABBITMQ_NODENAME"] == "a@h"


def test_no_fewer_messages_in_each_queue():
    from autoremedy.remediations.rabbitmq_node import not_fewer_each
    assert not_fewer_each({"/a": 100, "/b": None}, {"/a": 100, "/b": 0, "/c": 5})
    assert not not_fewer_each({"/a": 100}, {"/a": 99})
    assert not not_fewer_each({"/a": 100, "/b": None}, {"/a": 100})
