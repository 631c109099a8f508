"""Nova vs libvirt (fake virsh) vs Neutron/Cinder on one node, and the guarded reconciliation."""
import json
import os
import time
import uuid

import pytest

from noharm_harness import Case, expect_harm, expect_no_harm

from autoremedy.cli import run_check
from autoremedy.config import Config
from autoremedy.contract.remediation import Trigger, perform
from autoremedy.remediations.openstack_consistency import Reconcile
from autoremedy.contract.result import Status

RECENT = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
LONG_AGO = "2020-01-01T00:00:00Z"


def dom(cloud, sid, state):
    srv = cloud.servers[sid]
    return {"uuid": sid, "name": srv["instance_name"], "state": state}


@pytest.fixture
def node(cloud, computes, fakebin):
    """cmp1 with a healthy VM; returns a builder for the rest."""
    computes(3)
    ok = cloud.add_server("cmp1", name="healthy", updated=RECENT)
    fakebin.domains([dom(cloud, ok, "running")])
    return ok


def consistency_config(os_config, consistency=None, **remediation):
    section = {"enabled": True, "host_patterns": ["cmp*"], "verify_timeout": 2}
    section.update(remediation)
    own = {"host": "cmp1", "stuck_after": "30m", "virsh": ["virsh", "-r"],
           "rpc": {"api_url": os_config.cloud_url},
           "agent_units": {"neutron-openvswitch-agent": "neutron-openvswitch-agent"}}
    own.update(consistency or {})
    return os_config({"openstack": {"consistency": own},
                      "remediations": {"openstack-consistency": section}})


def check(path, *argv):
    result, _ = run_check("openstack-consistency", ["--config", path, *argv])
    return result


def test_a_consistent_node_is_ok(cloud, node, os_config):
    result = check(consistency_config(os_config))
    assert result.status is Status.OK, result
    assert result.summary == "cmp1: Nova and libvirt agree on 1 instance(s)"


def test_every_kind_of_mismatch_is_found_and_classified(cloud, node, os_config, fakebin):
    off = cloud.add_server("cmp1", name="off-here", updated=RECENT)
    on = cloud.add_server("cmp1", name="on-here", vm_state="stopped", updated=RECENT)
    stuck = cloud.add_server("cmp1", name="stuck", task_state="rebooting", updated=LONG_AGO)
    young = cloud.add_server("cmp1", name="young", task_state="rebooting", updated=RECENT)
    building = cloud.add_server("cmp1", name="building", vm_state="building", task_state="spawning",
                                updated=LONG_AGO)
    gone = cloud.add_server("cmp1", name="no-domain", updated=RECENT)
    elsewhere = cloud.add_server("cmp2", name="moved", updated=RECENT)
    orphan = str(uuid.uuid4())
    fakebin.domains([dom(cloud, node, "running"), dom(cloud, off, "shut off"), dom(cloud, on, "running"),
                     dom(cloud, stuck, "running"), dom(cloud, young, "running"),
                     dom(cloud, elsewhere, "running"),
                     {"uuid": orphan, "name": "instance-deadbeef", "state": "running"}])
    cloud.agents.append({"id": "ag1", "host": "cmp1", "binary": "neutron-openvswitch-agent",
                         "agent_type": "Open vSwitch agent", "alive": False, "admin_state_up": True,
                         "heartbeat_timestamp": "2026-01-01 00:00:00"})
    cloud.ports.append({"id": "p1", "status": "DOWN", "binding:host_id": "cmp1", "device_id": node,
                        "device_owner": "compute:nova", "binding:vif_type": "ovs"})
    cloud.volumes.append({"id": "vol1", "status": "detaching", "updated_at": "2020-01-01T00:00:00.000000",
                          "attachments": [{"server_id": node, "host_name": "cmp1", "attachment_id": "a1"}]})
    result = check(consistency_config(os_config))
    assert result.status is Status.CRITICAL
    kinds = {(f["kind"], f["subject"]): f for f in result.data["findings"]}
    assert kinds[("power-mismatch", off)]["action"] == "stop" and kinds[("power-mismatch", off)]["severity"] == "auto"
    assert kinds[("power-mismatch", on)]["severity"] == "escalate"
    assert kinds[("stuck-task", stuck)]["action"] == "reset-active"
    assert kinds[("stuck-task", building)]["severity"] == "escalate"     # its only reset is ERROR
    assert "not a repair" in kinds[("stuck-task", building)]["detail"]
    assert ("stuck-task", young) not in kinds               # under the threshold
    assert kinds[("missing-domain", gone)]["severity"] == "escalate"
    assert "Nova places it on cmp2" in kinds[("elsewhere", elsewhere)]["detail"]
    assert kinds[("orphan-domain", orphan)]["severity"] == "escalate"
    assert kinds[("dead-agent", "ag1")]["action"] == "restart-agent"
    assert ("port-down", "p1") in kinds and ("volume-detaching", "vol1") in kinds
    metrics = {m.label: m.value for m in result.metrics}
    assert metrics["auto"] == 3 and metrics["escalate"] == 7
    # libvirt was asked read-only, with two list calls and one domuuid per unpaired name
    virsh = fakebin.calls("virsh")
    assert all(c[1] == "-r" for c in virsh)
    assert sum(1 for c in virsh if "domuuid" in c) == 2


def test_virsh_failure_is_unknown_with_the_reason(cloud, node, os_config, fakebin):
    fakebin.load()
    fakebin.state["virsh_error"] = True
    fakebin.save()
    result = check(consistency_config(os_config))
    assert result.status is Status.UNKNOWN
    assert "virsh list: error: failed to connect to the hypervisor" in result.summary


def reconcile(path, dry_run=None, event_id=None):
    return perform(Reconcile(Config.load(path)), "cmp1", Trigger(source="test", event_id=event_id),
                   dry_run=dry_run)


def test_the_remediation_is_a_dry_run_unless_told_otherwise(cloud, node, os_config, fakebin):
    off = cloud.add_server("cmp1", updated=RECENT)
    fakebin.domains([dom(cloud, node, "running"), dom(cloud, off, "shut off")])
    outcome = reconcile(consistency_config(os_config))
    assert outcome.status == "dry-run"
    assert [s.description for s in outcome.plan] == [
        f"record the real power state of {off}: os-stop (domain already off)"]
    assert cloud.servers[off]["vm_state"] == "active"


def test_a_finding_whose_repair_is_not_allowed_is_refused_never_called_healthy(cloud, node, os_config, fakebin):
    off = cloud.add_server("cmp1", updated=RECENT)
    fakebin.domains([dom(cloud, node, "running"), dom(cloud, off, "shut off")])
    outcome = reconcile(consistency_config(os_config, dry_run=False, actions=["reset-active"]))
    assert (outcome.status, outcome.guard) == ("refused", "not-allowed"), outcome.to_dict()
    assert f"{off}: power-mismatch, whose repair 'stop' is not in " \
           "remediations.openstack-consistency.actions" in outcome.reason
    assert cloud.servers[off]["vm_state"] == "active" and not cloud.calls("POST", "/action")


def test_safe_fixes_are_applied_and_verified(cloud, node, os_config, fakebin):
    off = cloud.add_server("cmp1", updated=RECENT)
    stuck = cloud.add_server("cmp1", task_state="image_snapshot", updated=LONG_AGO)
    cloud.add_action(stuck, "createImage", LONG_AGO, [("compute_snapshot_instance", LONG_AGO, LONG_AGO)])
    fakebin.domains([dom(cloud, node, "running"), dom(cloud, off, "shut off"), dom(cloud, stuck, "running")])
    outcome = reconcile(consistency_config(os_config, dry_run=False))
    assert outcome.status == "remediated", outcome.to_dict()
    assert cloud.servers[off]["vm_state"] == "stopped"
    assert (cloud.servers[stuck]["vm_state"], cloud.servers[stuck]["task_state"]) == ("active", None)


def test_a_reset_that_would_land_in_error_is_escalated_never_done(cloud, node, os_config, fakebin):
    building = cloud.add_server("cmp1", vm_state="building", task_state="spawning", updated=LONG_AGO)
    powering = cloud.add_server("cmp1", vm_state="stopped", task_state="powering-on", updated=LONG_AGO)
    fakebin.domains([dom(cloud, node, "running"), dom(cloud, powering, "shut off")])
    outcome = reconcile(consistency_config(os_config, dry_run=False))
    assert outcome.status == "failed" and outcome.escalate, outcome.to_dict()
    assert [s.description for s in outcome.plan] == ["keep evidence of 2 finding(s) a human must resolve"]
    assert "only reset is to ERROR: not a repair" in outcome.reason
    assert cloud.servers[building]["vm_state"] == "building"
    assert (cloud.servers[powering]["vm_state"], cloud.servers[powering]["task_state"]) == \
        ("stopped", "powering-on")
    assert not cloud.calls("POST", "/action")


def test_error_instances_are_reported_with_their_fault_and_counted(cloud, node, os_config, fakebin):
    broken = cloud.add_server("cmp1", name="broken", vm_state="error", updated=LONG_AGO)
    cloud.servers[broken]["fault"] = {"code": 500, "message": "Connection to libvirt lost",
                                      "created": LONG_AGO}
    result = check(consistency_config(os_config))
    assert result.status is Status.CRITICAL
    assert f"broken ({broken}) is in ERROR (fault 500: Connection to libvirt lost)" in result.summary
    metrics = {m.label: m.value for m in result.metrics}
    assert metrics["error"] == 1 and metrics["escalate"] == 1


def test_an_old_task_with_its_operation_still_running_is_left_waiting(cloud, node, os_config, fakebin):
    running = cloud.add_server("cmp1", name="rebooting", task_state="rebooting", updated=LONG_AGO)
    cloud.add_action(running, "reboot", LONG_AGO, [("compute_reboot_instance", LONG_AGO, None)])
    queued = cloud.add_server("cmp1", name="queued", task_state="rebooting", updated=LONG_AGO)
    recent = cloud.add_server("cmp1", name="recent", task_state="rebooting", updated=LONG_AGO)
    cloud.add_action(recent, "reboot", RECENT)
    fakebin.domains([dom(cloud, s, "running") for s in (node, running, queued, recent)])
    cloud.queues["compute.cmp1"]["messages"] = 1          # a cast still waits for the compute
    path = consistency_config(os_config, dry_run=False)
    result = check(path)
    assert result.status is Status.WARNING, result
    found = {f["subject"]: f for f in result.data["findings"]}
    assert found[running]["severity"] == "wait"
    assert "waiting on cmp1's compute (event compute_reboot_instance of its last action reboot is " \
           "still running)" in found[running]["detail"]
    assert found[queued]["severity"] == "wait" and "1 message(s) still queued" in found[queued]["detail"]
    assert recent not in found                             # its last action is recent
    outcome = reconcile(path)
    assert outcome.status == "skipped" and outcome.guard == "waiting", outcome.to_dict()
    assert not cloud.calls("POST", "/action")
    assert all(cloud.servers[s]["task_state"] == "rebooting" for s in (running, queued, recent))


def test_a_power_repair_waits_while_a_cast_is_queued_for_a_consuming_compute(cloud, node, os_config,
                                                                           fakebin):
    # A frozen (SIGSTOP) or busy nova-compute keeps its consumer while casts pile up: an
    # os-stop sent then is not processed and leaves the instance in powering-off (seen
    # on real Nova, tests/openstack/test_real_consistency.py).
    off = cloud.add_server("cmp1", name="off", updated=RECENT)
    fakebin.domains([dom(cloud, node, "running"), dom(cloud, off, "shut off")])
    cloud.queues["compute.cmp1"]["messages"] = 2
    path = consistency_config(os_config, dry_run=False)
    result = check(path)
    found = {f["subject"]: f for f in result.data["findings"]}
    assert found[off]["severity"] == "wait", found
    assert "waiting on cmp1's compute (2 message(s) still queued for it; an os-stop would not be " \
           "processed now)" in found[off]["detail"]
    outcome = reconcile(path)
    assert outcome.status == "skipped" and outcome.guard == "waiting", outcome.to_dict()
    assert not cloud.calls("POST", "/action") and cloud.servers[off]["vm_state"] == "active"
    cloud.queues["compute.cmp1"]["messages"] = 0          # drained: now the repair is safe
    outcome = reconcile(path)
    assert outcome.status == "remediated", outcome.to_dict()
    assert cloud.servers[off]["vm_state"] == "stopped"


def test_a_migration_in_progress_is_never_stuck(cloud, node, os_config, fakebin):
    moving = cloud.add_server("cmp1", name="moving", task_state="migrating", updated=LONG_AGO)
    cloud.migrations.append({"id": 7, "instance_uuid": moving, "source_compute": "cmp1",
                             "dest_compute": "cmp2", "status": "running", "migration_type": "live-migration",
                             "created_at": LONG_AGO, "updated_at": None})
    fakebin.domains([dom(cloud, node, "running"), dom(cloud, moving, "running")])
    result = check(consistency_config(os_config))
    (finding,) = result.data["findings"]
    assert finding["severity"] == "wait"
    assert "migration 7 (live-migration, running, cmp1 -> cmp2) in progress" in finding["detail"]


def test_a_migration_whose_hosts_nova_hides_is_counted_as_in_progress(cloud, node, os_config, fakebin):
    """Without the os-migrations:index:host policy Nova still filters by host but blanks
    both hosts of each row: no proof that nothing moves, so the instance waits."""
    moving = cloud.add_server("cmp1", name="moving", task_state="migrating", updated=LONG_AGO)
    cloud.migrations.append({"id": 8, "instance_uuid": moving, "source_compute": "cmp1",
                             "dest_compute": "cmp2", "status": "running", "migration_type": "live-migration",
                             "created_at": LONG_AGO, "updated_at": None})
    cloud.hide_migration_hosts = True
    fakebin.domains([dom(cloud, node, "running"), dom(cloud, moving, "running")])
    result = check(consistency_config(os_config))
    (finding,) = result.data["findings"]
    assert finding["severity"] == "wait", finding
    assert "migration 8 (live-migration, running, hosts hidden: policy " \
           "os_compute_api:os-migrations:index:host not granted) in progress" in finding["detail"]


def test_no_repair_while_the_compute_is_down_or_deaf(cloud, node, os_config, fakebin):
    off = cloud.add_server("cmp1", updated=RECENT)
    stuck = cloud.add_server("cmp1", task_state="rebooting", updated=LONG_AGO)
    fakebin.domains([dom(cloud, node, "running"), dom(cloud, off, "shut off"), dom(cloud, stuck, "running")])
    path = consistency_config(os_config, dry_run=False)
    # up, but nothing consumes its queue: waiting, and the deaf compute escalated
    cloud.queues["compute.cmp1"]["consumers"] = 0
    result = check(path)
    assert result.status is Status.CRITICAL
    kinds = {(f["kind"], f["severity"]) for f in result.data["findings"]}
    assert kinds == {("compute-deaf", "escalate"), ("power-mismatch", "wait"), ("stuck-task", "wait")}
    outcome = reconcile(path)
    assert outcome.status == "failed" and not cloud.calls("POST", "/action"), outcome.to_dict()
    # down: UNKNOWN naming the compute-node check, and the remediation is skipped
    cloud.hosts["cmp1"]["alive"] = False
    result = check(path)
    assert result.status is Status.UNKNOWN
    assert result.summary.startswith("cmp1's nova-compute is down")
    assert "the compute-node check owns this incident" in result.summary
    outcome = reconcile(path)
    assert outcome.status == "skipped" and outcome.guard == "deferred", outcome.to_dict()
    assert not cloud.calls("POST", "/action")
    assert cloud.servers[off]["vm_state"] == "active" and cloud.servers[stuck]["task_state"] == "rebooting"


def test_without_the_queue_s_evidence_nothing_is_repaired(cloud, node, os_config, fakebin):
    off = cloud.add_server("cmp1", updated=RECENT)
    fakebin.domains([dom(cloud, node, "running"), dom(cloud, off, "shut off")])
    path = consistency_config(os_config, {"rpc": {"api_url": ""}}, dry_run=False)
    result = check(path)
    (finding,) = result.data["findings"]
    assert finding["severity"] == "wait"
    assert "openstack.consistency.rpc.api_url is not set" in finding["detail"]
    outcome = reconcile(path)
    assert outcome.status == "skipped" and not cloud.calls("POST", "/action")


def test_the_target_never_decides_the_host(cloud, node, os_config, fakebin):
    elsewhere = cloud.add_server("cmp2", updated=RECENT)
    fakebin.domains([dom(cloud, node, "running")])
    path = consistency_config(os_config, dry_run=False)
    outcome = perform(Reconcile(Config.load(path)), "cmp2", Trigger(source="test"))
    assert outcome.status == "refused" and outcome.guard == "host", outcome.to_dict()
    assert "'cmp2' is not this node's Nova host 'cmp1'" in outcome.reason
    result, _ = run_check("openstack-consistency", ["--config", path, "--host", "cmp2"])
    assert result.status is Status.UNKNOWN and "--host cmp2 is not this node's Nova host cmp1" in result.summary
    assert cloud.servers[elsewhere]["vm_state"] == "active" and not cloud.calls("POST", "/action")


def test_restart_compute_refuses_while_an_operation_is_in_flight(cloud, node, os_config, fakebin):
    deleting = cloud.add_server("cmp1", name="deleting", task_state="deleting", updated=LONG_AGO)
    busy = cloud.add_server("cmp1", name="busy", task_state="image_uploading", updated=RECENT)
    fakebin.domains([dom(cloud, node, "running"), dom(cloud, busy, "running")])
    path = consistency_config(os_config, {"restart_compute": ["systemctl", "restart", "nova-compute"]},
                              dry_run=False)
    outcome = reconcile(path)
    assert outcome.status == "refused" and outcome.guard == "in-flight", outcome.to_dict()
    assert f"busy ({busy}): active/image_uploading" in outcome.reason
    assert not fakebin.calls("systemctl")
    cloud.servers[busy]["task_state"] = None
    outcome = reconcile(path, dry_run=True)
    assert outcome.status == "dry-run", outcome.to_dict()
    (step,) = outcome.plan
    assert step.argv == ["systemctl", "restart", "nova-compute"]
    assert step.details == ["in flight on cmp1: nothing else (3 instance(s) read, no migration in progress)"]
    assert cloud.servers[deleting]["task_state"] == "deleting"


def test_neutron_and_cinder_surveys_can_be_switched_off(cloud, node, os_config, fakebin):
    cloud.catalog = ("compute",)
    path = consistency_config(os_config, {"network": False, "volumes": False})
    result = check(path)
    assert result.status is Status.OK, result
    assert "Neutron not surveyed (openstack.consistency.network: false or --no-network)" in result.details
    assert not cloud.calls(contains="/network/") and not cloud.calls(contains="/volume/")


def test_reset_error_is_no_longer_an_action(cloud, node, os_config):
    from autoremedy.config import ConfigError
    path = consistency_config(os_config, actions=["stop", "reset-error"])
    with pytest.raises(ConfigError, match="a reset to ERROR is never a repair"):
        Reconcile(Config.load(path))


def test_dangerous_findings_are_left_alone_and_escalated_with_evidence(cloud, node, os_config, fakebin):
    off = cloud.add_server("cmp1", updated=RECENT)
    elsewhere = cloud.add_server("cmp2", name="moved", updated=RECENT)
    fakebin.domains([dom(cloud, node, "running"), dom(cloud, off, "shut off"),
                     dom(cloud, elsewhere, "running")])
    cloud.agents.append({"id": "ag1", "host": "cmp1", "binary": "neutron-openvswitch-agent",
                         "agent_type": "Open vSwitch agent", "alive": False, "admin_state_up": True})
    path = consistency_config(os_config, dry_run=False)
    outcome = reconcile(path)
    assert outcome.status == "partial" and outcome.escalate      # its repairs landed, the rest is a human's
    assert "verification failed: CRITICAL" in outcome.reason and "Nova places it on cmp2" in outcome.reason
    assert cloud.servers[off]["vm_state"] == "stopped"             # the safe fix still happened
    assert cloud.servers[elsewhere]["host"] == "cmp2"              # the dangerous one untouched
    assert ["systemctl", "restart", "neutron-openvswitch-agent"] in fakebin.calls("systemctl")
    evidence = [n for n in outcome.notes if "evidence in" in n]
    assert evidence
    with open(evidence[0].split("evidence in ")[1]) as handle:
        record = json.load(handle)
    assert record["findings"][0]["kind"] == "elsewhere"
    assert record["findings"][0]["evidence"]["libvirt"]["state"] == "running"


def test_a_host_outside_the_allowlist_is_refused(cloud, node, os_config):
    path = consistency_config(os_config, host_patterns=["net*"])
    outcome = reconcile(path)
    assert outcome.status == "refused" and outcome.guard == "allowlist"


@pytest.mark.integration
def test_cli_check_runs_virsh_through_the_boundary(cloud, node, os_config, fakebin, run_cli, env_for):
    off = cloud.add_server("cmp1", updated=RECENT)
    fakebin.domains([dom(cloud, node, "running"), dom(cloud, off, "shut off")])
    ran = run_cli("check", "openstack-consistency", "--config", consistency_config(os_config), env=env_for)
    assert ran.returncode == 1, ran
    assert ran.stdout.startswith("OPENSTACK-CONSISTENCY WARNING: ")
    assert "ACTIVE in Nova but shut off here (auto: stop)" in ran.stdout
    assert os.path.exists(os.path.join(fakebin.dir, "calls.log"))


def test_a_cloud_without_cinder_or_neutron_is_checked_for_the_rest(cloud, node, os_config, fakebin):
    cloud.catalog = ("compute",)
    off = cloud.add_server("cmp1", updated=RECENT)
    fakebin.domains([dom(cloud, node, "running"), dom(cloud, off, "shut off")])
    result = check(consistency_config(os_config))
    assert result.status is Status.WARNING, result
    assert "no block-storage service in the catalog: volumes not checked" in result.details
    assert "no network service in the catalog: agents and ports not checked" in result.details


# --- no harm (tests/noharm_harness.py) -------------------------------------------------------------
# The fake cloud's own records are the independent view here; the real-Nova cases
# are in test_real_consistency.py.

class PowerMismatchCase(Case):
    """cmp1: a healthy VM and one whose domain is shut off; cmp2 carries a bystander."""

    cls_name = "openstack-consistency"
    remediation = Reconcile

    def __init__(self, cloud, fakebin, path, healthy):
        self.cloud, self.fakebin, self.path = cloud, fakebin, path
        self.healthy = healthy
        self.off = cloud.add_server("cmp1", name="off-here", updated=RECENT)
        self.bystander = cloud.add_server("cmp2", name="bystander", updated=RECENT)
        fakebin.domains([dom(cloud, healthy, "running"), dom(cloud, self.off, "running")])

    def snapshot(self):
        with self.cloud.lock:
            return {f"instance {i}": (s["host"], s["vm_state"], s["task_state"])
                    for i, s in self.cloud.servers.items()}

    def inject(self):
        self.fakebin.domains([dom(self.cloud, self.healthy, "running"),
                              dom(self.cloud, self.off, "shut off")])

    def remediate(self):
        remediation = self.remediation(Config.load(self.path))
        return perform(remediation, "cmp1", Trigger(source="test")).to_dict()

    def allowed(self):
        return {f"instance {self.off}"}


class StopsABystander(Reconcile):
    """Deliberately harmful: the run also stops an instance of another host."""

    victim = None

    def run(self, target, plan):
        notes = super().run(target, plan)
        self.conn().compute.stop_server(self.victim)
        return notes


class WidenedCase(PowerMismatchCase):
    cls_name = "openstack-consistency"
    remediation = StopsABystander

    def remediate(self):
        StopsABystander.victim = self.bystander
        return super().remediate()


def test_no_harm_a_power_repair_changes_only_its_instance(cloud, node, os_config, fakebin):
    case = PowerMismatchCase(cloud, fakebin, consistency_config(os_config, dry_run=False), node)
    run = expect_no_harm(case)
    assert run.after[f"instance {case.off}"][1] == "stopped"
    assert run.outcome["reach"][0]["names"] == [case.off]
    assert {inv["name"]: inv["holds"] for inv in run.outcome["invariants"]} == \
        {"instances in the cloud": True, "instances in ERROR": True}


def test_harm_a_widened_run_that_stops_a_bystander_fails_naming_it(cloud, node, os_config, fakebin):
    case = WidenedCase(cloud, fakebin, consistency_config(os_config, dry_run=False), node)
    run = expect_harm(case, named=[f"instance {case.bystander} changed outside the plan"])
    assert run.outcome["outcome"] == "failed"
    assert run.differences == [f"instance {case.bystander}: ('cmp2', 'active', None) -> "
                               "('cmp2', 'stopped', None)"]


# --- restart-compute: the instances whose stuck delete it resumes are its reach ---------------------

class StuckDeleteCase(PowerMismatchCase):
    """cmp1: a healthy VM and an instance stuck 'deleting' (its domain still defined);
    cmp2 carries a bystander. nova-compute is restarted through the default
    ``systemctl restart nova-compute``, which the fake systemctl turns into the fake
    cloud's restart: the delete resumes and completes ``cloud.delete_seconds`` later."""

    def __init__(self, cloud, fakebin, path, healthy):
        self.cloud, self.fakebin, self.path = cloud, fakebin, path
        self.healthy = healthy
        self.deleting = cloud.add_server("cmp1", name="deleting", task_state="deleting",
                                         updated=LONG_AGO)
        cloud.add_action(self.deleting, "delete", LONG_AGO,
                         [("compute_terminate_instance", LONG_AGO, LONG_AGO)])
        self.bystander = cloud.add_server("cmp2", name="bystander", updated=RECENT)
        fakebin.domains([dom(cloud, healthy, "running"), dom(cloud, self.deleting, "running")])
        fakebin.restart_hook("nova-compute", f"{cloud.fake.url}/_fake/nova-compute/cmp1/restart")

    def inject(self):
        pass                         # the delete is already stuck

    def allowed(self):
        return {f"instance {self.deleting}"}


def test_restart_compute_whose_stuck_delete_completes_is_remediated(cloud, node, os_config, fakebin):
    case = StuckDeleteCase(cloud, fakebin, consistency_config(os_config, dry_run=False), node)
    run = expect_no_harm(case)
    assert (run.outcome["reason"], run.outcome["verify"]["status"]) == ("verified OK", "OK"), run
    assert run.after[f"instance {case.deleting}"] == ("cmp1", "deleted", None)
    assert ["systemctl", "restart", "nova-compute"] in fakebin.calls("systemctl")
    assert cloud.compute_restarts == ["cmp1"]
    assert [s["step"] for s in run.outcome["plan"]] == [
        f"restart nova-compute to resume the stuck delete of {case.deleting}"]
    instances = run.outcome["reach"][0]
    assert (instances["names"], instances["changed"]) == ([case.deleting], [case.deleting])
    invariants = {inv["name"]: inv for inv in run.outcome["invariants"]}
    count = invariants["instances in the cloud"]
    assert (count["before"], count["after"], count["holds"]) == (2, 2, True)
    assert count["rule"] == ("not fewer, not counting the 1 instance(s) whose stuck delete the "
                             f"restart resumes: {case.deleting}")
    assert invariants["instances in ERROR"]["holds"] is True
    assert all(d["uuid"] != case.deleting for d in fakebin.load()["domains"])


@pytest.mark.parametrize("harm", ["deleted", "stopped"])
def test_harm_a_restart_that_also_takes_a_bystander_fails_naming_it(cloud, node, os_config, fakebin,
                                                                    harm):
    """The restart resumes the planned delete, and also deletes the bystander of cmp2 or
    stops cmp1's healthy instance: the planned delete does not excuse either."""
    case = StuckDeleteCase(cloud, fakebin, consistency_config(os_config, dry_run=False), node)
    victim = case.bystander if harm == "deleted" else case.healthy

    def widened(host):
        cloud.servers[victim]["vm_state"] = harm
        if harm == "stopped":        # libvirt agrees, so the check itself stays OK
            fakebin.domains([dom(cloud, case.healthy, "shut off"),
                             dom(cloud, case.deleting, "running")])
    cloud.on_compute_restart = widened
    run = expect_harm(case, named=[f"instance {victim} changed outside the plan"])
    assert run.outcome["outcome"] == "failed", run
    assert f"instance {case.deleting} changed" not in json.dumps(run.outcome["harm"])
    was = "cmp2" if harm == "deleted" else "cmp1"
    assert run.differences == [f"instance {victim}: ('{was}', 'active', None) -> "
                               f"('{was}', '{harm}', None)"]
    assert run.after[f"instance {case.deleting}"] == ("cmp1", "deleted", None)
    holds = {inv["name"]: inv["holds"] for inv in run.outcome["invariants"]}
    assert holds["instances in the cloud"] is (harm != "deleted")
    if harm == "deleted":
        assert "invariant broken: instances in the cloud" in json.dumps(run.outcome["harm"])


def test_restart_compute_whose_delete_never_completes_fails(cloud, node, os_config, fakebin):
    case = StuckDeleteCase(cloud, fakebin, consistency_config(os_config, dry_run=False), node)
    cloud.hang_deletes.add(case.deleting)
    # Nova's record is saved at once (updated now): the check alone, seeing a young task,
    # would pass; "verified" needs the instance gone.
    run = expect_harm(case, named=[f"not in the planned state: {case.deleting} is still "
                                   "active/deleting, planned deleted (its stuck delete resumed "
                                   "by the nova-compute restart)"])
    assert run.outcome["outcome"] == "failed", run
    assert run.outcome["verify"]["status"] == "CRITICAL"
    assert cloud.compute_restarts == ["cmp1"]
    assert run.after[f"instance {case.deleting}"] == ("cmp1", "active", "deleting")
