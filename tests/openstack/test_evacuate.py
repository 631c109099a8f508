"""Evacuating a dead compute host against the fake cloud (openstacksdk over HTTP)."""
import json

import pytest

from osworld import address, deep_merge

from autoremedy.config import Config
from autoremedy.contract.remediation import Trigger, perform
from autoremedy.remediations.compute_node import EvacuateHost


def evacuate(config_path, host="cmp1", dry_run=None, event_id=None):
    remediation = EvacuateHost(Config.load(config_path))
    return perform(remediation, host, Trigger(source="test", event_id=event_id), dry_run=dry_run)


def mixed_instances(cloud, host, n=20):
    """n instances: active, stopped, error, and one caught mid-task (powering-off)."""
    states = ["active", "stopped", "error", "active"]
    ids = []
    for i in range(n):
        vm_state = states[i % len(states)]
        task = "powering-off" if i == 4 else None
        ids.append(cloud.add_server(host, vm_state=vm_state, task_state=task, name=f"vm{i}"))
    return ids


def test_dead_host_with_20_mixed_instances_is_fenced_and_emptied(cloud, computes, os_config):
    computes(6, dead=["cmp1"])
    ids = mixed_instances(cloud, "cmp1")
    before = {i: cloud.servers[i]["vm_state"] for i in ids}
    outcome = evacuate(os_config())
    assert outcome.status == "remediated", outcome.to_dict()
    assert cloud.on_host("cmp1") == []
    for sid in ids:
        srv = cloud.servers[sid]
        assert srv["host"] != "cmp1" and srv["task_state"] is None
        want = before[sid]
        assert srv["vm_state"] == want, (sid, before[sid], srv["vm_state"])
        assert srv["locked"] is False        # locked for the move, unlocked after
    svc = cloud.service_of("cmp1")
    assert svc["forced_down"] and svc["status"] == "disabled"
    assert svc["disabled_reason"].startswith("autoremedy: host failure")
    # fence_compute's order: force down before disable, both before any evacuation
    puts = [(r[3], i) for i, r in enumerate(cloud.requests) if r[0] == "PUT"]
    assert puts[0][0] == {"forced_down": True} and puts[1][0]["status"] == "disabled"
    first_evacuate = min(i for i, r in enumerate(cloud.requests) if r[3] and "evacuate" in r[3])
    assert puts[1][1] < first_evacuate
    # the pinned microversion, and never force / onSharedStorage
    evacuations = [r for r in cloud.requests if r[3] and "evacuate" in r[3]]
    assert len(evacuations) == 20
    assert all(r[2] == (2, 53) and r[3] == {"evacuate": {}} for r in evacuations)
    # before evacuating, Nova needed a reset only for the instance caught mid-task;
    # after landing, the former ERROR instances were put back to error
    resets = [r[1].split("/")[-2] for r in cloud.requests if r[3] and "os-resetState" in r[3]]
    errors = {i for i in ids if before[i] == "error"}
    assert set(resets) - errors == {ids[4]}
    assert errors <= set(resets)
    # listing used compute_host (?host=) across all projects
    assert cloud.calls("GET", "/servers/detail?host=cmp1&all_tenants=True")
    assert cloud.max_evacuations_in_flight <= 4
    assert "20/20 instance(s) evacuated" in " ".join(outcome.notes)


def test_partition_half_the_computes_down_is_refused_without_touching_nova(cloud, computes, os_config):
    computes(6, dead=["cmp1", "cmp2", "cmp3"])
    cloud.add_server("cmp1")
    outcome = evacuate(os_config())
    assert outcome.status == "refused" and outcome.guard == "partition"
    assert "3 of 6 computes are down" in outcome.reason
    assert not cloud.calls("PUT") and not cloud.calls("POST", "/action")


def test_a_live_host_with_a_down_service_is_refused(cloud, computes, os_config):
    computes(4, alive_but_down=["cmp1"])
    cloud.add_server("cmp1")
    outcome = evacuate(os_config())
    assert outcome.status == "refused" and outcome.guard == "precondition"
    assert "cmp1 is alive" in outcome.reason and "ping answers" in outcome.reason
    assert not cloud.calls("PUT")


def test_an_up_service_is_refused(cloud, computes, os_config):
    computes(4)
    cloud.add_server("cmp1")
    outcome = evacuate(os_config())
    assert outcome.status == "refused" and "is up" in outcome.reason


def test_host_not_in_allowlist_is_refused(cloud, computes, os_config):
    computes(3, dead=["cmp1"])
    path = os_config({"remediations": {"compute-node": {"host_patterns": ["other-*"]}}})
    outcome = evacuate(path)
    assert outcome.status == "refused" and outcome.guard == "allowlist"


def test_dry_run_lists_the_plan_and_changes_nothing(cloud, computes, os_config):
    computes(4, dead=["cmp1"])
    ids = mixed_instances(cloud, "cmp1", 4)
    outcome = evacuate(os_config(), dry_run=True)
    assert outcome.status == "dry-run"
    words = [s.description for s in outcome.plan]
    assert words[0].startswith("force nova-compute on cmp1 down")
    assert words[1].startswith("disable nova-compute on cmp1")
    assert words[2].startswith("evacuate 4 instance(s) from cmp1")
    details = "\n".join(outcome.plan[2].details)
    assert all(i in details for i in ids) and "keep stopped" in details and "reset to error" in details
    assert not cloud.calls("PUT") and not cloud.calls("POST", "/action")


def test_a_failed_instance_is_reported_others_continue_and_a_second_run_continues(cloud, computes, os_config):
    computes(4, dead=["cmp1"])
    ids = mixed_instances(cloud, "cmp1", 8)
    broken = ids[1]                       # a stopped instance whose rebuild fails
    cloud.fail_evacuation.add(broken)
    path = os_config()
    first = evacuate(path, event_id="ev-1")
    assert first.status == "failed" and first.escalate
    assert "7/8 instance(s) evacuated" in first.reason and broken in first.reason
    assert [s["id"] for s in cloud.on_host("cmp1")] == [broken]
    assert cloud.servers[broken]["vm_state"] == "error"   # what Nova leaves behind
    cloud.fail_evacuation.clear()
    second = evacuate(path, event_id="ev-2")
    assert second.status == "remediated", second.to_dict()
    # no second force-down, and only the leftover was evacuated again; each run
    # claimed the host in the disabled reason and released the claim at its end
    puts = [r[3] for r in cloud.requests if r[0] == "PUT"]
    assert [p for p in puts if "forced_down" in p] == [{"forced_down": True}]
    reasons = [p["disabled_reason"] for p in puts if "disabled_reason" in p]
    assert len(reasons) == 4 and "; run " in reasons[0] and "instance(s) left by autoremedy run" in reasons[1]
    assert reasons[3].startswith("autoremedy: host failure; evacuated by autoremedy run")
    assert len([r for r in cloud.requests if r[3] and "evacuate" in r[3]]) == 9
    # the state recorded by the first run wins: it was stopped, so it is stopped again
    assert cloud.servers[broken]["vm_state"] == "stopped"


def test_a_host_that_comes_back_mid_way_stops_new_evacuations(cloud, computes, os_config, fakebin):
    cloud.evacuate_seconds = 0.3
    computes(4, dead=["cmp1"])
    mixed_instances(cloud, "cmp1", 12)
    accepted = []

    def host_returns(server_id):
        accepted.append(server_id)
        if len(accepted) == 2:
            fakebin.ping(address("cmp1"), True)
    cloud.on_evacuate = host_returns
    path = os_config({"remediations": {"compute-node": {"concurrency": 2}}})
    outcome = evacuate(path)
    assert outcome.status == "failed"
    assert "came back mid-way" in outcome.reason and "not started" in outcome.reason
    left = len(cloud.on_host("cmp1"))
    assert 0 < left <= 10
    assert len(accepted) < 12
    # a second run now refuses: the host is alive
    again = evacuate(path, event_id="later")
    assert again.status == "refused" and "alive" in again.reason


def test_capacity_shortage_is_refused(cloud, computes, os_config):
    computes(3, dead=["cmp1"], vcpus=4, memory_mb=8192)
    for _ in range(10):
        cloud.add_server("cmp1", vcpus=4, ram=8192)
    path = os_config({"remediations": {"compute-node": {"capacity": {"cpu_allocation_ratio": 1.0}}}})
    outcome = evacuate(path)
    assert outcome.status == "refused" and outcome.guard == "capacity"
    assert "40 vCPU" in outcome.reason


def test_reserved_hosts_receive_the_instances_after_being_enabled(cloud, computes, os_config):
    computes(5, dead=["cmp1"])
    cloud.service_of("cmp5")["status"] = "disabled"
    ids = [cloud.add_server("cmp1") for _ in range(3)]
    path = os_config({"remediations": {"compute-node": {"reserved_hosts": ["cmp5"]}}})
    outcome = evacuate(path)
    assert outcome.status == "remediated", outcome.to_dict()
    assert cloud.service_of("cmp5")["status"] == "enabled"
    assert {cloud.servers[i]["host"] for i in ids} == {"cmp5"}
    bodies = [r[3]["evacuate"] for r in cloud.requests if r[3] and "evacuate" in r[3]]
    assert bodies == [{"host": "cmp5"}] * 3


def test_unreachable_but_powered_on_needs_fencing(cloud, computes, os_config, fakebin):
    computes(4, dead=["cmp1"])
    cloud.add_server("cmp1")
    fakebin.power("bmc1", "on")
    ipmi = {"openstack": {"compute": {"ipmi": {"user": "admin", "password_file": "/nonexistent"},
                                      "hosts": {"cmp1": {"address": address("cmp1"),
                                                         "ipmi": {"address": "bmc1"}}}}}}
    refused = evacuate(os_config(ipmi))
    assert refused.status == "refused" and refused.guard == "fencing"
    fenced = deep({"remediations": {"compute-node": {"fence": True}}}, ipmi)
    outcome = evacuate(os_config(fenced), event_id="fence-run")
    assert outcome.status == "remediated", outcome.to_dict()
    power_calls = [c for c in fakebin.calls("ipmitool") if c[-1] in ("off", "status")]
    assert ["chassis", "power", "off"] == power_calls[1][-3:] or any(c[-1] == "off" for c in power_calls)
    assert all("-P" not in c for c in fakebin.calls("ipmitool"))   # the password never on argv
    assert cloud.on_host("cmp1") == []


def test_a_powered_off_host_is_dead_even_if_ping_is_unavailable(cloud, computes, os_config, fakebin):
    computes(4, dead=["cmp1"])
    cloud.add_server("cmp1")
    fakebin.power("bmc1", "off")
    path = os_config({"openstack": {"compute": {"ipmi": {"user": "admin"},
                                                "hosts": {"cmp1": {"ipmi": {"address": "bmc1"}}}}}})
    outcome = evacuate(path)
    assert outcome.status == "remediated", outcome.to_dict()


def test_an_old_microversion_sends_on_shared_storage_and_never_force(cloud, computes, os_config):
    computes(3, dead=["cmp1"])
    cloud.add_server("cmp1")
    path = os_config({"openstack": {"compute_microversion": "2.11"},
                      "remediations": {"compute-node": {"shared_storage": True}}})
    outcome = evacuate(path)
    assert outcome.status == "remediated", outcome.to_dict()
    bodies = [r for r in cloud.requests if r[3] and "evacuate" in r[3]]
    assert bodies[0][2] == (2, 11) and bodies[0][3] == {"evacuate": {"onSharedStorage": True}}


def test_empty_fenced_host_is_a_noop(cloud, computes, os_config):
    computes(3, dead=["cmp1"])
    path = os_config()
    assert evacuate(path).status == "remediated"     # fence only
    assert evacuate(path, event_id="again").status == "noop"


@pytest.mark.integration
def test_cli_remediate_evacuates_and_prints_per_instance_outcome(cloud, computes, os_config, run_cli, env_for):
    computes(4, dead=["cmp1"])
    for _ in range(3):
        cloud.add_server("cmp1")
    path = os_config()
    dry = run_cli("remediate", "compute-node", "--config", path, "--dry-run", "cmp1", env=env_for)
    assert dry.returncode == 0, dry
    assert "would: evacuate 3 instance(s) from cmp1" in dry.stdout
    done = run_cli("remediate", "compute-node", "--config", path, "--json", "cmp1", env=env_for)
    assert done.returncode == 0, done
    outcome = done.json
    assert outcome["outcome"] == "remediated" and outcome["verify"]["status"] == "OK"
    assert cloud.on_host("cmp1") == []
    with open(f"{Config.load(path).state_dir}/audit.log") as handle:
        audit = [json.loads(line) for line in handle]
    evac = [a for a in audit if a["what"] == "evacuation"]
    assert evac and len(evac[0]["instances"]) == 3 and all(r["result"] == "evacuated" for r in evac[0]["instances"])


def deep(a, b):
    return deep_merge(b, a)


def test_the_class_global_cap_stops_a_second_host(cloud, computes, os_config):
    computes(8, dead=["cmp1", "cmp2"])
    cloud.add_server("cmp1")
    cloud.add_server("cmp2")
    path = os_config({"remediations": {"compute-node": {"guards": {"global_cap": {"max": 1, "per": "1h"}}}}})
    assert evacuate(path, "cmp1").status == "remediated"
    second = evacuate(path, "cmp2")
    assert second.status == "refused" and second.guard == "global_cap"
    assert len(cloud.on_host("cmp2")) == 1


def test_no_credentials_is_a_one_line_refusal(make_config):
    path = make_config({"openstack": {"cloud": "envvars"},
                        "remediations": {"compute-node": {"enabled": True, "host_patterns": ["cmp*"]}}})
    import os
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("OS_")}
    try:
        outcome = evacuate(path, "cmp1")
    finally:
        os.environ.update(saved)
    assert outcome.status in ("refused", "failed") and outcome.escalate
    assert "cannot build the connection" in outcome.reason and "\n" not in outcome.reason


def test_the_dead_keyword_takes_the_first_allowlisted_dead_host(cloud, computes, os_config):
    computes(8, dead=["cmp2", "cmp5"])
    two = cloud.add_server("cmp2")
    five = cloud.add_server("cmp5")
    path = os_config({"remediations": {"compute-node": {"host_patterns": ["cmp5", "cmp6"]}}})
    outcome = evacuate(path, "dead")
    assert outcome.status == "remediated", outcome.to_dict()
    assert cloud.servers[five]["host"] != "cmp5" and cloud.servers[two]["host"] == "cmp2"
    again = evacuate(path, "dead", event_id="next")
    assert again.status == "refused" and "dead but not allowlisted: cmp2" in again.reason


def test_the_first_reading_waits_for_three_quarters_of_the_median_honest_landing(cloud, computes, os_config):
    computes(3, dead=["cmp1"])
    remediation = EvacuateHost(Config.load(os_config()))
    assert remediation._first_look(0.3) == 0.3                 # nothing learned yet: poll_interval
    remediation._landings = [4.0, 1.0, 2.0]
    assert remediation._first_look(0.3) == 1.5                 # 3/4 of the median
    remediation._landings = [0.1]
    assert remediation._first_look(0.3) == 0.3                 # never sooner than poll_interval
    remediation._landings = [100.0]
    assert remediation._first_look(0.3) == 30.0                # never later than 30 s


def test_landings_are_learned_from_instances_seen_before_and_after_they_landed(cloud, computes, os_config):
    computes(3, dead=["cmp1"])
    cloud.evacuate_seconds = 0.4          # several readings (poll_interval 0.05) before each lands
    ids = [cloud.add_server("cmp1", name=f"vm{i}") for i in range(4)]
    remediation = EvacuateHost(Config.load(os_config({"remediations": {"compute-node": {"concurrency": 1}}})))
    outcome = perform(remediation, "cmp1", Trigger(source="test"))
    assert outcome.status == "remediated", outcome.to_dict()
    assert all(cloud.servers[i]["host"] != "cmp1" for i in ids)
    # Midpoints between a reading that saw it still rebuilding and the one that saw it
    # landed: near the double's 0.4 s, never the self-feeding growth of counting the wait.
    assert remediation._landings and all(0 < t < 0.4 + 2.0 for t in remediation._landings), \
        remediation._landings
