"""check galera: verdict tables, flow control, the node probe; the bootstrap decision and
Galera's own files as tables. The cluster scenarios are in test_galera_cluster.py."""
import argparse
import os

import pytest

from autoremedy.clients import galera
from autoremedy.checks import galera as check
from autoremedy.config import Config, ConfigError
from autoremedy.contract.ranges import Range
from autoremedy.remediations import galera as rem
from autoremedy.contract.result import Status

# SHOW GLOBAL STATUS values measured on this machine (tests/mysql runs, galera-4 on MariaDB 10.11).
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


# --- Galera's own files and addresses ---------------------------------------------------------

# Written by galera-4 26.4.23 on the test cluster: g1's last Primary view after g2 and g3 were
# SIGKILLed (g1 survived, non-Primary); g3's after it kept the Primary alone (pc.weight=3).
GVWSTATE_CRASH = """my_uuid: 38d47874-f013-11f1-b688-5f8856037274
#vwbeg
view_id: 3 38d47874-f013-11f1-b688-5f8856037274 7
bootstrap: 1
member: 38d47874-f013-11f1-b688-5f8856037274 0
member: 390c0c8a-f013-11f1-b4a6-6ef21f124814 0
member: 3cf0090a-f013-11f1-85e7-e6d03b6ba014 0
#vwend
"""
GVWSTATE_ALONE = """my_uuid: 527ffecf-f012-11f1-9517-ef503493b8d6
#vwbeg
view_id: 3 527ffecf-f012-11f1-9517-ef503493b8d6 4
bootstrap: 0
member: 527ffecf-f012-11f1-9517-ef503493b8d6 0
#vwend
"""
U1, U2, U3 = "38d47874-f013-11f1-b688-5f8856037274", "390c0c8a-f013-11f1-b4a6-6ef21f124814", \
    "3cf0090a-f013-11f1-85e7-e6d03b6ba014"
HISTORY = "38d4fafd-f013-11f1-9104-479610cdf8c7"


def test_grastate_and_gvwstate_are_read(tmp_path):
    path = tmp_path / "grastate.dat"
    path.write_text("# GALERA saved state\nversion: 2.1\nuuid:    50c5e8ad-e916-11f1-9cf9-b3834626b1f1\n"
                    "seqno:   -1\nsafe_to_bootstrap: 0\n")
    assert galera.read_grastate(str(path)) == {"uuid": "50c5e8ad-e916-11f1-9cf9-b3834626b1f1", "seqno": -1,
                                               "safe_to_bootstrap": 0}
    assert galera.read_grastate(str(tmp_path / "absent")) == {}
    (tmp_path / "gvwstate.dat").write_text(GVWSTATE_CRASH)
    view = galera.read_gvwstate(str(tmp_path / "gvwstate.dat"))
    assert view == {"my_uuid": U1, "view": f"3 {U1} 7", "seq": 7, "members": [U1, U2, U3]}
    assert galera.read_gvwstate(str(tmp_path / "absent")) is None


def test_a_restored_node_is_the_same_node_in_a_new_incarnation():
    # pc.recovery bumps the 4th group (measured: ...-96f1-... then -96f2-).
    assert galera.node_key("4f9abe35-f012-11f1-96f1-5ad1325fff85") == galera.node_key(
        "4f9abe35-f012-11f1-96f2-5ad1325fff85")
    assert galera.node_key(U1) != galera.node_key(U2)
    assert galera.short_uuid("4f9abe35-f012-11f1-96f3-5ad1325fff85") == "4f9abe35-96f3"


@pytest.mark.parametrize("address, members", [
    ("gcomm://127.0.0.1:4571,127.0.0.1:4581,127.0.0.1:4591", ["127.0.0.1:4571", "127.0.0.1:4581", "127.0.0.1:4591"]),
    ("gcomm://db1,db2:4444,[fd00::3]?pc.wait_prim=no", ["db1:4567", "db2:4444", "fd00::3:4567"]),
    ("gcomm://", []),
    ("", []),
    (None, []),
])
def test_cluster_addresses(address, members):
    assert galera.cluster_members(address) == members


def test_a_nodes_own_gcomm_address():
    # As @@wsrep_provider_options shows it on the test cluster.
    options = "base_dir = /x/; base_host = 127.0.0.1; base_port = 4591; gmcast.listen_addr = tcp://127.0.0.1:4591;"
    assert galera.gcomm_address("127.0.0.1:4591", options) == "127.0.0.1:4591"
    assert galera.gcomm_address("10.0.0.3", "gmcast.listen_addr=tcp://0.0.0.0:4444") == "10.0.0.3:4444"
    assert galera.gcomm_address("10.0.0.3", None) == "10.0.0.3:4567"
    assert galera.gcomm_address(None, None) is None
    assert galera.same_address("localhost:4567", "127.0.0.1:4567")
    assert not galera.same_address("127.0.0.1:4567", "127.0.0.1:4568")


def test_a_datadir_held_by_a_process_is_not_down(tmp_path):
    """A fake process table: a server sitting in the datadir (cwd), one started
    with --datadir, one with the datadir's files open, and a lock on ibdata1."""
    datadir = tmp_path / "data"
    datadir.mkdir()
    (datadir / "ibdata1").write_text("")
    proc = tmp_path / "proc"

    def process(pid, argv, comm="mariadbd", cwd="/", fds=(), state="S"):
        d = proc / str(pid)
        (d / "fd").mkdir(parents=True)
        (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
        (d / "stat").write_text(f"{pid} ({comm}) {state} 1 1")
        os.symlink(cwd, d / "cwd")
        for i, target in enumerate(fds):
            os.symlink(target, d / "fd" / str(i))
    proc.mkdir()
    (proc / "locks").write_text("")
    assert galera.holders(str(datadir), str(proc)) == []
    process(10, ["/usr/sbin/mariadbd"], cwd="/var/lib/mysql")           # another server
    process(11, ["bash"], comm="bash", cwd=str(datadir))                # not a server
    process(12, ["mariadbd", "--defaults-file=/x"], cwd=str(datadir), state="Z")   # a zombie
    assert galera.holders(str(datadir), str(proc)) == []
    process(13, ["mariadbd", "--defaults-file=/etc/g.cnf"], cwd=str(datadir))
    process(14, ["mysqld", f"--datadir={datadir}"], comm="mysqld")
    process(15, ["mariadbd"], fds=[str(datadir / "galera.cache")])
    st = os.stat(datadir / "ibdata1")
    (proc / "locks").write_text(f"1: POSIX  ADVISORY  WRITE 99 {os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:"
                                f"{st.st_ino} 0 EOF\n")
    # A server whose working directory and files cannot be read (another user's, without root).
    (proc / "16").mkdir()
    (proc / "16" / "cmdline").write_bytes(b"mariadbd\0")
    (proc / "16" / "stat").write_text("16 (mariadbd) S 1 1")
    held = galera.holders(str(datadir), str(proc))
    assert [h.split(" (")[0].split(" holds")[0] for h in held] == ["pid 13", "pid 14", "pid 15", "pid 16",
                                                                   "pid 99"], held
    assert "working directory" in held[0] and "--datadir=" in held[1] and "galera.cache open" in held[2]
    assert "its datadir cannot be read" in held[3] and "lock on ibdata1" in held[4]


# --- the bootstrap decision ----------------------------------------------------------------

PORTS = {"a": (3321, 4571), "b": (3322, 4581), "c": (3323, 4591)}
ALL = "gcomm://127.0.0.1:4571,127.0.0.1:4581,127.0.0.1:4591"


def node(name, role="non-Primary", seqno=5, component=None, gcomm_uuid=None, view=None, uuid=HISTORY,
         cluster_address=ALL, where="local", grastate_seqno=-1, holders=()):
    """A NodeState as survey() builds it, for a node of the 3-node cluster a, b, c."""
    sql, gcomm = PORTS[name]
    state = rem.NodeState(name)
    state.address, state.sql_address = f"{name} (127.0.0.1:{sql})", f"127.0.0.1:{sql}"
    state.gcomm, state.cluster_address, state.where = f"127.0.0.1:{gcomm}", cluster_address, where
    state.gcomm_uuid = gcomm_uuid or {"a": U1, "b": U2, "c": U3}[name]
    state.gvwstate = view
    if role in ("Primary", "non-Primary"):
        state.reachable, state.cluster_status, state.uuid, state.seqno = True, role, uuid, seqno
        state.incoming = [f"127.0.0.1:{PORTS[m][0]}" for m in (component or [name])]
        state.size = len(state.incoming)
        state.local_state = "Synced" if role == "Primary" else "Initialized"
        state.status = {"wsrep_provider_name": "Galera", "wsrep_cluster_status": role,
                        "wsrep_cluster_size": str(state.size), "wsrep_local_state": "4" if role == "Primary" else "0",
                        "wsrep_local_state_comment": state.local_state, "wsrep_ready": "ON" if role == "Primary"
                        else "OFF", "wsrep_connected": "ON"}
    else:
        state.down = {"down": True, "running": False, "unknown": None}[role]
        state.holders = list(holders)
        state.uuid = uuid
        state.grastate = {"uuid": uuid, "seqno": grastate_seqno}
        if grastate_seqno >= 0:
            state.seqno, state.source = grastate_seqno, "grastate.dat"
        if role == "unknown":
            state.where, state.cluster_address, state.gvwstate = None, None, None
    return state


CRASH_VIEW = {"my_uuid": None, "view": f"3 {U1} 7", "seq": 7, "members": [U1, U2, U3]}


def crashed(name, **kw):
    return node(name, "down", view=dict(CRASH_VIEW, my_uuid={"a": U1, "b": U2, "c": U3}[name]), **kw)


def decide(*nodes, bootstrap=True):
    return rem.decide({n.name: n for n in nodes}, {"bootstrap": bootstrap}, "c1")


def test_two_crashed_one_survivor_is_a_bootstrap_of_the_survivor_after_recovering_positions():
    problems, leader, recover = decide(node("a", view=CRASH_VIEW), crashed("b"), crashed("c"))
    assert problems == [] and leader.name == "a" and [n.name for n in recover] == ["b", "c"]


@pytest.mark.parametrize("nodes, bootstrap, expected", [
    # the configuration lacks c; c is Primary with more weight, a and b each alone
    ((node("a"), node("b")), True, "127.0.0.1:4591 is named by the wsrep_cluster_address of a, b but is no "
                                   "configured node: the node list is incomplete"),
    ((node("a"), node("b")), True, "the surviving nodes sit in separate components (a; b): a partition"),
    ((node("a", view=CRASH_VIEW), crashed("b")), True, "member 3cf0090a-85e7 of the last Primary view in a's "
                                                       "gvwstate.dat is no configured node"),
    # every node configured
    ((node("a"), node("b"), node("c")), True, "separate components (a; b; c)"),
    ((node("a"), node("b"), node("c", "Primary")), True, "a Primary component exists on c (size 1 of 3): nothing"
                                                        " to bootstrap; a is non-Primary, b is non-Primary"),
    ((node("a"), crashed("b"), node("c", "unknown")), True, "c (c (127.0.0.1:3323)) is unaccounted for: it is on "
                                                           "another host with no probe configured"),
    ((node("a"), crashed("b"), node("c", "running", holders=["pid 7 (mariadbd, working directory /d)"])), True,
     "its server is running but does not answer (pid 7 (mariadbd, working directory /d)): starting, joining"),
    ((node("a"), crashed("b"), node("c", "down", view=dict(CRASH_VIEW, my_uuid=U3, members=[U2, U3]))), True,
     "c's last Primary view (gvwstate.dat, view 3 38d47874-f013-11f1-b688-5f8856037274 7) does not include a: it "
     "was Primary without the survivors"),
    ((node("a"), crashed("b"), crashed("c", grastate_seqno=9)), True, "c (down) is ahead of a: seqno 9 > 5"),
    ((node("a"), crashed("b"), crashed("c", uuid="11111111-1111-11f1-9999-111111111111")), True,
     "the nodes disagree on the history UUID"),
    ((node("a"), crashed("b"), crashed("c")), False, "a (seqno 5) is the most advanced survivor, but "
                                                      "remediations.galera.targets.c1.bootstrap is not true"),
    ((crashed("a"), crashed("b"), crashed("c")), True, "no node answers: the whole cluster is down; start every "
                                                        "node through its service"),
    ((node("a", component=["a", "b"]), crashed("b"), crashed("c")), True,
     "b does not answer, yet a's component lists it as a member"),
    ((node("a", cluster_address="gcomm://127.0.0.1:4571,127.0.0.1:4581"), crashed("b", cluster_address=None),
      crashed("c", cluster_address=None)), True, "c (127.0.0.1:4591) is configured, but no node's "
                                                 "wsrep_cluster_address names it"),
])
def test_refusals(nodes, bootstrap, expected):
    problems, _, _ = decide(*nodes, bootstrap=bootstrap)
    assert any(expected in p for p in problems), problems


def test_two_survivors_in_one_component_bootstrap_the_more_advanced():
    problems, leader, recover = decide(node("a", seqno=7, component=["a", "b"]),
                                       node("b", seqno=9, component=["a", "b"]), crashed("c"))
    assert (problems, leader.name, [n.name for n in recover]) == ([], "b", ["c"])


def test_the_window_refuses_a_member_seen_primary(monkeypatch):
    """The plan watches the cluster for ``window`` seconds: here c comes back
    Primary on the second look (a partition healing, another host acting)."""
    config = Config({"mysql": {"servers": {n: {} for n in "abc"}},
                     "remediations": {"galera": {"enabled": True, "targets": {"c1": {
                         "bootstrap": True, "window": 3, "nodes": {n: {"server": n} for n in "abc"}}}}}})
    remediation = rem.REMEDIATION(config, sleep=lambda s: None)
    looks = iter([[node("a", view=CRASH_VIEW), crashed("b"), crashed("c")],
                  [node("a", view=CRASH_VIEW), crashed("b"), crashed("c")],
                  [node("a", view=CRASH_VIEW), crashed("b"), node("c", "Primary")]])
    monkeypatch.setattr(remediation, "survey", lambda target, **kw: {n.name: n for n in next(looks)})
    with pytest.raises(rem.Refused) as refused:
        remediation.plan("c1")
    assert "c was seen Primary" in refused.value.reason and "not bootstrapping" in refused.value.reason


def test_the_whole_cluster_is_the_verdict():
    whole = {n: node(n, "Primary", component=["a", "b", "c"]) for n in "abc"}
    assert rem.cluster_verdict(whole).status is Status.OK
    partial = {"a": node("a", "Primary"), "b": crashed("b"), "c": crashed("c")}
    verdict = rem.cluster_verdict(partial)
    assert verdict.status is Status.CRITICAL and verdict.data["primary"] == ["a"]
    assert "a: cluster size 1 of 3 expected (crit <2); b down; c down" == verdict.summary


def test_a_node_list_that_cannot_be_complete_is_a_configuration_error(tmp_path):
    cnf = tmp_path / "g1.cnf"
    cnf.write_text("[mariadbd]\ndatadir = /nonexistent\nwsrep_cluster_address = gcomm://10.0.0.1,10.0.0.2,10.0.0.3\n"
                   "wsrep_node_address = 10.0.0.1\n")
    nodes = {"g1": {"server": "g1", "defaults_file": str(cnf)}, "g2": {"server": "g2", "gcomm": "10.0.0.2"}}
    assert "10.0.0.3:4567 is named by g1's wsrep_cluster_address but is no configured node's gcomm address" in \
        rem.static_membership(nodes)
    nodes["g3"] = {"server": "g3"}           # address unknown here: it may be 10.0.0.3
    assert rem.static_membership(nodes) == ""
    config = Config({"mysql": {"servers": {"g1": {}, "g2": {}}}, "remediations": {"galera": {"enabled": True,
                     "targets": {"c1": {"nodes": {"g1": nodes["g1"], "g2": nodes["g2"]}}}}}})
    with pytest.raises(ConfigError, match="the node list cannot be complete"):
        rem.REMEDIATION(config).resolve("c1")


# --- the check on the real cluster -------------------------------------------------------------

def node_args(galera, name, cnf):
    return ["-H", "127.0.0.1", "-P", str(galera.nodes[name].port), "--defaults-file", cnf]


@pytest.mark.integration
def test_healthy_nodes_and_a_desynced_donor(galera, run_cli, root_cnf):
    galera.heal()
    ran = run_cli("check", "galera", *node_args(galera, "g1", root_cnf), "--expected-size", "3")
    assert ran.returncode == 0, ran
    assert ran.stdout.startswith("GALERA OK: Primary, Synced, ready, cluster size 3 | 'cluster_size'=3;3:;2:;0")
    # On its own host, --node-cnf adds Galera's files to the JSON (what a probe reads).
    ran = run_cli("check", "galera", *node_args(galera, "g2", root_cnf), "--node-cnf", galera.g2.cnf,
                  "--format", "json")
    node = ran.json["data"]["node"]
    assert (ran.returncode, node["down"], node["answering"], node["gcomm"]) == (0, False, True, "127.0.0.1:4581")
    assert node["gvwstate"]["my_uuid"] == ran.json["data"]["wsrep"]["wsrep_gcomm_uuid"]
    galera.g2.sql("SET GLOBAL wsrep_desync = ON")
    try:
        ran = run_cli("check", "galera", *node_args(galera, "g2", root_cnf), "--expected-size", "3")
        assert ran.returncode == 1 and "local state Donor/Desynced (desync count 1" in ran.stdout, ran
    finally:
        galera.g2.sql("SET GLOBAL wsrep_desync = OFF")


@pytest.mark.integration
def test_a_server_without_galera(pair, run_cli, root_cnf):
    import mysql_instances as mi
    ran = run_cli("check", "galera", "-H", "127.0.0.1", "-P", str(mi.PAIR_PORTS[0]), "--defaults-file", root_cnf)
    assert ran.returncode == 2 and "not a Galera node: no wsrep provider loaded" in ran.stdout, ran


@pytest.mark.integration
def test_a_refused_login_stays_unknown_with_node_cnf(galera, run_cli, tmp_path):
    """--node-cnf speaks for a server that does not answer, never for a login the
    server refused: that stays UNKNOWN with the server's reason."""
    galera.heal()
    cnf = tmp_path / "bad.cnf"
    cnf.write_text("[client]\nuser = nobody_here\npassword = 'x'\n")
    ran = run_cli("check", "galera", *node_args(galera, "g1", str(cnf)), "--node-cnf", galera.g1.cnf)
    assert ran.returncode == 3 and "error 1045" in ran.stdout, ran
