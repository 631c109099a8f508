"""compute-node on a real Nova 34 + Placement 16 (tests/openstack/realnova.py).

Every reading here goes to Nova's API, its database or nova-api's log directly
(the harness), never through autoremedy's code. Loopback answers every probe,
so a "dead" host is one the ping stand-in (tests/openstack/fakebin.py, on the
subprocess boundary's PATH) does not answer for, and whose nova-compute the
harness has SIGKILLed.
"""
import json
import os
import subprocess
import sys
import time

import pytest

from noharm_harness import Case, expect_harm, expect_no_harm

from autoremedy.config import Config
from autoremedy.contract.remediation import Trigger, perform
from autoremedy.remediations.compute_node import EvacuateHost

pytestmark = pytest.mark.integration

CONF = {"remediations": {"compute-node": {"claim_settle": 1}}}


def kill(nova, fakebin, host="host-a"):
    """The host dies: its nova-compute SIGKILLed, its address silent, Nova sees it down
    (at once: realnova's ``dead``; test_detection_dead_alive_and_unconfirmed waits)."""
    nova.dead(host)
    fakebin.ping(host, False)


def remediate(run_cli, fakebin, config, *args, timeout=300):
    ran = run_cli("remediate", "compute-node", "--config", config, *args, "--json",
                  env={"AUTOREMEDY_EXEC_PATH": fakebin.path}, timeout=timeout)
    try:
        out = json.loads(ran.stdout)
    except ValueError:
        raise AssertionError(f"no JSON outcome: {ran}") from None
    out["_exit"] = ran.returncode
    return out


def check(run_cli, fakebin, config):
    ran = run_cli("check", "compute-node", "--config", config, "--format", "json",
                  env={"AUTOREMEDY_EXEC_PATH": fakebin.path}, timeout=120)
    return ran.returncode, json.loads(ran.stdout)


def audit(state_dir, what=None):
    path = os.path.join(str(state_dir), "audit.log")
    rows = [json.loads(line) for line in open(path, encoding="utf-8")] if os.path.exists(path) else []
    return [r for r in rows if what is None or r["what"] == what]


def in_flight(records):
    """The most evacuations Nova had open at once, from its migration records
    (created -> updated, whole seconds, half-open)."""
    edges = sorted([(r[4], 1) for r in records] + [(r[5], -1) for r in records],
                   key=lambda e: (e[0], e[1]))
    now = peak = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


# --- 1. detection ------------------------------------------------------------------------------

def test_detection_dead_alive_and_unconfirmed(nova, fakebin, nova_config, run_cli):
    config = nova_config(CONF)
    rc, out = check(run_cli, fakebin, config)
    assert rc == 0 and out["status"] == 0, out
    killed = time.monotonic()
    nova.kill_compute("host-a")
    fakebin.ping("host-a", False)
    while True:                     # the check, probed every second like a monitor would
        rc, out = check(run_cli, fakebin, config)
        if rc == 2:
            break
        assert time.monotonic() - killed < nova.service_down_time + nova.report_interval + 1 + 10, out
        # service_down_time + a report + the DB's whole seconds + a probe
        time.sleep(1)
    assert "host-a dead" in out["summary"] and out["metrics"]["dead"] == 1
    # the same down service on a host that answers: alive, and the remediation refuses
    fakebin.ping("host-a", True)
    rc, out = check(run_cli, fakebin, config)
    assert rc == 1 and "host-a nova-compute down but host alive" in out["summary"]
    refused = remediate(run_cli, fakebin, config, "host-a")
    assert refused["outcome"] == "refused" and "host-a is alive" in refused["reason"]
    # no probe possible: unconfirmed, refused
    blind = nova_config(dict(CONF, openstack={"compute": {"probe": {"icmp": False, "tcp_ports": []}}}),
                        name="blind.yaml")
    rc, out = check(run_cli, fakebin, blind)
    assert rc == 1 and "host state unconfirmed" in out["summary"]
    refused = remediate(run_cli, fakebin, blind, "host-a")
    assert refused["outcome"] == "refused" and "cannot confirm host-a is down" in refused["reason"]
    assert nova.services()["host-a"]["forced_down"] is False      # nothing was touched


# --- 2. thirty instances in mixed states ---------------------------------------------------------

def mixed(nova, host, n):
    """n servers: active, stopped, paused, ERROR, one stuck in a task state (its
    compute "died" mid-operation) and one still building; returns {id: kind}."""
    ids = nova.boot(host, n)
    kinds = {}
    for i, sid in enumerate(ids):
        kind = ["active", "stopped", "paused", "error", "active"][i % 5]
        if i == 1:
            kind = "stuck"
        elif i == 2:
            kind = "building"
        kinds[sid] = kind
        if kind == "stopped":
            nova.action(sid, {"os-stop": None})
        elif kind == "paused":
            nova.action(sid, {"pause": None})
        elif kind == "error":
            nova.action(sid, {"os-resetState": {"state": "error"}})
    want = {"active": "ACTIVE", "stuck": "ACTIVE", "building": "ACTIVE", "stopped": "SHUTOFF",
            "paused": "PAUSED", "error": "ERROR"}
    nova.wait_servers(ids, lambda s: s and s["task_state"] is None, what="settled")
    now = nova.servers()
    assert all(now[i]["status"] == want[kinds[i]] for i in ids), now
    return kinds


def fault(nova, kinds):
    """Put the stuck and building ones in their states in the cell database (what
    a nova-compute killed mid-operation leaves behind)."""
    for sid, kind in kinds.items():
        if kind == "stuck":
            nova.sql(f"UPDATE instances SET task_state = 'powering-off' WHERE uuid = '{sid}'")
        elif kind == "building":
            nova.sql(f"UPDATE instances SET vm_state = 'building', task_state = 'spawning' "
                     f"WHERE uuid = '{sid}'")


LANDS = {"active": "ACTIVE", "stuck": "ACTIVE", "building": "ACTIVE", "stopped": "SHUTOFF",
         "paused": "PAUSED", "error": "ERROR"}


def test_thirty_mixed_instances_fenced_and_evacuated_three_at_a_time(nova, fakebin, nova_config, run_cli,
                                                                      state_dir):
    kinds = mixed(nova, "host-a", 30)
    fault(nova, kinds)
    fakebin.power("host-a-ipmi", "on")
    config = nova_config({"openstack": {"compute": {"ipmi": {"user": "admin", "address": "{host}-ipmi"}}},
                          "remediations": {"compute-node": {"fence": True, "reserved_hosts": ["host-b"],
                                                            "claim_settle": 1}}})
    kill(nova, fakebin)
    dry = remediate(run_cli, fakebin, config, "host-a", "--dry-run")
    assert dry["outcome"] == "dry-run", dry
    details = "\n".join(dry["plan"][-1]["details"])
    building = [i for i, k in kinds.items() if k == "building"][0]
    assert f"{building} " in details and "it never finished building" in details
    assert details.count("keep stopped") == sum(k == "stopped" for k in kinds.values())
    assert details.count("pause again") == sum(k == "paused" for k in kinds.values())
    assert dry["reach"][0]["names"] and set(dry["reach"][0]["names"]) == set(kinds)
    mark = nova.log_size()
    out = remediate(run_cli, fakebin, config, "host-a")
    assert out["outcome"] == "remediated", out
    assert not out["harm"], out["harm"]
    # fenced first: the BMC stand-in was asked to power off before any evacuation
    steps = [n.split(":")[0] for n in out["notes"]]
    assert steps[0] == "fence host-a" and steps.index("fence host-a") < \
        [i for i, s in enumerate(steps) if s.startswith("evacuate 30")][0]
    assert ["chassis", "power", "off"] == fakebin.calls("ipmitool")[-2][-3:] or \
        any(c[-3:] == ["chassis", "power", "off"] for c in fakebin.calls("ipmitool"))
    now = nova.servers()
    for sid, kind in kinds.items():
        assert now[sid]["host"] == "host-b", (sid, now[sid])          # reserved_hosts honoured
        assert now[sid]["status"] == LANDS[kind] and now[sid]["task_state"] is None, (kind, now[sid])
        assert not now[sid]["locked"]
    # reported per instance, the building one honestly
    lines = [n for n in out["notes"] if n.split(" ")[0] in kinds]
    assert len(lines) == 30
    assert [n for n in lines if n.startswith(building)][0].endswith("(nothing to give back)")
    # never more than 3 in flight, by Nova's own records; one evacuate call each
    records = nova.migrations("host-a")
    assert len(records) == 30 and in_flight(records) <= 3
    assert nova.evacuate_calls(mark) == {sid: 1 for sid in kinds}
    svc = nova.services()["host-a"]
    assert svc["forced_down"] and svc["status"] == "disabled"
    assert svc["disabled_reason"].startswith("autoremedy: host failure; evacuated by autoremedy run")
    assert audit(state_dir, "evacuation")[-1]["result"] == "ok"


# --- 3 + 6. the stale-state defect, and the way back ---------------------------------------------

def test_a_state_from_an_earlier_incident_never_overrides_what_nova_reports(nova, fakebin, nova_config,
                                                                            run_cli, state_dir):
    config = nova_config(CONF)
    x, y = nova.boot("host-a", 2)
    kill(nova, fakebin)
    first = remediate(run_cli, fakebin, config, "host-a")
    assert first["outcome"] == "remediated", first
    assert nova.server(x)["status"] == "ACTIVE"
    # the way back: the host is repaired (nova-compute started again), then --restore
    nova.start_compute("host-a")
    fakebin.ping("host-a", True)
    back = remediate(run_cli, fakebin, config, "host-a", "--restore")
    assert back["outcome"] == "remediated", back
    steps = [n.split(":")[0] for n in back["notes"]]
    assert steps == ["wait until nova-compute on host-a reports again and has removed its evacuated "
                     "instances (no 'done' evacuation records left)", "un-force nova-compute on host-a",
                     "wait until Nova reports nova-compute on host-a up", "enable nova-compute on host-a"]
    svc = nova.services()["host-a"]
    assert (svc["state"], svc["status"], svc["forced_down"]) == ("up", "enabled", False)
    # the owner stops X and cold-migrates it back to host-a (schedulable again: no
    # COMPUTE_STATUS_DISABLED trait left behind)
    nova.action(x, {"os-stop": None})
    nova.wait_servers([x], lambda s: s["status"] == "SHUTOFF")
    nova.action(x, {"migrate": {"host": "host-a"}}, version="2.56")
    nova.wait_servers([x], lambda s: s["status"] == "VERIFY_RESIZE", what="migrated")
    nova.action(x, {"confirmResize": None})
    nova.wait_servers([x], lambda s: s["status"] == "SHUTOFF" and s["host"] == "host-a"
                      and s["task_state"] is None, what="back on host-a, stopped")
    # host-a dies again
    kill(nova, fakebin)
    dry = remediate(run_cli, fakebin, config, "host-a", "--dry-run")
    assert any(d.startswith(x) and d.endswith("keep stopped") for d in dry["plan"][-1]["details"]), dry
    second = remediate(run_cli, fakebin, config, "host-a")
    assert second["outcome"] == "remediated", second
    assert nova.server(x)["status"] == "SHUTOFF" and nova.server(x)["host"] != "host-a"
    assert any(n.startswith(x) and "SHUTOFF, as it was" in n for n in second["notes"]), second["notes"]
    # the incident's memory is gone once its run moved everything
    saved = json.load(open(os.path.join(str(state_dir), "compute-node", "host-a.json")))
    assert "incident" not in saved


# --- 4. partial failure, then resumed --------------------------------------------------------------

def test_no_valid_host_lists_what_was_done_and_a_second_run_finishes(nova, fakebin, nova_config, run_cli,
                                                                      state_dir):
    big = nova.flavor("big", 500000)
    filler = nova.flavor("filler", 400000)
    nova.boot("host-b", 1, prefix="filler", flavor=filler)     # host-b keeps no room for "big"
    small = nova.boot("host-a", 3)
    (large,) = nova.boot("host-a", 1, prefix="large", flavor=big)
    nova.action(large, {"os-stop": None})
    nova.wait_servers([large], lambda s: s["status"] == "SHUTOFF")
    hc = nova.services()["host-c"]["id"]
    nova.put(f"/os-services/{hc}", {"status": "disabled", "disabled_reason": "maintenance"})
    config = nova_config({"remediations": {"compute-node": {"capacity": {"check": False},
                                                            "claim_settle": 1}}})
    kill(nova, fakebin)
    first = remediate(run_cli, fakebin, config, "host-a")
    assert first["outcome"] == "failed", first
    reason = first["reason"]
    assert "3/4 instance(s) evacuated" in reason and large in reason and "No valid host" in reason
    assert "force nova-compute on host-a down: forced down" in reason
    assert "disable nova-compute on host-a" in reason
    assert all(f"{s} -> host-b" in reason for s in small)
    rows = audit(state_dir, "evacuation")
    assert rows[-1]["result"] == "failed" and {r["id"]: r["result"] for r in rows[-1]["instances"]} == \
        {**{s: "evacuated" for s in small}, large: "failed"}
    assert nova.server(large)["host"] == "host-a" and nova.server(large)["status"] == "ERROR"
    # room is made: the second run moves only what is left, and gives it back stopped
    nova.put(f"/os-services/{hc}", {"status": "enabled"})
    mark = nova.log_size()
    second = remediate(run_cli, fakebin, config, "host-a")
    assert second["outcome"] == "remediated", second
    assert nova.evacuate_calls(mark) == {large: 1}
    assert nova.server(large)["host"] == "host-c" and nova.server(large)["status"] == "SHUTOFF"
    assert all(nova.server(s)["host"] == "host-b" for s in small)


# --- 5. the host comes back mid-way ---------------------------------------------------------------

def test_the_host_coming_back_mid_way_stops_new_evacuations(nova, fakebin, nova_config, run_cli,
                                                            state_dir):
    ids = nova.boot("host-a", 10)
    config = nova_config({"remediations": {"compute-node": {"concurrency": 1, "claim_settle": 1}}})
    kill(nova, fakebin)
    mark = nova.log_size()
    earlier = len(nova.migrations("host-a"))      # evacuation records of earlier tests
    env = dict(os.environ, AUTOREMEDY_EXEC_PATH=fakebin.path, AUTOREMEDY_STATE_DIR=str(state_dir))
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "autoremedy"), "remediate",
                             "compute-node", "--config", config, "host-a", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while len(nova.migrations("host-a")) < earlier + 2:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    nova.start_compute("host-a")            # repaired and booted mid-way
    fakebin.ping("host-a", True)
    stdout, _ = proc.communicate(timeout=300)
    out = json.loads(stdout)
    assert out["outcome"] == "failed" and "came back mid-way" in out["reason"], out
    assert "not started" in out["reason"]
    calls = nova.evacuate_calls(mark)
    assert calls and max(calls.values()) == 1 and len(calls) < len(ids)      # nothing twice
    moved = [i for i in ids if nova.server(i)["host"] != "host-a"]
    assert sorted(moved) == sorted(calls)


# --- 8. two handlers at once ----------------------------------------------------------------------

def test_two_handlers_asked_at_once_evacuate_once(nova, fakebin, nova_config, tmp_path):
    ids = nova.boot("host-a", 6)
    configs = []
    for name in ("one", "two"):
        state = tmp_path / f"state-{name}"
        state.mkdir()
        configs.append(nova_config({"state_dir": str(state), **CONF}, name=f"{name}.yaml"))
    kill(nova, fakebin)
    mark = nova.log_size()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOREMEDY_")}
    env["AUTOREMEDY_EXEC_PATH"] = fakebin.path
    exe = os.path.join(os.path.dirname(sys.executable), "autoremedy")
    procs = [subprocess.Popen([exe, "remediate", "compute-node", "--config", c, "host-a", "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for c in configs]
    outs = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    words = sorted(o["outcome"] for o in outs)
    assert words[1] == "remediated" and words[0] in ("noop", "refused"), outs
    loser = [o for o in outs if o["outcome"] != "remediated"][0]
    assert "another autoremedy run" in loser["reason"], loser
    assert nova.evacuate_calls(mark) == {i: 1 for i in ids}
    assert all(nova.server(i)["host"] != "host-a" for i in ids)


# --- 9. errors from real Nova -----------------------------------------------------------------------

def test_a_forbidden_evacuate_and_a_nova_that_stops_answering_are_one_line_each(nova, fakebin, nova_config,
                                                                               run_cli, state_dir):
    ids = nova.boot("host-a", 2)
    config = nova_config({"remediations": {"compute-node": {"concurrency": 1, "claim_settle": 1}}})
    kill(nova, fakebin)
    nova.policy({"os_compute_api:os-evacuate": "!"})
    out = remediate(run_cli, fakebin, config, "host-a")
    assert out["outcome"] == "failed"
    for sid in ids:
        assert f"{sid} (evacuate: ForbiddenException (403): " in out["reason"], out["reason"]
    assert "os_compute_api:os-evacuate" in out["reason"]
    rows = audit(state_dir, "evacuation")[-1]["instances"]
    assert all(r["detail"].startswith("evacuate: ForbiddenException (403)") for r in rows)
    # Nova stops answering: the run says which call failed, in one line, and refuses blind
    nova.policy(None)
    nova.stop_api()
    ran = run_cli("remediate", "compute-node", "--config", config, "host-a",
                  env={"AUTOREMEDY_EXEC_PATH": fakebin.path}, timeout=120)
    assert ran.returncode != 0 and "Traceback" not in ran.stderr + ran.stdout
    first = ran.stdout.splitlines()[0]
    assert first.startswith("compute-node host-a: ") and "ConnectFailure" in first, ran
    nova.start_api()


# --- Keystone 30: the real auth path, a token outlived --------------------------------------------

def test_check_dry_run_and_an_evacuation_through_a_real_keystone(nova, fakebin, nova_config, run_cli):
    cloud = nova.keystone(token_seconds=125)     # keystoneauth renews 120 s before expiry: every ~5 s
    try:
        config = nova_config(dict(CONF, remediations={"compute-node": {"concurrency": 1,
                                                                        "claim_settle": 1}}),
                             cloud=cloud)
        ids = nova.boot("host-a", 3)
        kill(nova, fakebin)
        rc, out = check(run_cli, fakebin, config)
        assert rc == 2 and "host-a dead" in out["summary"], out
        dry = remediate(run_cli, fakebin, config, "host-a", "--dry-run")
        assert dry["outcome"] == "dry-run" and set(dry["reach"][0]["names"]) == set(ids)
        started = time.monotonic()
        done = remediate(run_cli, fakebin, config, "host-a")
        took = time.monotonic() - started
        assert done["outcome"] == "remediated", done
        assert took > 125 - 120, took        # it outlived its first token
        assert all(nova.server(i)["host"] != "host-a" for i in ids)
        assert nova.log_size(nova.log("nova-api-ks")) > 0     # the calls went through keystonemiddleware
    finally:
        nova.stop_keystone()


# --- no harm (issue 23) ----------------------------------------------------------------------------

class EvacuationCase(Case):
    """host-a dies with 4 instances; host-b and host-c carry bystanders."""

    cls_name = "compute-node"

    def __init__(self, nova, fakebin, config, run_cli):
        self.nova, self.fakebin, self.config, self.run_cli = nova, fakebin, config, run_cli
        self.mine = nova.boot("host-a", 4)
        self.bystanders = nova.boot("host-b", 2, prefix="by") + nova.boot("host-c", 1, prefix="by")
        nova.action(self.bystanders[0], {"os-stop": None})
        nova.wait_servers([self.bystanders[0]], lambda s: s["status"] == "SHUTOFF")

    def snapshot(self):
        out = {f"instance {i}": (s["host"], s["status"], s["power_state"], s["task_state"])
               for i, s in self.nova.servers().items()}
        out.update({f"service {h}": (s["status"], s["forced_down"]) for h, s in self.nova.services().items()})
        return out

    def inject(self):
        kill(self.nova, self.fakebin)

    def remediate(self):
        return remediate(self.run_cli, self.fakebin, self.config, "host-a")

    def allowed(self):
        return {f"instance {i}" for i in self.mine} | {"service host-a"}


class Widened(EvacuateHost):
    """Deliberately harmful: also stops a bystander on another host."""

    bystander = None

    def _give_back(self, server, original):
        said = super()._give_back(server, original)
        if self.bystander:
            self.conn().compute.stop_server(self.bystander)
            self.bystander = None
            deadline = time.monotonic() + 30
            while self.conn().compute.get_server(self.__class__.victim).status != "SHUTOFF":
                assert time.monotonic() < deadline
                time.sleep(0.3)
        return said


class WidenedCase(EvacuationCase):
    cls_name = "compute-node"

    def remediate(self):
        victim = self.bystanders[1]
        Widened.victim = victim
        remediation = Widened(Config.load(self.config))
        remediation.bystander = victim
        env = {"AUTOREMEDY_EXEC_PATH": self.fakebin.path}
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            return perform(remediation, "host-a", Trigger(source="test")).to_dict()
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def test_no_harm_an_evacuation_changes_only_its_instances_and_host(nova, fakebin, nova_config, run_cli):
    case = EvacuationCase(nova, fakebin, nova_config(CONF), run_cli)
    run = expect_no_harm(case)
    assert {inv["name"]: inv["holds"] for inv in run.outcome["invariants"]} == \
        {"instances in the cloud": True, "nova-compute services up, host-a aside": True}


def test_harm_a_widened_run_that_stops_a_bystander_fails_naming_it(nova, fakebin, nova_config, run_cli):
    case = WidenedCase(nova, fakebin, nova_config(CONF), run_cli)
    run = expect_harm(case, named=[f"instance {case.bystanders[1]} changed outside the plan"])
    assert run.outcome["outcome"] == "failed"
    assert run.differences == [d for d in run.differences if case.bystanders[1] in d] and run.differences
