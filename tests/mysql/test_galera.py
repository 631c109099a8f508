"""check galera and remediate galera: verdict tables, the bootstrap decision, then quorum loss on a real 2-node cluster."""
import argparse
import os
import re

import pytest

from autoremedy.audit import Audit
from autoremedy.checks import galera as check
from autoremedy.config import Config
from autoremedy.ranges import Range
from autoremedy.remediation import Trigger, perform
from autoremedy.remediations import galera as rem
from autoremedy.result import Status

import mysql_instances as mi

# SHOW GLOBAL STATUS values measured on this machine (reference §5 and tests/mysql runs).
HEALTHY = {"wsrep_provider_name": "Galera", "wsrep_cluster_status": "Primary", "wsrep_cluster_size": "2",
           "wsrep_local_state": "4", "wsrep_local_state_comment": "Synced", "wsrep_ready": "ON",
           "wsrep_connected": "ON", "wsrep_desync_count": "0", "wsrep_local_recv_queue": "0",
           "wsrep_local_send_queue": "0", "wsrep_last_committed": "5", "wsrep_local_cert_failures": "0"}
PEER_KILLED = dict(HEALTHY, wsrep_cluster_status="non-Primary", wsrep_cluster_size="1", wsrep_local_state="0",
                   wsrep_local_state_comment="Initialized", wsrep_ready="OFF")
DESYNCED = dict(HEALTHY, wsrep_local_state="2", wsrep_local_state_comment="Donor/Desynced", wsrep_desync_count="1")
JOINER = dict(HEALTHY, wsrep_local_state="1", wsrep_local_state_comment="Joining: receiving State Transfer")


def args(**kw):
    base = dict(warning=None, critical=None, expected_size=None, donor="warning", fc_warning=0.1,
                fc_critical=0.5, recv_queue_warning=None, recv_queue_critical=None)
    base.update(kw)
    return argparse.Namespace(**base)


def verdict(status, a, fc=0.0):
    findings, metrics = check.judge(status, a, fc)
    worst = Status.OK
    for state in [s for s, _ in findings] + [m.status for m in metrics]:
        worst = worst.worse(state)
    return worst, [t for _, t in findings]


@pytest.mark.parametrize("status, options, expected, text", [
    (HEALTHY, {}, Status.OK, None),
    (HEALTHY, {"expected_size": 3}, Status.WARNING, "cluster size 2 of 3 expected (warn <3)"),
    (dict(HEALTHY, wsrep_cluster_size="1"), {"expected_size": 3}, Status.CRITICAL, "crit <2"),
    (PEER_KILLED, {}, Status.CRITICAL, "non-Primary component (quorum lost), size 1"),
    (PEER_KILLED, {}, Status.CRITICAL, "wsrep_ready=OFF: queries fail with error 1047"),
    (DESYNCED, {}, Status.WARNING, "local state Donor/Desynced (desync count 1"),
    (DESYNCED, {"donor": "ok"}, Status.OK, None),
    (JOINER, {}, Status.WARNING, "catching up with the cluster"),
    (dict(HEALTHY, wsrep_connected="OFF"), {}, Status.CRITICAL, "not connected to the group"),
    (dict(HEALTHY, wsrep_local_recv_queue="50"), {"recv_queue_warning": 10}, Status.WARNING, "receive queue holds 50"),
])
def test_verdict_table(status, options, expected, text):
    options = dict(options)
    if "expected_size" in options:
        options.setdefault("warning", None)
    state, texts = verdict(status, args(**options))
    assert state is expected
    if text:
        assert any(text in t for t in texts), texts


def test_explicit_ranges_beat_the_expected_size():
    state, _ = verdict(HEALTHY, args(expected_size=5, warning=Range.parse("1:"), critical=Range.parse("1:")))
    assert state is Status.OK


def test_flow_control_is_measured_between_runs(tmp_path):
    first = dict(HEALTHY, wsrep_flow_control_paused_ns="1000000000", wsrep_flow_control_paused="0.9",
                 wsrep_gcomm_uuid="n1")
    fraction, note = check.flow_control_fraction(first, "k", str(tmp_path), now=1000.0)
    assert (fraction, "first reading" in note) == (0.9, True)
    later = dict(first, wsrep_flow_control_paused_ns=str(1_000_000_000 + 3_000_000_000))
    fraction, note = check.flow_control_fraction(later, "k", str(tmp_path), now=1010.0)
    assert (round(fraction, 3), note) == (0.3, None)          # 3 s paused in 10 s
    restarted = dict(later, wsrep_gcomm_uuid="n2")
    assert "first reading" in check.flow_control_fraction(restarted, "k", str(tmp_path), now=1020.0)[1]
    state, texts = verdict(HEALTHY, args(), fc=0.3)
    assert state is Status.WARNING and "flow control paused replication 30% of the time" in texts[0]


# --- the bootstrap decision -------------------------------------------------------------------

def node(name, reachable=True, cluster="non-Primary", seqno=5, down=False, alive=False, source=None, uuid="u1"):
    state = rem.NodeState(name)
    state.address, state.reachable, state.cluster_status = f"{name}:3306", reachable, cluster if reachable else None
    state.seqno, state.down, state.alive, state.uuid = seqno, down, alive, uuid
    state.source = source or ("wsrep_last_committed" if reachable else "grastate.dat")
    return state


@pytest.fixture
def decide(tmp_path, monkeypatch):
    def run(nodes, bootstrap=True):
        config = Config({"state_dir": str(tmp_path), "mysql": {"servers": {n.name: {} for n in nodes}},
                         "remediations": {"galera": {"enabled": True, "targets": {"c": {
                             "bootstrap": bootstrap, "nodes": {n.name: {"server": n.name} for n in nodes}}}}}})
        remediation = rem.REMEDIATION(config)
        monkeypatch.setattr(remediation, "survey", lambda target: {n.name: n for n in nodes})
        try:
            return remediation.plan("c")
        except rem.Refused as exc:
            return exc.reason
    return run


@pytest.mark.parametrize("nodes, bootstrap, expected", [
    ([node("a"), node("b", reachable=False, down=True, seqno=5)], True, "bootstrap a new Primary component on a"),
    ([node("a", seqno=7), node("b", seqno=9)], True, "bootstrap a new Primary component on b"),
    ([node("a"), node("b", reachable=False, down=True, seqno=5)], False, "bootstrap is not true"),
    ([node("a"), node("b", reachable=False, down=True, seqno=6)], True, "b (down) is more advanced than a: seqno 6 > 5"),
    ([node("a"), node("b", cluster="Primary")], True, "a Primary component exists on b"),
    ([node("a"), node("b", reachable=False, seqno=None)], True, "b (b:3306) cannot be accounted for: no defaults_file"),
    ([node("a"), node("b", reachable=False, alive=True, seqno=None)], True, "its server is running but does not answer"),
    ([node("a"), node("b", reachable=False, down=True, uuid="u2")], True, "disagree on the cluster state UUID"),
    ([node("a", reachable=False, down=True, seqno=4), node("b", reachable=False, down=True, seqno=8)], True,
     "no node answers: the whole cluster is down"),
    ([node("a", cluster="Primary"), node("b", cluster="Primary")], True, []),
])
def test_bootstrap_decision(decide, nodes, bootstrap, expected):
    outcome = decide(nodes, bootstrap)
    if isinstance(expected, list):
        assert outcome == expected
    elif isinstance(outcome, str):
        assert expected in outcome, outcome
    else:
        assert expected in outcome[0].description, outcome


def test_grastate_is_read(tmp_path):
    path = tmp_path / "grastate.dat"
    path.write_text("# GALERA saved state\nversion: 2.1\nuuid:    50c5e8ad-e916-11f1-9cf9-b3834626b1f1\n"
                    "seqno:   -1\nsafe_to_bootstrap: 0\n")
    assert rem.read_grastate(str(path)) == {"uuid": "50c5e8ad-e916-11f1-9cf9-b3834626b1f1", "seqno": -1,
                                            "safe_to_bootstrap": 0}


# --- a real cluster ------------------------------------------------------------------------------

def node_args(name, cnf):
    return ["-H", "127.0.0.1", "-P", str(mi.GALERA_NODES[name][0]), "--defaults-file", cnf]


@pytest.fixture
def cluster(galera):
    galera.heal()
    return galera


def galera_config(mysql_config, galera, bootstrap=True, with_files=True):
    nodes = {}
    for name, inst in galera.nodes.items():
        nodes[name] = {"server": name, **({"defaults_file": inst.cnf} if with_files else {})}
    return mysql_config({"galera": {"enabled": True, "targets": {"test": {
        "nodes": nodes, "bootstrap": bootstrap, "settle": 20}}}})


def bootstrap_run(path):
    config = Config.load(path)
    remediation = rem.REMEDIATION(config, audit=Audit(os.path.join(config.state_dir, "audit.log"),
                                                      use_syslog=False))
    return perform(remediation, "test", Trigger(source="test"))


@pytest.mark.integration
def test_healthy_cluster_and_a_desynced_donor(cluster, run_cli, root_cnf):
    ran = run_cli("check", "galera", *node_args("g1", root_cnf), "--expected-size", "2")
    assert ran.returncode == 0, ran
    assert ran.stdout.startswith("GALERA OK: Primary, Synced, ready, cluster size 2 | 'cluster_size'=2;2:;2:;0")
    cluster.g2.sql("SET GLOBAL wsrep_desync = ON")
    try:
        ran = run_cli("check", "galera", *node_args("g2", root_cnf), "--expected-size", "2")
        assert ran.returncode == 1 and "local state Donor/Desynced (desync count 1" in ran.stdout, ran
    finally:
        cluster.g2.sql("SET GLOBAL wsrep_desync = OFF")


@pytest.mark.integration
def test_a_server_without_galera(pair, run_cli, root_cnf):
    ran = run_cli("check", "galera", "-H", "127.0.0.1", "-P", str(mi.PAIR_PORTS[0]), "--defaults-file", root_cnf)
    assert ran.returncode == 2 and "not a Galera node: no wsrep provider loaded" in ran.stdout, ran


@pytest.mark.integration
def test_quorum_loss_is_detected_refused_when_unsafe_and_bootstrapped_when_safe(cluster, run_cli, root_cnf,
                                                                                mysql_config):
    g1_args = node_args("g1", root_cnf)
    cluster.g1.sql("CREATE DATABASE IF NOT EXISTS quorum", "CREATE TABLE IF NOT EXISTS quorum.t (id INT PRIMARY KEY)",
                   "REPLACE INTO quorum.t VALUES (1)")
    cluster.g2.kill()

    ran = mi.wait_until(lambda: (lambda r: r if r.returncode == 2 else None)(
        run_cli("check", "galera", *g1_args, "--expected-size", "2")), 30, interval=0.5, what="non-Primary")
    assert "non-Primary component (quorum lost), size 1" in ran.stdout
    assert "wsrep_ready=OFF: queries fail with error 1047" in ran.stdout
    with pytest.raises(Exception, match="1047"):
        cluster.g1.sql("SELECT * FROM quorum.t")

    # Not allowed by the configuration: escalate, naming the node that could be bootstrapped.
    outcome = bootstrap_run(galera_config(mysql_config, cluster, bootstrap=False))
    assert outcome.escalate and "g1 (seqno" in outcome.reason and "bootstrap is not true" in outcome.reason

    # g2's files unknown (no defaults_file): it could be Primary elsewhere.
    outcome = bootstrap_run(galera_config(mysql_config, cluster, with_files=False))
    assert outcome.escalate and "g2 (g2 (127.0.0.1:3322)) cannot be accounted for" in outcome.reason

    # g2 (down) claims to be ahead: bootstrapping g1 would lose its transactions.
    grastate = os.path.join(cluster.g2.datadir, "grastate.dat")
    with open(grastate) as handle:
        original = handle.read()
    with open(grastate, "w") as handle:
        handle.write(re.sub(r"seqno:\s*-?\d+", "seqno:   1000", original))
    try:
        outcome = bootstrap_run(galera_config(mysql_config, cluster))
        assert outcome.escalate and "g2 (down) is more advanced than g1: seqno 1000 >" in outcome.reason
    finally:
        with open(grastate, "w") as handle:
            handle.write(original)

    # Safe: g2's crash left seqno -1, --wsrep-recover finds its real position, g1 is not behind.
    outcome = bootstrap_run(galera_config(mysql_config, cluster))
    assert outcome.status == "remediated", outcome.to_dict()
    assert "(mariadbd --wsrep-recover)" in outcome.plan[0].description
    assert outcome.verify["status"] == "OK"
    ran = run_cli("check", "galera", *g1_args)
    assert ran.returncode == 0 and "Primary, Synced, ready, cluster size 1" in ran.stdout, ran
    assert cluster.g1.one("SELECT id FROM quorum.t")["id"] == 1

    cluster.g2.start()
    cluster.wait_size(2)
    ran = run_cli("check", "galera", *node_args("g2", root_cnf), "--expected-size", "2")
    assert ran.returncode == 0 and "cluster size 2" in ran.stdout
    assert cluster.g2.one("SELECT id FROM quorum.t")["id"] == 1


@pytest.mark.integration
def test_a_healthy_cluster_needs_no_bootstrap(cluster, mysql_config):
    outcome = bootstrap_run(galera_config(mysql_config, cluster))
    assert outcome.status == "noop"
