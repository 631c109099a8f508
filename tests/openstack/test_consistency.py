"""Nova vs libvirt (fake virsh) vs Neutron/Cinder on one node, and the guarded reconciliation."""
import json
import os
import time
import uuid

import pytest

from autoremedy.cli import run_check
from autoremedy.config import Config
from autoremedy.remediation import Trigger, perform
from autoremedy.remediations.openstack_consistency import Reconcile
from autoremedy.result import Status

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


def consistency_config(os_config, **remediation):
    section = {"enabled": True, "host_patterns": ["cmp*"], "verify_timeout": 2}
    section.update(remediation)
    return os_config({"openstack": {"consistency": {
        "host": "cmp1", "stuck_after": "30m", "virsh": ["virsh", "-r"],
        "agent_units": {"neutron-openvswitch-agent": "neutron-openvswitch-agent"}}},
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
    assert kinds[("stuck-task", building)]["action"] == "reset-error"
    assert ("stuck-task", young) not in kinds               # under the threshold
    assert kinds[("missing-domain", gone)]["severity"] == "escalate"
    assert "Nova places it on cmp2" in kinds[("elsewhere", elsewhere)]["detail"]
    assert kinds[("orphan-domain", orphan)]["severity"] == "escalate"
    assert kinds[("dead-agent", "ag1")]["action"] == "restart-agent"
    assert ("port-down", "p1") in kinds and ("volume-detaching", "vol1") in kinds
    metrics = {m.label: m.value for m in result.metrics}
    assert metrics["auto"] == 4 and metrics["escalate"] == 6
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


def test_safe_fixes_are_applied_and_verified(cloud, node, os_config, fakebin):
    off = cloud.add_server("cmp1", updated=RECENT)
    stuck = cloud.add_server("cmp1", task_state="image_snapshot", updated=LONG_AGO)
    building = cloud.add_server("cmp1", vm_state="building", task_state="spawning", updated=LONG_AGO)
    fakebin.domains([dom(cloud, node, "running"), dom(cloud, off, "shut off"), dom(cloud, stuck, "running")])
    outcome = reconcile(consistency_config(os_config, dry_run=False))
    assert outcome.status == "remediated", outcome.to_dict()
    assert cloud.servers[off]["vm_state"] == "stopped"
    assert (cloud.servers[stuck]["vm_state"], cloud.servers[stuck]["task_state"]) == ("active", None)
    assert cloud.servers[building]["vm_state"] == "error"


def test_dangerous_findings_are_left_alone_and_escalated_with_evidence(cloud, node, os_config, fakebin):
    off = cloud.add_server("cmp1", updated=RECENT)
    elsewhere = cloud.add_server("cmp2", name="moved", updated=RECENT)
    fakebin.domains([dom(cloud, node, "running"), dom(cloud, off, "shut off"),
                     dom(cloud, elsewhere, "running")])
    cloud.agents.append({"id": "ag1", "host": "cmp1", "binary": "neutron-openvswitch-agent",
                         "agent_type": "Open vSwitch agent", "alive": False, "admin_state_up": True})
    path = consistency_config(os_config, dry_run=False)
    outcome = reconcile(path)
    assert outcome.status == "failed" and outcome.escalate
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
