"""openstack-consistency on the session's real Nova 34 + Placement 16 (issue 25, issue 10 item 7).

Each compute's hypervisor view is libvirt's own test driver (``virsh -c
test:///<node.xml>``, Debian's libvirt-clients): a node file per host whose
domains carry the names and UUIDs of the real Nova instances, rewritten to make
reality disagree with Nova. The compute's RPC queue is read from the shared
RabbitMQ's management API in the harness's own vhost.

Every case snapshots every server of the cloud before and after, through Nova's
API directly (never autoremedy's code): host, status, power state, task state
and its instance actions. Faults are injected the way they happen: a reboot
cast to a nova-compute that is frozen (SIGSTOP) or dead (SIGKILL), a stuck task
aged in the cell database, an ERROR with its fault row.
"""
import json
import os
import signal
import time

import pytest

from noharm_harness import Case, expect_harm, expect_no_harm

from autoremedy.config import Config
from autoremedy.contract.remediation import Trigger, perform
from autoremedy.remediations.openstack_consistency import Reconcile

pytestmark = pytest.mark.integration

VIRSH = "/usr/bin/virsh"
RUNSTATE = {"running": 1, "paused": 3, "shut off": 5}


# --- the hypervisor view: libvirt's test driver ---------------------------------------------------

class Hypervisors:
    """One libvirt test-driver node file per host, written from Nova's own instances."""

    def __init__(self, nova, folder):
        self.nova, self.folder = nova, str(folder)

    def uri(self, host):
        return f"test://{os.path.join(self.folder, host + '.xml')}"

    def write(self, host, override=None, strangers=()):
        """Every instance Nova places on ``host`` as a domain, running when ACTIVE, shut
        off when SHUTOFF; ``override`` {id: state} makes reality differ; ``strangers``
        [(name, uuid, state)] are domains Nova does not know."""
        rows = self.nova.get("/servers/detail?all_tenants=1", version="2.73")["servers"]
        domains = []
        for s in rows:
            if s["OS-EXT-SRV-ATTR:host"] != host:
                continue
            state = (override or {}).get(s["id"]) or ("shut off" if s["status"] == "SHUTOFF" else "running")
            domains.append(
                "  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>\n"
                f"    <name>{s['OS-EXT-SRV-ATTR:instance_name']}</name><uuid>{s['id']}</uuid>\n"
                "    <memory>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os>\n"
                f"    <test:runstate>{RUNSTATE[state]}</test:runstate>\n  </domain>\n")
        for name, uuid, state in strangers:
            domains.append(
                "  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>\n"
                f"    <name>{name}</name><uuid>{uuid}</uuid>\n"
                "    <memory>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os>\n"
                f"    <test:runstate>{RUNSTATE[state]}</test:runstate>\n  </domain>\n")
        path = os.path.join(self.folder, host + ".xml")
        with open(path + ".tmp", "w", encoding="utf-8") as handle:
            handle.write("<node>\n" + "".join(domains) + "</node>\n")
        os.replace(path + ".tmp", path)


@pytest.fixture
def hv(nova, tmp_path):
    return Hypervisors(nova, tmp_path)


@pytest.fixture
def node_config(nova, nova_config, hv):
    """The configuration of one compute node (``host``): its libvirt, its queue."""
    def make(host, consistency=None, **remediation):
        section = {"enabled": True, "dry_run": False, "host_patterns": ["host-*"], "verify_timeout": 20}
        section.update(remediation)
        own = {"host": host, "virsh": [VIRSH, "-r", "-c", hv.uri(host)],
               "network": False, "volumes": False,        # the harness stubs Neutron, has no Cinder
               "rpc": {"api_url": "http://127.0.0.1:15672", "vhost": nova.tag}}
        own.update(consistency or {})
        return nova_config({"openstack": {"consistency": own},
                            "remediations": {"openstack-consistency": section}}, name=f"{host}.yaml")
    return make


def reconcile(path, target, dry_run=None):
    return perform(Reconcile(Config.load(path)), target, Trigger(source="test"), dry_run=dry_run)


def check(run_cli, path):
    ran = run_cli("check", "openstack-consistency", "--config", path, "--format", "json", timeout=120)
    return ran.returncode, json.loads(ran.stdout)


# --- what the harness reads: every server, with its actions ----------------------------------------

def snapshot(nova):
    """{server id: (host, status, power_state, task_state, ((action, request_id), ...))}."""
    out = {}
    for sid, s in nova.servers().items():
        actions = nova.get(f"/servers/{sid}/os-instance-actions")["instanceActions"]
        out[sid] = (s["host"], s["status"], s["power_state"], s["task_state"],
                    tuple(sorted((a["action"], a["request_id"]) for a in actions)))
    return out


def events(nova, sid, action):
    """[(event, result)] of the instance's newest ``action``."""
    rows = [a for a in nova.get(f"/servers/{sid}/os-instance-actions")["instanceActions"]
            if a["action"] == action]
    newest = max(rows, key=lambda a: a["start_time"])
    detail = nova.get(f"/servers/{sid}/os-instance-actions/{newest['request_id']}")["instanceAction"]
    return [(e["event"], e["result"]) for e in detail.get("events") or []]


def settled_events(nova, sid, action, timeout=60):
    """events() once every event that can finish has a result. A compute that starts with
    an instance in 'rebooting' retries the reboot itself (nova/compute/manager.py,
    _init_instance) and the queued cast then runs too: two events of the same name on the
    same action, the first may still be running when the task state is already cleared.
    Nova records a finish on the *first* row of that name (nova/db/main/api.py,
    action_event_finish: ``filter_by(event=...).first()``), so of N rows of one name at
    most one ever gets a result: waiting for the others waited out the whole timeout
    (60 s, every run). Settled: each name has a finished row, and every unfinished row
    is such a duplicate."""
    deadline = time.monotonic() + timeout
    while True:
        found = events(nova, sid, action)
        names = {event for event, _ in found}
        finished = {event for event, result in found if result is not None}
        if (found and finished == names) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def age(nova, sid, minutes, task_state=None):
    """Make the instance's record and its actions ``minutes`` older (the cell database);
    optionally set a task state as a lost cast would have left it."""
    task = f", task_state = '{task_state}'" if task_state else ""
    nova.sql(f"UPDATE instances SET updated_at = UTC_TIMESTAMP() - INTERVAL {minutes} MINUTE{task} "
             f"WHERE uuid = '{sid}'")
    nova.sql(f"UPDATE instance_actions SET start_time = start_time - INTERVAL {minutes} MINUTE "
             f"WHERE instance_uuid = '{sid}'")
    nova.sql("UPDATE instance_actions_events e JOIN instance_actions a ON e.action_id = a.id SET "
             f"e.start_time = e.start_time - INTERVAL {minutes} MINUTE, "
             f"e.finish_time = e.finish_time - INTERVAL {minutes} MINUTE WHERE a.instance_uuid = '{sid}'")


def _queue_until(nova, queue, ready, timeout):
    """The management API's row of ``queue`` in the harness's vhost once ``ready(row)``;
    its statistics (messages, consumers) lag the queue by up to 5 s."""
    import requests
    deadline = time.monotonic() + timeout
    while True:
        row = requests.get(f"http://127.0.0.1:15672/api/queues/{nova.tag}/{queue}",
                           auth=("guest", "guest"), timeout=10).json()
        if ready(row):
            return row
        assert time.monotonic() < deadline, row
        time.sleep(0.5)


def queued(nova, queue, timeout=15, empty=False):
    """Wait until the management API counts a message in ``queue`` (``empty``: none)."""
    return _queue_until(nova, queue, lambda row: bool(row.get("messages")) != empty, timeout)


def consuming(nova, host, timeout=30):
    """Wait until ``compute.<host>`` has a consumer and nothing queued, as the management
    API reports it: the precondition of every repair. An earlier test of the session may
    have restarted that compute, and its consumer shows up to 5 s after it is back (CI saw
    a repair refused as "nothing consumes compute.host-a" right after such a restart)."""
    return _queue_until(nova, f"compute.{host}",
                        lambda row: (row.get("consumers") or 0) > 0 and not row.get("messages"), timeout)


def wait_task(nova, sid, pred, timeout=60):
    return nova.wait_servers([sid], lambda s: s is not None and pred(s), timeout=timeout)[sid]


# --- 1. the safe repairs, proven and verified, and nothing else touched ----------------------------

class RepairCase(Case):
    """host-a: a healthy instance, one ACTIVE whose domain is shut off, one whose reboot
    cast was lost 40 min ago (its domain running); host-b carries a stopped bystander."""

    cls_name = "openstack-consistency"

    def __init__(self, nova, hv, path):
        self.nova, self.hv, self.path = nova, hv, path
        self.healthy, self.off, self.stuck = nova.boot("host-a", 3)
        (self.bystander,) = nova.boot("host-b", 1, prefix="by")
        nova.action(self.bystander, {"os-stop": None})
        nova.wait_servers([self.bystander], lambda s: s["status"] == "SHUTOFF")
        for host in ("host-a", "host-b"):
            hv.write(host)
        consuming(nova, "host-a")

    def snapshot(self):
        return {f"instance {k}": v for k, v in snapshot(self.nova).items()}

    def inject(self):
        self.hv.write("host-a", {self.off: "shut off"})
        age(self.nova, self.stuck, 40, task_state="rebooting")

    def remediate(self):
        return reconcile(self.path, "host-a").to_dict()

    def allowed(self):
        return {f"instance {self.off}", f"instance {self.stuck}"}


def test_safe_repairs_are_proven_applied_and_verified(nova, hv, node_config, run_cli):
    path = node_config("host-a")
    case = RepairCase(nova, hv, path)
    rc, out = check(run_cli, path)
    assert rc == 0 and out["summary"] == "host-a: Nova and libvirt agree on 3 instance(s)", out
    run = expect_no_harm(case)
    plan = [s["step"] for s in run.outcome["plan"]]
    # One step per instance, in the order Nova lists them: newest first, and by UUID within
    # a second (nova/compute/instance_list.py InstanceSortContext), so either order here.
    assert sorted(plan) == [f"record the real power state of {case.off}: os-stop (domain already off)",
                            f"reset stuck task state of {case.stuck} to active"], run
    assert "host-a's compute up and consuming, nothing queued, no migration" in \
        json.dumps(run.outcome["plan"])
    before, after = run.before, run.after
    assert after[f"instance {case.off}"][1:4] == ("SHUTOFF", 4, None)
    assert after[f"instance {case.stuck}"][1:4] == ("ACTIVE", 1, None)
    # the stop went through Nova (an action recorded), the reset is API-only
    assert {a for a, _ in after[f"instance {case.off}"][4]} - {a for a, _ in before[f"instance {case.off}"][4]} \
        == {"stop"}
    assert all(s[1] != "ERROR" for s in after.values())
    rc, out = check(run_cli, path)
    assert rc == 0, out


# --- 2. a queued reboot on a frozen, then dead, compute: waiting, never reset ---------------------

def test_a_queued_reboot_is_never_reset_and_happens_once_its_compute_resumes(nova, hv, node_config):
    path = node_config("host-b")
    rebooting, off = nova.boot("host-b", 2)
    (bystander,) = nova.boot("host-a", 1, prefix="by")
    hv.write("host-b", {off: "shut off"})        # reality differs too: a stop would be planned
    hv.write("host-a")
    frozen = nova.procs["compute-host-b"].pid
    os.killpg(frozen, signal.SIGSTOP)            # frozen: its connection and consumer stay
    try:
        nova.action(rebooting, {"reboot": {"type": "SOFT"}})
        # RabbitMQ's management statistics lag up to 5 s: a cast 31 min old is long visible,
        # so wait until this one is before making it look 31 min old.
        queued(nova, "compute.host-b")
        age(nova, rebooting, 31)                 # 31 min old: past a 30 min threshold
        before = snapshot(nova)
        assert before[rebooting][3] == "rebooting"
        outcome = reconcile(path, "host-b")
        seen = nova.services()["host-b"]["state"]
        print("frozen compute, first run:", outcome.guard, seen)
        assert outcome.status == "skipped", json.dumps(outcome.to_dict(), indent=1)
        if outcome.guard == "waiting":           # still reported up: the cast waits in its queue
            assert "waiting on host-b's compute" in outcome.reason
            assert "message(s) still queued for it" in outcome.reason, outcome.reason
        else:                                    # already down: deferred to compute-node
            assert outcome.guard == "deferred" and "host-b's nova-compute is down" in outcome.reason
            assert seen == "down"
        nova.wait_service("host-b", "down", timeout=40)
        outcome = reconcile(path, "host-b")
        assert outcome.status == "skipped" and outcome.guard == "deferred", outcome.to_dict()
        assert "the compute-node class owns this incident" in outcome.reason
        assert snapshot(nova) == before          # nothing sent, nothing reset
    finally:
        os.killpg(frozen, signal.SIGCONT)
    after = wait_task(nova, rebooting, lambda s: s["task_state"] is None and s["status"] == "ACTIVE")
    assert after["host"] == "host-b"
    found = settled_events(nova, rebooting, "reboot")
    assert ("compute_reboot_instance", "Success") in found, found
    nova.wait_service("host-b", "up", timeout=40)
    consuming(nova, "host-b")
    # back, consuming, nothing queued: the power repair is now proven safe, and lands
    outcome = reconcile(path, "host-b")
    assert outcome.status == "remediated", outcome.to_dict()
    now = snapshot(nova)
    assert now[off][1:4] == ("SHUTOFF", 4, None) and now[bystander] == before[bystander]
    assert all(s[1] != "ERROR" for s in now.values())


def test_a_dead_compute_gets_no_repair_and_the_check_says_so(nova, hv, node_config, run_cli):
    path = node_config("host-b")
    rebooting, off = nova.boot("host-b", 2)
    hv.write("host-b", {off: "shut off"})
    nova.dead("host-b")
    nova.action(rebooting, {"reboot": {"type": "SOFT"}})
    age(nova, rebooting, 40)
    before = snapshot(nova)
    rc, out = check(run_cli, path)
    assert rc == 3 and out["summary"].startswith("host-b's nova-compute is down"), out
    assert "the compute-node check owns this incident" in out["summary"]
    outcome = reconcile(path, "host-b")
    assert outcome.status == "skipped" and outcome.guard == "deferred", outcome.to_dict()
    assert snapshot(nova) == before
    nova.start_compute("host-b")                 # back: the queued reboot is delivered then
    after = wait_task(nova, rebooting, lambda s: s["task_state"] is None, timeout=90)
    assert after["status"] == "ACTIVE"
    # Nova runs it twice: _init_instance retries the reboot (the restarted fake driver
    # reports no running domain) and the queued cast runs too, failing with
    # UnexpectedTaskStateError when the retry already cleared the task. Which of the two
    # records first differs run to run (in CI the retry's event was still unfinished after
    # 60 s, the cast's was Error). What holds: the reboot reached the compute once it was
    # back, and nothing of ours touched the instance meanwhile (asserted above).
    found = settled_events(nova, rebooting, "reboot")
    assert found and {event for event, _ in found} == {"compute_reboot_instance"}, found


# --- 3. never ERROR, ERROR reported, and the host never from the target -----------------------------

class WrongHostCase(Case):
    """host-a's node asked to repair host-b (where a domain is shut off): refused, nothing moves."""

    cls_name = "openstack-consistency"

    def __init__(self, nova, hv, path):
        self.nova, self.hv, self.path = nova, hv, path
        (self.there,) = nova.boot("host-b", 1)
        hv.write("host-b", {self.there: "shut off"})

    def snapshot(self):
        return {f"instance {k}": v for k, v in snapshot(self.nova).items()}

    def remediate(self):
        return reconcile(self.path, "host-b").to_dict()


def test_never_error_error_reported_and_the_wrong_host_refused(nova, hv, node_config, run_cli):
    path = node_config("host-a", verify_timeout=2)     # it cannot pass: no need to wait for it
    powering, broken, fine = nova.boot("host-a", 3)
    nova.action(powering, {"os-stop": None})
    nova.wait_servers([powering], lambda s: s["status"] == "SHUTOFF")
    nova.action(broken, {"os-resetState": {"state": "error"}})
    nova.sql("INSERT INTO instance_faults (created_at, instance_uuid, code, message, details, host, deleted) "
             f"VALUES (UTC_TIMESTAMP(), '{broken}', 500, 'Connection to libvirt lost', '', 'host-a', 0)")
    hv.write("host-a", {broken: "shut off"})
    age(nova, powering, 40, task_state="powering-on")   # a stopped instance stuck powering on
    rc, out = check(run_cli, path)
    assert rc == 2, out
    found = {f["subject"]: f for f in out["data"]["findings"]}
    assert found[powering]["severity"] == "escalate"
    assert "the only reset is to ERROR: not a repair" in found[powering]["detail"]
    assert found[broken]["kind"] == "error-state"
    assert "is in ERROR (fault 500: Connection to libvirt lost)" in found[broken]["detail"]
    assert out["metrics"]["error"] == 1 and fine not in found
    before = snapshot(nova)
    outcome = reconcile(path, "host-a")
    assert outcome.status == "failed" and outcome.escalate, outcome.to_dict()
    assert [s.description for s in outcome.plan] == ["keep evidence of 2 finding(s) a human must resolve"]
    assert snapshot(nova) == before              # powering-on kept, nothing in ERROR added
    # the target never decides the host: host-a's node asked about host-b refuses
    case = WrongHostCase(nova, hv, path)
    run = expect_harm(case, named=["'host-b' is not this node's Nova host 'host-a'"])
    assert run.outcome["outcome"] == "refused" and run.outcome["guard"] == "host"
    assert run.differences == []
    ran = run_cli("check", "openstack-consistency", "--config", path, "--host", "host-c", timeout=60)
    assert ran.returncode == 3 and "--host host-c is not this node's Nova host host-a" in ran.stdout


# --- 4. restart-compute: refused while anything is in flight, then a stuck delete resumed ----------

class ComputeRestarter:
    """Carries out restart_request.py's requests: SIGTERM the host's nova-compute, start
    it again (systemctl restart's stop + start). Counts what it did.

    The fake virt driver destroys domains only in its memory, and the hypervisor view
    here is libvirt's test driver reading a file: once the restarted compute has
    finished the deletes it resumes, the file is rewritten from Nova (what a real
    driver's destroy does to libvirt)."""

    def __init__(self, nova, hv, host, folder):
        import threading
        self.nova, self.hv, self.host, self.folder = nova, hv, host, str(folder)
        self.done, self._stop = [], threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def argv(self):
        import sys
        return [sys.executable, os.path.join(os.path.dirname(__file__), "restart_request.py"),
                self.folder]

    def _serve(self):
        req = os.path.join(self.folder, "restart.req")
        while not self._stop.is_set():
            if os.path.exists(req):
                os.unlink(req)
                try:
                    deleting = [sid for sid, srv in self.nova.servers().items()
                                if srv["host"] == self.host and srv["task_state"] == "deleting"]
                    self.nova.kill_compute(self.host, signal.SIGTERM)
                    self.nova.start_compute(self.host)
                    self.nova.wait_servers(deleting, lambda srv: srv is None, timeout=90,
                                           what="deleted")
                    self.hv.write(self.host)
                    said = f"restarted nova-compute on {self.host}"
                except Exception as exc:           # the requester exits 1 with it
                    said = f"failed: {exc}"
                self.done.append(said)
                with open(os.path.join(self.folder, "restart.done.tmp"), "w", encoding="utf-8") as out:
                    out.write(said)
                os.replace(os.path.join(self.folder, "restart.done.tmp"),
                           os.path.join(self.folder, "restart.done"))
            time.sleep(0.2)

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)


def test_restart_compute_refuses_while_in_flight_then_resumes_only_the_stuck_delete(
        nova, hv, node_config, tmp_path):
    restarter = ComputeRestarter(nova, hv, "host-c", tmp_path)
    try:
        path = node_config("host-c", consistency={"restart_compute": restarter.argv()},
                           verify_timeout=120)
        deleting, busy, calm = nova.boot("host-c", 3)
        (bystander,) = nova.boot("host-a", 1, prefix="by")
        hv.write("host-c")
        # a delete whose cast was lost 40 min ago: Nova says deleting, libvirt still runs it
        age(nova, deleting, 40, task_state="deleting")
        # another instance with an operation in flight on the same host (young: no finding)
        nova.sql(f"UPDATE instances SET task_state = 'rebooting' WHERE uuid = '{busy}'")
        consuming(nova, "host-c")
        before = snapshot(nova)
        pid = nova.compute_pid("host-c")
        outcome = reconcile(path, "host-c")
        assert outcome.status == "refused" and outcome.guard == "in-flight", outcome.to_dict()
        assert f"({busy}): active/rebooting" in outcome.reason, outcome.reason
        assert snapshot(nova) == before and nova.compute_pid("host-c") == pid and not restarter.done
        # the operation ended: only the stuck delete is left, and the restart resumes it
        nova.sql(f"UPDATE instances SET task_state = NULL WHERE uuid = '{busy}'")
        dry = reconcile(path, "host-c", dry_run=True)
        assert dry.status == "dry-run", dry.to_dict()
        assert [s.description for s in dry.plan] == \
            [f"restart nova-compute to resume the stuck delete of {deleting}"]
        assert not restarter.done
        before = snapshot(nova)
        outcome = reconcile(path, "host-c")
        assert outcome.status == "remediated", json.dumps(outcome.to_dict(), indent=1)
        assert [s.description for s in outcome.plan] == [s.description for s in dry.plan]
        assert restarter.done == ["restarted nova-compute on host-c"]
        assert nova.compute_pid("host-c") != pid
        after = snapshot(nova)
        assert deleting not in after                          # the delete Nova had lost, resumed
        for sid in (busy, calm, bystander):                    # nothing else moved
            assert after[sid][:4] == before[sid][:4], (sid, before[sid], after[sid])
        assert all(s[1] != "ERROR" for s in after.values())
    finally:
        restarter.close()



# --- 5. a domain Nova does not know: reported, evidence kept, never "fixed" --------------------------

def virsh_domains(hv, host):
    """{uuid: state} as libvirt's test driver lists the node (independent of autoremedy)."""
    import subprocess
    out = subprocess.run([VIRSH, "-r", "-c", hv.uri(host), "list", "--all", "--uuid"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    uuids = [line.strip() for line in out.splitlines() if line.strip()]
    return {u: subprocess.run([VIRSH, "-r", "-c", hv.uri(host), "domstate", u], capture_output=True,
                              text=True, timeout=30, check=True).stdout.strip() for u in uuids}


class StrangerCase(Case):
    """host-a's libvirt runs a domain whose UUID no Nova instance has, next to two of
    Nova's own; host-b carries a bystander."""

    cls_name = "openstack-consistency"

    def __init__(self, nova, hv, path):
        import uuid
        self.nova, self.hv, self.path = nova, hv, path
        self.mine = nova.boot("host-a", 2)
        (self.bystander,) = nova.boot("host-b", 1, prefix="by")
        self.stranger = str(uuid.uuid4())
        hv.write("host-a", strangers=[("instance-0000beef", self.stranger, "running")])
        hv.write("host-b")

    def snapshot(self):
        out = {f"instance {k}": v for k, v in snapshot(self.nova).items()}
        out.update({f"domain {u}": st for u, st in virsh_domains(self.hv, "host-a").items()})
        return out

    def remediate(self):
        return reconcile(self.path, "host-a").to_dict()


def test_a_domain_nova_does_not_know_is_reported_and_left_alone(nova, hv, node_config, run_cli):
    path = node_config("host-a", verify_timeout=2)     # it cannot pass: no need to wait for it
    case = StrangerCase(nova, hv, path)
    nova.request("GET", f"/servers/{case.stranger}", ok=(404,))      # Nova has no such server (else raises)
    rc, out = check(run_cli, path)
    assert rc == 2, out
    found = {f["subject"]: f for f in out["data"]["findings"]}
    assert set(found) == {case.stranger}, found          # Nova's own two agree with libvirt
    assert found[case.stranger]["kind"] == "orphan-domain"
    assert found[case.stranger]["severity"] == "escalate" and not found[case.stranger].get("action")
    assert f"domain instance-0000beef ({case.stranger}, running) is unknown to Nova" in out["summary"]
    # the dry-run and the run: evidence for a human, nothing sent to Nova or libvirt
    dry = reconcile(path, "host-a", dry_run=True)
    assert [s.description for s in dry.plan] == ["keep evidence of 1 finding(s) a human must resolve"], \
        dry.to_dict()
    # "failed": the check still finds the stranger after the run (a human's to resolve), and
    # nothing else changed (no harm, every invariant holds).
    run = expect_no_harm(case, outcomes=("failed",))
    assert "verification failed: CRITICAL: domain instance-0000beef" in run.outcome["reason"], run.outcome
    assert [s["step"] for s in run.outcome["plan"]] == ["keep evidence of 1 finding(s) a human must resolve"]
    assert run.after == run.before                        # the stranger still runs, Nova unchanged
    assert virsh_domains(hv, "host-a")[case.stranger] == "running"
    evidence = [n for n in run.outcome["notes"] if "evidence in " in n]
    with open(evidence[0].split("evidence in ")[1], encoding="utf-8") as handle:
        record = json.load(handle)
    assert record["findings"][0]["evidence"]["libvirt"] == {"name": "instance-0000beef", "state": "running"}


# --- 6. a dead Neutron agent (the harness's agents-API stub: no real Neutron here) ------------------

def test_a_dead_agent_is_reported_restarted_through_its_unit_and_verified(nova, hv, node_config, run_cli,
                                                                         fakebin):
    ovs, dhcp = "neutron-openvswitch-agent", "neutron-dhcp-agent"
    now = time.time()
    nova.agents([
        {"id": "ag-ovs-a", "host": "host-a", "binary": ovs, "agent_type": "Open vSwitch agent",
         "running": False, "heartbeat": now - 300},                      # dead 5 min
        {"id": "ag-dhcp-a", "host": "host-a", "binary": dhcp, "agent_type": "DHCP agent",
         "running": True},
        {"id": "ag-ovs-b", "host": "host-b", "binary": ovs, "agent_type": "Open vSwitch agent",
         "running": False, "heartbeat": now - 300},                      # another host's: not ours
        {"id": "ag-l3-a", "host": "host-a", "binary": "neutron-l3-agent", "agent_type": "L3 agent",
         "running": False, "heartbeat": now - 300, "admin_state_up": False}])   # disabled on purpose
    fakebin.restart_hook(ovs, nova.agent_restart_url("host-a", ovs))
    (vm,) = nova.boot("host-a", 1)
    hv.write("host-a")
    path = node_config("host-a", consistency={"network": True, "agent_units": {ovs: ovs, dhcp: dhcp}})
    rc, out = check(run_cli, path)
    assert rc == 1, out
    found = {f["subject"]: f for f in out["data"]["findings"]}
    assert set(found) == {"ag-ovs-a"}, found
    assert found["ag-ovs-a"]["kind"] == "dead-agent" and found["ag-ovs-a"]["action"] == "restart-agent"
    assert f"{ovs} (Open vSwitch agent) on host-a is not alive" in out["summary"], out
    before = snapshot(nova)
    dry = reconcile(path, "host-a", dry_run=True)
    assert [s.description for s in dry.plan] == [f"restart dead agent {ovs}"], dry.to_dict()
    assert fakebin.calls("systemctl") == []                # a dry-run restarts nothing
    outcome = reconcile(path, "host-a")
    assert outcome.status == "remediated", json.dumps(outcome.to_dict(), indent=1)
    assert fakebin.calls("systemctl") == [["systemctl", "restart", ovs]]   # only the dead one's unit
    listed = {a["id"]: a["alive"] for a in nova.network_agents()}
    assert listed == {"ag-ovs-a": True, "ag-dhcp-a": True, "ag-ovs-b": False, "ag-l3-a": False}
    assert snapshot(nova) == before                       # no instance touched
    rc, out = check(run_cli, path)
    assert rc == 0 and vm and out["summary"] == "host-a: Nova and libvirt agree on 1 instance(s)", out
