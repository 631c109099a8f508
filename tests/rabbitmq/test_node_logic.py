"""check rabbitmq-node without a broker: the log markers (real logs of this
machine's RabbitMQ 3.10 as fixtures), the baseline comparison, the cluster view
from the API double (membership, partitions), dead/booting/stuck/app-stopped told
apart with a stand-in beam process and a fake CLI; a stale pid file. The
remediation's decisions are in test_node_plan.py."""
import json
import os
import shutil
import subprocess
import time

import pytest

from autoremedy.clients import rabbitmq
from autoremedy.checks import rabbitmq_node as rn
from autoremedy.cli import check_parser
from autoremedy.config import Config
from autoremedy.contract.execute import Completed
from autoremedy.contract.ranges import Range
from autoremedy.contract.result import Status

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


# --- the log ------------------------------------------------------------------------------

def test_a_failed_boot_is_found_and_its_first_marker_names_the_cause(tmp_path):
    log = tmp_path / "node.log"
    shutil.copy(os.path.join(FIXTURES, "boot-failed-schema.log"), log)
    fatal, warn, note = rn.scan_log(str(log), str(tmp_path / "state.json"))
    assert note is None
    assert fatal[0].startswith('** FATAL ** mnesia_tm crashed: {{"Cannot read schema",')
    assert fatal[-1] == "BOOT FAILED"
    assert warn and warn[-1].startswith("crasher: exception exit:")


def test_markers_of_an_earlier_boot_are_history(tmp_path):
    log = tmp_path / "node.log"
    log.write_bytes(open(os.path.join(FIXTURES, "boot-failed-schema.log"), "rb").read()
                    + open(os.path.join(FIXTURES, "boot-ok.log"), "rb").read())
    assert rn.scan_log(str(log), str(tmp_path / "s.json"))[:2] == ([], [])


def test_the_log_is_read_incrementally_and_rereads_after_rotation(tmp_path):
    log, state = tmp_path / "node.log", str(tmp_path / "s.json")
    ok = open(os.path.join(FIXTURES, "boot-ok.log"), "rb").read()
    log.write_bytes(ok)
    assert rn.scan_log(str(log), state)[:2] == ([], [])
    offset = json.load(open(state))["offset"]
    assert offset == len(ok)
    with open(log, "ab") as handle:                 # a marker arrives, half a line at first
        handle.write(b"2026-01-01 00:00:00.0+00:00 [error] <0.1.0> BOOT FAILED\n2026-01-01 [error] <0.1.0> ** FA")
    assert rn.scan_log(str(log), state)[0] == ["BOOT FAILED"]
    assert json.load(open(state))["offset"] < os.path.getsize(log)   # the half line waits
    log.unlink()                                    # rotated: a new file, new inode
    log.write_bytes(b"2026 [error] <0.2.0> ** FATAL ** something\n")
    assert rn.scan_log(str(log), state)[0] == ["** FATAL ** something"]


def test_a_missing_log_is_a_note_not_an_error(tmp_path):
    assert rn.scan_log(str(tmp_path / "nope.log"), str(tmp_path / "s.json")) == (
        [], [], f"log {tmp_path / 'nope.log'} not found")


# --- the baseline ----------------------------------------------------------------------------

BASELINE = {"vhosts": [{"name": "/"}, {"name": "nova"}], "users": [{"name": "guest"}, {"name": "openstack"}],
            "queues": [{"name": f"q{i}", "durable": True} for i in range(10)] + [{"name": "t", "durable": False}]}


@pytest.mark.parametrize("vhosts, users, queues, reasons, notes", [
    (["/", "nova"], ["guest", "openstack"], 25, [], []),
    (["/", "nova", "extra"], ["guest", "openstack", "new"], 10, [], []),
    (["/"], ["guest", "openstack"], 10, ["vhosts nova"], []),
    (["/", "nova"], ["guest"], 10, ["users openstack"], []),
    (["/", "nova"], ["guest", "openstack"], 4, ["queues (4 left of 10 durable in the baseline)"], []),
    (["/", "nova"], ["guest", "openstack"], 7, [], ["3 fewer queues than the 10 durable ones in the baseline"]),
    (["/", "nova"], ["guest", "openstack"], None, [], []),
    (["/", "nova"], None, 10, [], []),                       # users not listable (403)
])
def test_compare(vhosts, users, queues, reasons, notes):
    assert rn.compare(BASELINE, vhosts, users, queues, 50.0) == (reasons, notes)


def test_a_damaged_baseline_is_unknown_not_a_silent_pass(tmp_path):
    path = tmp_path / "b.json"
    path.write_text("{half")
    with pytest.raises(rn.CheckError, match="definitions baseline .* unreadable"):
        rn.load_baseline(str(path))
    path.write_text('{"users": []}')
    with pytest.raises(rn.CheckError, match="is not a definitions export"):
        rn.load_baseline(str(path))


# --- the check, in process ----------------------------------------------------------------------

class FakeCli:
    """rabbitmqctl / rabbitmq-diagnostics answers by sub-command; records calls."""

    def __init__(self, **answers):
        self.answers = answers
        self.calls = []

    def __call__(self, argv, timeout=None, env=None, input=None, **kw):
        self.calls.append(argv)
        rc, out = self.answers.get(argv[4], (69, ""))
        return Completed(argv, rc, out, "" if rc == 0 else "Error: node not running", 0.6)


@pytest.fixture
def fake_beam(tmp_path):
    """A process named beam.smp whose environment names the node, like 3.10's."""
    exe = tmp_path / "beam.smp"
    shutil.copy("/bin/sleep", exe)
    procs = []

    def start(node):
        proc = subprocess.Popen([str(exe), "300"], env={"RABBITMQ_NODENAME": node})
        procs.append(proc)
        return proc
    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def node_settings(make_config, url, **section):
    base = {"api_url": url, "node": "rmq@test", "log_file": "/nonexistent/rmq.log",
            "pid_file": "/nonexistent/rmq.pid"}
    base.update(section)
    return rabbitmq.settings(Config.load(make_config({"rabbitmq": base}), environ={}), environ={})


def run_node(settings, *argv, runner=None):
    args = check_parser(rn, "rabbitmq-node").parse_args(list(argv))
    args.warning, args.critical = Range.parse(args.warning), Range.parse(args.critical)
    return rn.check(args, settings=settings, runner=runner)


def node_row(name, running=True, **extra):
    row = {"name": name, "running": running, "type": "disc", "partitions": [], "mem_alarm": False,
           "disk_free_alarm": False, "fd_used": 50, "fd_total": 1000, "sockets_used": 10,
           "sockets_total": 900, "proc_used": 400, "proc_total": 1048576}
    row.update(extra)
    return row


@pytest.mark.parametrize("nodes, configured, state, text", [
    ([node_row("a"), node_row("b")], ["a", "b"], "running", None),
    ([node_row("a"), node_row("b", running=False)], ["a", "b"], "cluster_degraded", "b not running"),
    # membership comes from the cluster: a dead member is seen without any configuration
    ([node_row("a"), node_row("b", running=False)], [], "cluster_degraded", "b not running"),
    ([node_row("a")], ["a", "b"], "membership_mismatch",
     "cluster membership differs from rabbitmq.cluster_nodes: not members: b"),
    ([node_row("a"), node_row("b"), node_row("c")], ["a", "b"], "membership_mismatch",
     "unexpected members: c"),
    ([node_row("b")], [], "not_member", "a is not a member of the cluster this API reports (b)"),
    ([node_row("a", partitions=["b"]), node_row("b", partitions=["a"])], ["a", "b"], "partitioned",
     "partition: a cut off from b; b cut off from a"),
    # ignore mode: each side sees the other as not running; that is a partition, not a dead node
    ([node_row("a", partitions=["b"]), node_row("b", running=False)], [], "partitioned",
     "partition: a cut off from b"),
    # the map fills in from either side: a peer unseen meanwhile may be beyond the cut (CI saw
    # "c cut off from b; d not running" for a cut between b and d)
    ([node_row("a", partitions=["b"]), node_row("b"), node_row("c", running=False)], [], "partitioned",
     "partition: a cut off from b; c unreachable from this side of the partition (down or cut off)"),
    ([node_row("a", mem_alarm=True), node_row("b")], ["a", "b"], "alarm", "a memory alarm (publishers blocked)"),
    ([node_row("a"), node_row("b", fd_used=950)], ["a", "b"], "exhausted", "b fd 95% used (950/1000)"),
    ([node_row("a"), node_row("b", sockets_used=750)], ["a", "b"], "running", "b sockets 83.33% used (750/900)"),
])
def test_the_cluster_view_from_one_nodes_request(make_config, double, nodes, configured, state, text):
    double.set("/api/overview", {"node": "a", "object_totals": {"queues": 0}})
    double.set("/api/nodes", nodes)
    settings = node_settings(make_config, double.url, node="a", cluster_nodes=configured)
    result = run_node(settings, "--cluster", "--no-baseline")
    assert result.data["state"] == state
    if text is None:
        assert result.status is Status.OK and result.summary == "a running, 2/2 cluster nodes running"
    else:
        assert text in result.summary
    if state == "partitioned":
        assert "not running" not in result.summary and result.data["partitions"]["a"] == ["b"]
    assert [r for r in double.requests if r[1].startswith("/api/nodes")] == [
        ("GET", "/api/nodes?columns=" + "%2C".join(rn.NODE_COLUMNS))]


def test_own_usage_is_perfdata_with_thresholds(make_config, double):
    double.set("/api/overview", {"node": "a", "object_totals": {"queues": 0}})
    double.set("/api/nodes", [node_row("a", fd_used=850)])
    result = run_node(node_settings(make_config, double.url, node="a"), "--no-baseline", "--cluster")
    assert result.status is Status.WARNING
    from autoremedy.contract.render import nagios
    assert nagios(result)[0].split(" | ")[1] == "'fd'=85%;80;90;0;100 'sockets'=1.11%;80;90;0;100 'procs'=0.04%;80;90;0;100"


def test_no_beam_process_is_not_running(make_config):
    url = "http://127.0.0.1:9"                           # discard port: refused
    result = run_node(node_settings(make_config, url), "--no-baseline", runner=FakeCli())
    assert (result.status, result.data["state"]) == (Status.CRITICAL, "not_running")
    assert result.summary == "rmq@test not running (no beam process)"


@pytest.mark.parametrize("age, is_booting, state, status, words", [
    (0, True, "booting", Status.WARNING, "rmq@test booting for"),
    (30, True, "stuck_booting", Status.CRITICAL, "stuck booting for"),
    (30, False, "app_stopped", Status.CRITICAL, "the rabbit app is not running on a live VM"),
])
def test_a_live_vm_that_does_not_run_the_app(make_config, fake_beam, monkeypatch, age, is_booting, state,
                                             status, words):
    proc = fake_beam("rmq@test")
    time.sleep(0.2)
    cli = FakeCli(check_running=(69, ""), is_booting=(0, json.dumps({"result": is_booting})))
    if age:
        created = _created(proc.pid)
        monkeypatch.setattr(rn.time, "time", lambda: created + age)
    result = run_node(node_settings(make_config, "http://127.0.0.1:9", boot_timeout=20), "--no-baseline",
                      runner=cli)
    assert (result.data["state"], result.status) == (state, status), result
    assert words in result.summary
    assert result.data["pid"] == proc.pid
    assert ["rabbitmq-diagnostics", "-q", "-n", "rmq@test", "check_running"] in cli.calls


def test_a_stale_pid_file_never_dates_a_new_boot(make_config, fake_beam, tmp_path, monkeypatch):
    """Right after a restart the pid file still names the old beam (still exiting):
    the youngest beam of the node is the one booting, so this is 'booting', not
    'stuck booting for 29s' (issue 20, seen 0.04 s after a normal restart)."""
    old = fake_beam("rmq@test")
    time.sleep(1.2)
    new = fake_beam("rmq@test")
    time.sleep(0.2)
    pid_file = tmp_path / "node.pid"
    pid_file.write_text(str(old.pid))
    monkeypatch.setattr(rn.time, "time", lambda: _created(new.pid) + 5)     # old: 6 s, new: 5 s
    cli = FakeCli(check_running=(69, ""), is_booting=(0, json.dumps({"result": True})))
    result = run_node(node_settings(make_config, "http://127.0.0.1:9", boot_timeout=5.5,
                                    pid_file=str(pid_file)), "--no-baseline", runner=cli)
    assert (result.data["state"], result.data["pid"]) == ("booting", new.pid), result


def test_a_pid_file_naming_another_nodes_beam_is_not_ours(make_config, fake_beam, tmp_path):
    other = fake_beam("rmq@other")
    pid_file = tmp_path / "node.pid"
    pid_file.write_text(str(other.pid))
    result = run_node(node_settings(make_config, "http://127.0.0.1:9", pid_file=str(pid_file)),
                      "--no-baseline", runner=FakeCli())
    assert result.data["state"] == "not_running", result


def test_a_vm_that_cannot_say_whether_it_boots_is_unknown_not_stuck(make_config, fake_beam, monkeypatch):
    proc = fake_beam("rmq@test")
    time.sleep(0.2)
    monkeypatch.setattr(rn.time, "time", lambda: _created(proc.pid) + 60)
    result = run_node(node_settings(make_config, "http://127.0.0.1:9", boot_timeout=20), "--no-baseline",
                      runner=FakeCli(check_running=(69, "")))
    assert result.status is Status.UNKNOWN, result
    assert "does not say whether it is booting" in result.summary


def _created(pid):
    import psutil
    return psutil.Process(pid).create_time()


def test_running_without_the_api_uses_the_cli_for_the_cluster_and_definitions(make_config, fake_beam, tmp_path):
    fake_beam("rmq@test")
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps(BASELINE))
    status = {"running_nodes": ["rmq@test"], "disk_nodes": ["rmq@test"], "partitions": {}, "alarms": []}
    live = {"vhosts": [{"name": "/"}], "users": [{"name": "guest"}], "queues": [{"name": "q1"}]}
    cli = FakeCli(check_running=(0, ""), cluster_status=(0, json.dumps(status)),
                  export_definitions=(0, json.dumps(live)))
    settings = node_settings(make_config, "http://127.0.0.1:9", definitions_baseline=str(baseline))
    result = run_node(settings, runner=cli)
    assert result.status is Status.CRITICAL
    assert result.summary == ("rmq@test running but definitions vanished: vhosts nova; users openstack; "
                              "queues (1 left of 10 durable in the baseline); "
                              "management API unavailable, node checked with the CLI")
    assert [c[4] for c in cli.calls] == ["check_running", "cluster_status", "export_definitions"]
    assert result.data["state"] == "definitions_lost"


def test_401_with_nothing_vanished_is_unknown_wrong_credentials(make_config, fake_beam, double, tmp_path):
    fake_beam("rmq@test")
    double.set("/api/overview", {"error": "not_authorized", "reason": "Login failed"}, status=401)
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps(BASELINE))
    status = {"running_nodes": ["rmq@test"], "disk_nodes": ["rmq@test"], "partitions": {}, "alarms": []}
    cli = FakeCli(check_running=(0, ""), cluster_status=(0, json.dumps(status)),
                  export_definitions=(0, json.dumps(BASELINE)))
    settings = node_settings(make_config, double.url, definitions_baseline=str(baseline))
    result = run_node(settings, runner=cli)
    assert result.status is Status.UNKNOWN
    assert result.summary == (f"management API {double.url} rejected the credentials of user 'guest' "
                              "(401) (user 'guest' exists)")


def test_the_first_healthy_run_saves_the_baseline_and_later_ones_compare(make_config, double, tmp_path):
    double.set("/api/overview", {"node": "a", "object_totals": {"queues": 10}})
    double.set("/api/nodes", [node_row("a")])
    double.set("/api/vhosts", [{"name": "/"}, {"name": "nova"}])
    double.set("/api/users", [{"name": "guest"}, {"name": "openstack"}])
    double.set("/api/definitions", BASELINE)
    path = tmp_path / "b.json"
    settings = node_settings(make_config, double.url, node="a", definitions_baseline=str(path))
    first = run_node(settings, "--cluster")
    assert first.status is Status.OK and f"no definitions baseline yet: saved {path}" in first.details
    assert json.loads(path.read_text()) == BASELINE and oct(path.stat().st_mode)[-3:] == "600"
    double.set("/api/vhosts", [{"name": "/"}])
    second = run_node(settings, "--cluster")
    assert second.status is Status.CRITICAL and second.summary == "a running but definitions vanished: vhosts nova"
    assert json.loads(path.read_text()) == BASELINE                 # a loss never overwrites the baseline
    accepted = run_node(settings, "--cluster", "--accept-definitions")
    assert f"live definitions saved as the baseline {path}" in accepted.details


def test_a_monitoring_user_is_told_what_it_cannot_do(make_config, double, tmp_path):
    """The monitoring tag lists vhosts and nodes but not users nor definitions:
    3.10 answers those with 401 "Not administrator user" (measured)."""
    forbidden = {"error": "not_authorised", "reason": "Not administrator user"}
    double.set("/api/overview", {"node": "a", "object_totals": {"queues": 10}})
    double.set("/api/nodes", [node_row("a")])
    double.set("/api/vhosts", [{"name": "/"}])
    double.set("/api/users", forbidden, status=401)
    double.set("/api/definitions", forbidden, status=401)
    settings = node_settings(make_config, double.url, node="a", definitions_baseline=str(tmp_path / "b.json"))
    result = run_node(settings, "--cluster")
    assert result.status is Status.WARNING
    assert result.summary == ("cannot export the definitions baseline: user 'guest' is not an administrator "
                              "(HTTP 401); tag it, or use --no-baseline")
    assert "users not compared: user 'guest' may not list them (HTTP 401: not an administrator)" in result.details
