"""`autoremedy collect` on the session's real Nova 34 (tests/openstack/realnova.py):
the bundle's records come from real Nova's API through openstacksdk, and its log
lines are real Nova's own logs. Three incidents the operator meets: a boot that
fails (NoValidHost), an evacuation, and a task left stuck by a compute that died
in the middle of it. What the bundle says is checked against what the harness
reads from Nova directly (its API and its database), never against our own code.
"""
import json
import os
import time

import pytest

pytestmark = pytest.mark.integration


def sources(nova):
    """Every log of the real cloud, one source each; each compute's log carries its
    host (logs shipped from several nodes to one place are named service@host)."""
    out = [{"name": name, "path": nova.log(name), "format": "oslo", "host": "controller"}
           for name in ("nova-api", "nova-conductor", "nova-scheduler")]
    out += [{"name": f"nova-compute@{host}", "path": nova.log(f"compute-{host}"), "format": "oslo",
             "host": host} for host in nova.hosts]
    return out


def collect(run_cli, nova_config, nova, tmp_path, *ids, window="5m", without=()):
    chosen = [s for s in sources(nova) if s["name"] not in without]
    config = nova_config({"collect": {"sources": chosen, "out_dir": str(tmp_path / "incidents"),
                                      "baseline": 0}}, name=f"collect-{len(chosen)}.yaml")
    args = ["collect", "--config", config, "--at", "now", "--window", window, "--json"]
    for ident in ids:
        args += ["--id", ident]
    ran = run_cli(*args, timeout=120)
    assert ran.returncode == 0, (ran.stdout, ran.stderr)
    out = json.loads(ran.stdout)
    bundle = out["path"]
    with open(os.path.join(bundle, "summary.json")) as handle:
        summary = json.load(handle)
    return out, summary, bundle


def record(bundle, summary, ident):
    entry = summary["records"][ident]
    with open(os.path.join(bundle, entry["file"])) as handle:
        return json.load(handle)


def test_a_failed_boot_brings_its_fault_its_action_and_the_request_that_ties_them(
        run_cli, nova_config, nova, tmp_path):
    huge = nova.flavor(f"huge-{time.monotonic_ns()}", ram=64 * 1024 * 1024)
    sid = nova.post("/servers", {"server": {"name": "doomed", "imageRef": nova.image_id,
                                            "flavorRef": huge, "networks": "none"}},
                    version="2.74")["server"]["id"]
    nova.wait_servers([sid], lambda s: s["status"] == "ERROR", timeout=60, what="ERROR")
    truth = nova.get(f"/servers/{sid}")["server"]
    actions = nova.get(f"/servers/{sid}/os-instance-actions")["instanceActions"]

    out, summary, bundle = collect(run_cli, nova_config, nova, tmp_path, sid)
    rec = record(bundle, summary, sid)
    assert rec["record"]["status"] == "ERROR" == truth["status"]
    assert "No valid host" in rec["record"]["fault"]["message"] == truth["fault"]["message"]
    create = [a for a in rec["record"]["actions"] if a["action"] == "create"]
    assert [a["request_id"] for a in create] == [a["request_id"] for a in actions if a["action"] == "create"]
    # the request id is what ties Nova's record to the log lines: it is in the graph
    with open(os.path.join(bundle, "graph.json")) as handle:
        nodes = {n["id"] for n in json.load(handle)["nodes"]}
    assert create[0]["request_id"] in nodes and sid in nodes
    # conductor's error is there, as a signature the human reads first
    assert any("No valid host" in s["template"] or "NoValidHost" in s["template"]
               for s in summary["error_signatures"]), summary["error_signatures"]
    assert out["effort"]["size"] != "none"


def test_an_evacuation_shows_where_the_instance_went_and_no_false_host_disagreement(
        run_cli, nova_config, nova, fakebin, tmp_path):
    [sid] = nova.boot("host-a", 1, prefix="evac")
    nova.dead("host-a")
    fakebin.ping("host-a", False)
    service = nova.services()["host-a"]["id"]
    nova.put(f"/os-services/{service}", {"forced_down": True}, version="2.53")
    nova.action(sid, {"evacuate": {}}, version="2.68")
    nova.wait_servers([sid], lambda s: s["status"] == "ACTIVE" and s["task_state"] is None
                      and s["host"] != "host-a", timeout=90, what="evacuated")
    truth = nova.server(sid)
    moved = [m for m in nova.migrations("host-a") if m[0] == sid]

    out, summary, bundle = collect(run_cli, nova_config, nova, tmp_path, sid)
    rec = record(bundle, summary, sid)["record"]
    assert rec["compute_host"] == truth["host"] != "host-a"
    assert [m["dest_compute"] for m in rec["migrations"] if m["migration_type"] == "evacuation"] == \
        [m[2] for m in moved] == [truth["host"]]
    assert "evacuate" in [a["action"] for a in rec["actions"]]
    # host-a's compute logged the boot, the new host's compute the rebuild: the logs and
    # Nova agree on where it is now, so no "host" disagreement is claimed
    with open(os.path.join(bundle, "graph.json")) as handle:
        node = next(n for n in json.load(handle)["nodes"] if n["id"] == sid)
    assert {"nova-compute@host-a", f"nova-compute@{truth['host']}"} <= set(node["services"])
    assert [d for d in summary["disagreements"] if d["rule"] == "host"] == []
    # without the new host's log, only host-a speaks of it: that is a disagreement, named
    _, partial, _ = collect(run_cli, nova_config, nova, tmp_path, sid, without=(f"nova-compute@{truth['host']}",))
    assert [d["text"] for d in partial["disagreements"] if d["rule"] == "host"] == [
        f"nova-compute on host-a logs about instance {sid}; Nova says its host is {truth['host']}"]


def test_a_task_stuck_on_a_dead_compute_is_in_the_record_the_logs_cannot_show(
        run_cli, nova_config, nova, tmp_path):
    [sid] = nova.boot("host-b", 1, prefix="stuck")
    nova.dead("host-b")
    # nova-api still accepts the stop (the service is down, not disabled) and casts it
    # to a compute that is not there: the instance stays powering-off
    nova.action(sid, {"os-stop": None})
    nova.wait_servers([sid], lambda s: s["task_state"] == "powering-off", timeout=30, what="powering-off")

    out, summary, bundle = collect(run_cli, nova_config, nova, tmp_path, sid)
    rec = record(bundle, summary, sid)["record"]
    assert rec["task_state"] == "powering-off" and rec["compute_host"] == "host-b"
    stop = [a for a in rec["actions"] if a["action"] == "stop"]
    assert len(stop) == 1
    # the action never reached a compute: no event finished
    assert not any(e.get("finish_time") for e in stop[0].get("events") or [])
