"""Routing table and the forward-or-fall-back dispatch, in process, against the
StackStorm double and a real throwaway service."""
import json
import os
import sys
import types

import pytest

from autoremedy.config import Config
from autoremedy.pipeline.event import from_sensu
from autoremedy.pipeline.route import BACKEND, NODE, Route, RouteError, dispatch, match, routes, same_host

from handlerkit import API_KEY, audit_records, service_config, spool_entries, st2_env


def load(make_config, data, st2=None, **env):
    environ = dict(os.environ)
    environ.pop("AUTOREMEDY_CONFIG", None)
    if st2 is not None:
        environ.update(st2_env(st2))
    environ.update(env)
    return Config.load(make_config(data), environ)


def event_for(sensu_go, host="node-under-test", check="proc-svc", status=2, ident="evt-1", **fields):
    data = json.loads(json.dumps(sensu_go))
    data["id"] = ident
    data["entity"]["metadata"]["name"] = host
    data["check"]["metadata"]["name"] = check
    data["check"].update(status=status, state="failing" if status else "passing", history=[],
                         occurrences=1, **fields)
    return from_sensu(data)


ROUTE = {"check": "proc-*", "class": "process", "target": "svc"}


# --- the table ---------------------------------------------------------------------

def test_route_globs_and_labels(sensu_go):
    event = event_for(sensu_go, host="cmp-07.example.com", check="proc-nova")
    event.labels = {"service": "nova", "tier": "compute"}
    assert Route({"check": "proc-*", "host": "cmp-*", "source": "sensu-*",
                  "labels": {"service": "no*"}}, 0).matches(event)
    assert not Route({"check": "disk-*"}, 0).matches(event)
    assert not Route({"labels": {"service": "glance"}}, 0).matches(event)
    assert not Route({"labels": {"missing": "*"}}, 0).matches(event)
    assert not Route({"source": "zabbix"}, 0).matches(event)


def test_first_matching_route_wins(make_config, sensu_go):
    config = load(make_config, {"routes": [{"check": "disk-*", "class": "disk", "target": "/"},
                                           ROUTE, {"check": "*", "fallback": "escalate"}]})
    assert match(config, event_for(sensu_go)).index == 1
    assert match(config, event_for(sensu_go, check="other")).fallback == "escalate"


@pytest.mark.parametrize("spec,words", [
    ({"check": "x", "class": "process"}, "'class' and 'target' are required"),
    ({"check": "x", "class": "process", "target": "t", "fallback": "pray"}, "is not one of"),
])
def test_bad_routes_are_named(make_config, spec, words):
    config = load(make_config, {"routes": [spec]})
    with pytest.raises(RouteError, match=words):
        routes(config)


@pytest.mark.parametrize("a,b,same", [("web-01", "web-01", True), ("WEB-01", "web-01", True),
                                      ("web-01.example.com", "web-01", True),
                                      ("web-01.a.com", "web-01.b.com", False),
                                      ("web-01", "web-02", False)])
def test_same_host(a, b, same):
    assert same_host(a, b) is same


# --- dispatch ------------------------------------------------------------------------

def test_delivered_event_leaves_the_spool_and_reaches_stackstorm(make_config, sensu_go, st2, state_dir):
    config = load(make_config, {"routes": [ROUTE]}, st2)
    decision = dispatch(config, event_for(sensu_go), BACKEND)
    assert decision.exit_code == 0 and decision.delivery.code == 202
    assert spool_entries(state_dir) == []
    [request] = st2.accepted()
    assert request["trace_tag"] == "evt-1"
    body = request["body"]
    assert body["event"]["host"] == "node-under-test" and body["event"]["state"] == "CRITICAL"
    assert body["raw"]["id"] == "evt-1"
    assert body["autoremedy"]["attempt"] == 1 and body["autoremedy"]["replayed"] is False
    assert body["autoremedy"]["remediated_locally"] is False
    [forward] = audit_records(state_dir, "forward")
    assert forward["outcome"] == "delivered" and forward["event_id"] == "evt-1"
    assert decision.outcome is None                      # StackStorm acts, not us


def test_unreachable_stackstorm_falls_back_to_a_guarded_restart(make_config, sensu_go, st2, service,
                                                                 state_dir):
    service.start()
    service.kill()
    st2.set_mode("down")
    config = load(make_config, service_config(service, routes=[ROUTE]), st2)
    decision = dispatch(config, event_for(sensu_go), BACKEND)
    assert decision.exit_code == 0, decision.notes
    assert decision.delivery.outcome == "unreachable"
    assert decision.outcome.status == "remediated"
    assert decision.outcome.verify["status"] == "OK"
    assert service.pids() and service.start_count() == 2
    [entry] = spool_entries(state_dir)
    assert entry["claim"] is None and entry["attempts"] == 1
    assert entry["local"][0]["outcome"] == "remediated" and entry["local"][0]["target"] == "svc"
    assert entry["escalation"] is None
    state = json.load(open(os.path.join(str(state_dir), "breaker.json")))
    assert state["state"] == "open"


def test_open_breaker_skips_stackstorm_entirely(make_config, sensu_go, st2, state_dir):
    config = load(make_config, {"routes": [{"check": "*", "fallback": "escalate"}]}, st2)
    st2.set_mode("down")
    dispatch(config, event_for(sensu_go, ident="evt-a"), BACKEND)
    st2.set_mode("up")                           # StackStorm is back, but the cool-down runs
    decision = dispatch(config, event_for(sensu_go, ident="evt-b"), BACKEND)
    assert "circuit breaker open" in decision.delivery.reason
    assert st2.requests == []
    assert len(spool_entries(state_dir)) == 2


def test_config_error_is_exit_3_keeps_the_event_and_still_falls_back(make_config, sensu_go, st2,
                                                                      service, state_dir):
    service.start()
    service.kill()
    config = load(make_config, service_config(service, routes=[ROUTE]), st2,
                  AUTOREMEDY_ST2_API_KEY="rotated-away")
    decision = dispatch(config, event_for(sensu_go), BACKEND)
    assert decision.exit_code == 3 and decision.delivery.code == 401
    assert decision.outcome.status == "remediated"         # StackStorm will not act: we do
    assert len(spool_entries(state_dir)) == 1
    assert not os.path.exists(os.path.join(str(state_dir), "breaker.json")) or \
        json.load(open(os.path.join(str(state_dir), "breaker.json")))["state"] == "closed"


def test_no_route_escalates_and_marks_the_spool(make_config, sensu_go, st2, state_dir):
    st2.set_mode("down")
    config = load(make_config, {}, st2)
    decision = dispatch(config, event_for(sensu_go), BACKEND)
    assert decision.exit_code == 1 and "no route matches" in decision.escalation
    [entry] = spool_entries(state_dir)
    assert "no route matches" in entry["escalation"]["reason"]
    [record] = audit_records(state_dir, "escalation")
    assert record["result"] == "escalated" and record["event_id"] == "evt-1"


@pytest.mark.parametrize("route,words,code", [
    (dict(ROUTE, enabled=False), "is disabled", 1),
    ({"check": "*", "fallback": "escalate"}, "says escalate", 1),
    (dict(ROUTE, **{"class": "no-such-class"}), "unknown remediation class", 3),
])
def test_routes_that_forbid_local_action_escalate(make_config, sensu_go, st2, route, words, code):
    st2.set_mode("down")
    config = load(make_config, {"routes": [route]}, st2)
    decision = dispatch(config, event_for(sensu_go), BACKEND)
    assert decision.exit_code == code and words in decision.escalation


@pytest.mark.parametrize("status,code,words", [
    (0, 0, "the node hook on node-x handled it: autoremedy: local process svc: remediated"),
    (1, 1, "the node hook on node-x exited 1: autoremedy: local process svc: refused"),
])
def test_backend_learns_from_the_node_hooks_result(make_config, sensu_go, st2, status, code, words):
    st2.set_mode("down")
    verdict = "remediated: verified OK" if status == 0 else "refused: maintenance"
    config = load(make_config, {"remediations": {"process": {"enabled": True, "targets": {
        "svc": {"unit": "svc"}}}}}, st2)
    event = event_for(sensu_go, host="node-x", hooks=[{
        "metadata": {"name": "autoremedy-svc"}, "status": status,
        "command": "autoremedy handle hook process --target svc --unit svc",
        "output": f"PROCESS CRITICAL: 0 processes\nautoremedy: local process svc: {verdict}\n"}])
    event.labels = {"autoremedy_class": "process", "autoremedy_target": "svc"}
    decision = dispatch(config, event, BACKEND)
    assert decision.exit_code == code
    text = " ".join(t for _, t in decision.notes)
    assert words in text


def test_node_hook_fallback_defers_on_the_backend(make_config, sensu_go, st2, state_dir):
    st2.set_mode("down")
    config = load(make_config, {"routes": [dict(ROUTE, fallback="node-hook")]}, st2)
    decision = dispatch(config, event_for(sensu_go), BACKEND)
    assert decision.exit_code == 0 and decision.outcome is None
    assert any("the node hook on node-under-test remediates" in text for _, text in decision.notes)
    assert spool_entries(state_dir)[0]["escalation"] is None


def test_node_scoped_class_never_runs_for_another_host(make_config, sensu_go, st2, service):
    service.start()
    service.kill()
    st2.set_mode("down")
    config = load(make_config, service_config(service, routes=[ROUTE]), st2)
    decision = dispatch(config, event_for(sensu_go, host="some-other-node"), BACKEND)
    assert decision.exit_code == 1 and "node-scoped" in decision.escalation
    assert service.pids() == [] and service.start_count() == 1


def test_silenced_event_is_not_remediated(make_config, sensu_go, st2, service):
    service.start()
    service.kill()
    st2.set_mode("down")
    config = load(make_config, service_config(service, routes=[ROUTE]), st2)
    decision = dispatch(config, event_for(sensu_go, is_silenced=True), BACKEND)
    assert decision.exit_code == 0 and decision.outcome.status == "skipped"
    assert decision.outcome.guard == "silenced" and service.pids() == []


def test_resolution_is_spooled_but_never_remediated(make_config, sensu_go, st2, state_dir):
    st2.set_mode("down")
    config = load(make_config, {"routes": [ROUTE]}, st2)
    decision = dispatch(config, event_for(sensu_go, status=0), BACKEND)
    assert decision.exit_code == 0 and decision.outcome is None
    assert len(spool_entries(state_dir)) == 1


def test_dry_run_plans_and_changes_nothing(make_config, sensu_go, st2, service):
    service.start()
    service.kill()
    st2.set_mode("down")
    config = load(make_config, service_config(service, routes=[ROUTE]), st2)
    decision = dispatch(config, event_for(sensu_go), NODE, dry_run=True)
    assert decision.exit_code == 0 and decision.outcome.status == "dry-run"
    assert service.pids() == []


def test_unwritable_state_still_delivers_with_a_warning(make_config, sensu_go, st2, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    config = load(make_config, {"state_dir": str(blocker / "state")}, st2)
    decision = dispatch(config, event_for(sensu_go), BACKEND)
    assert decision.exit_code == 0 and decision.delivery.ok
    assert any(stream == "err" and "cannot spool" in text for stream, text in decision.notes)


def test_unwritable_state_and_no_stackstorm_is_an_escalation(make_config, sensu_go, st2, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    st2.set_mode("down")
    config = load(make_config, {"state_dir": str(blocker / "state")}, st2)
    decision = dispatch(config, event_for(sensu_go, status=0), BACKEND)   # nothing to remediate
    assert decision.exit_code == 1                 # the monitor must retry: nobody has it
    assert "could not be spooled" in decision.escalation


def test_escalation_hook_point_attaches_the_incident_bundle(make_config, sensu_go, st2, state_dir,
                                                            monkeypatch):
    calls = []
    fake = types.ModuleType("autoremedy.collection.collect")
    fake.for_event = lambda config, host, check, when, ids=(): calls.append((host, check)) or \
        {"path": "/var/lib/autoremedy/bundles/x.tar.gz", "summary": "3 services, 12 lines"}
    monkeypatch.setitem(sys.modules, "autoremedy.collection.collect", fake)
    st2.set_mode("down")
    config = load(make_config, {"stackstorm": {"attach_bundle": True}}, st2)
    decision = dispatch(config, event_for(sensu_go), BACKEND)
    assert decision.exit_code == 1 and calls == [("node-under-test", "proc-svc")]
    [entry] = spool_entries(state_dir)
    assert entry["escalation"]["bundle"]["summary"] == "3 services, 12 lines"
    [record] = audit_records(state_dir, "escalation")
    assert record["bundle"]["path"].endswith("x.tar.gz")


def test_escalation_hook_is_opt_in_and_its_failure_does_not_stop_escalation(make_config, sensu_go,
                                                                             st2, monkeypatch):
    fake = types.ModuleType("autoremedy.collection.collect")
    fake.for_event = lambda *a, **kw: 1 / 0
    monkeypatch.setitem(sys.modules, "autoremedy.collection.collect", fake)
    st2.set_mode("down")
    quiet = dispatch(load(make_config, {}, st2), event_for(sensu_go, ident="e1"), BACKEND)
    assert quiet.exit_code == 1 and quiet.entry.data["escalation"]["bundle"] is None
    loud = dispatch(load(make_config, {"stackstorm": {"attach_bundle": True}}, st2),
                    event_for(sensu_go, ident="e2"), BACKEND)
    assert loud.exit_code == 1
    assert "ZeroDivisionError" in loud.entry.data["escalation"]["bundle"]["error"]


def test_api_key_never_reaches_the_audit_or_the_spool(make_config, sensu_go, st2, state_dir):
    st2.set_mode("down")
    config = load(make_config, {}, st2)
    dispatch(config, event_for(sensu_go), BACKEND)
    st2.set_mode("up")
    dispatch(load(make_config, {}, st2, AUTOREMEDY_ST2_API_KEY="wrong"), event_for(sensu_go, ident="e9"),
             BACKEND)
    for root, _, files in os.walk(str(state_dir)):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                assert API_KEY.encode() not in handle.read()


@pytest.mark.parametrize("route,words", [
    ({"check": "x", "class": "nope", "target": "svc"}, "routes[0].class: no such remediation class 'nope'"),
    ({"check": "x", "class": "process", "target": "sshd"},
     "routes[0].target: 'sshd' is not in remediations.process.targets"),
    ({"check": "x", "class": "process"}, "'class' and 'target' are required"),
])
def test_config_check_validates_routes(run_cli, make_config, route, words):
    config = make_config({"routes": [route], "remediations": {"process": {
        "enabled": True, "targets": {"svc": {"unit": "svc"}}}}})
    ran = run_cli("config", "check", "--config", config)
    assert ran.returncode == 3 and words in ran.stderr


def test_config_check_accepts_good_routes(run_cli, make_config):
    config = make_config({"routes": [{"check": "x", "class": "process", "target": "svc"},
                                     {"check": "*", "fallback": "escalate"}],
                          "remediations": {"process": {"enabled": True, "targets": {
                              "svc": {"unit": "svc"}}}}})
    ran = run_cli("config", "check", "--config", config)
    assert ran.returncode == 0 and ran.stdout.strip().endswith(": OK")


def test_escalation_attaches_a_real_incident_bundle(make_config, sensu_go, st2, state_dir, tmp_path):
    """With autoremedy collect (issue 6) installed: the log window around the event
    becomes a bundle whose location and summary travel with the escalation."""
    import time as clock
    log = tmp_path / "nova-compute.log"
    now = clock.time()
    stamp = clock.strftime("%Y-%m-%d %H:%M:%S", clock.localtime(now - 30))
    log.write_text(f"{stamp}.123 4242 ERROR nova.compute.manager [req-1a2b3c4d-0000-0000-0000-000000000001]"
                   " instance failed to spawn\n")
    st2.set_mode("down")
    config = load(make_config, {"stackstorm": {"attach_bundle": True},
                                "collect": {"out_dir": str(tmp_path / "bundles"),
                                            "sources": [{"name": "nova-compute", "path": str(log),
                                                         "format": "oslo"}]}}, st2)
    event = event_for(sensu_go)
    event.timestamp = now
    decision = dispatch(config, event, BACKEND)
    assert decision.exit_code == 1
    bundle = spool_entries(state_dir)[0]["escalation"]["bundle"]
    assert bundle.get("error") is None, bundle
    assert bundle["path"] and os.path.exists(bundle["path"])
    assert bundle["summary"]
