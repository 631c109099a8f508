"""The node hook (``autoremedy handle hook``) with a real process killed by the
test: forward or guarded local restart, incidents, guards, replay afterwards."""
import json

from handlerkit import audit_records, service_config, spool_entries, st2_env


def hook(run_cli, config, service, *extra, env=None):
    return run_cli("handle", "hook", "process", "--config", config, "--target", "svc",
                   *extra, *service.check_args, env=env)


def test_healthy_node_costs_one_check_and_spools_nothing(run_cli, make_config, service, st2, state_dir):
    service.start()
    config = make_config(service_config(service))
    ran = hook(run_cli, config, service, env=st2_env(st2))
    assert ran.returncode == 0, ran
    assert ran.stdout.startswith("PROCESS OK: 1 process matching pidfile")
    assert "process OK on node-under-test: nothing to do" in ran.stdout
    assert spool_entries(state_dir) == [] and st2.requests == []


def test_dead_process_with_stackstorm_down_is_restarted_then_replayed(run_cli, make_config, service,
                                                                     st2, state_dir):
    service.start()
    service.kill()
    st2.set_mode("down")
    config = make_config(service_config(service))
    ran = hook(run_cli, config, service, env=st2_env(st2))
    assert ran.returncode == 0, ran
    lines = ran.stdout.splitlines()
    assert lines[0].startswith("PROCESS CRITICAL: 0 processes matching pidfile")
    assert "StackStorm not reached: connection refused" in ran.stdout
    assert "local process svc: remediated: verified OK [verify: OK: 1 process" in ran.stdout
    assert service.pids() and service.start_count() == 2
    [entry] = spool_entries(state_dir)
    event_id = entry["id"]
    assert event_id.startswith("hook-") and entry["local"][0]["outcome"] == "remediated"

    st2.set_mode("up")
    replay = run_cli("replay", "--config", config, env=st2_env(st2))
    assert replay.returncode == 0, replay
    assert f"(id {event_id}): HTTP 202 (remediated locally: process svc remediated)" in replay.stdout
    [request] = st2.accepted()
    assert request["trace_tag"] == event_id
    marks = request["body"]["autoremedy"]
    assert marks["remediated_locally"] is True and marks["replayed"] is True
    assert marks["local"][0]["verify"]["status"] == "OK"
    assert request["body"]["event"]["source"] == "hook"
    assert spool_entries(state_dir) == []
    status = run_cli("status", "--config", config, env=st2_env(st2))
    assert "spool: 0 event(s) waiting" in status.stdout
    assert "process svc -> remediated: verified OK" in status.stdout
    assert "stackstorm: closed" in status.stdout


def test_delivered_hook_event_leaves_the_remediation_to_stackstorm(run_cli, make_config, service, st2):
    service.start()
    service.kill()
    config = make_config(service_config(service))
    ran = hook(run_cli, config, service, env=st2_env(st2))
    assert ran.returncode == 0 and "delivered to StackStorm" in ran.stdout
    assert st2.accepted()[0]["body"]["event"]["state"] == "CRITICAL"
    assert service.pids() == []                 # StackStorm's workflow decides


def test_one_incident_keeps_one_id_and_counts_occurrences(run_cli, make_config, service, st2, state_dir):
    service.start()
    service.kill()
    st2.set_mode("down")
    data = service_config(service)
    data["remediations"]["process"]["enabled"] = False
    config = make_config(data)
    first = hook(run_cli, config, service, env=st2_env(st2))
    second = hook(run_cli, config, service, env=st2_env(st2))
    assert first.returncode == second.returncode == 1        # refused (disabled): escalation
    [entry] = spool_entries(state_dir)                       # the same event, updated
    assert entry["event"]["occurrences"] == 2
    service.start()
    resolved = hook(run_cli, config, service, env=st2_env(st2))
    assert resolved.returncode == 0 and "nothing to remediate for a resolve event" in resolved.stdout
    problem, resolution = spool_entries(state_dir)
    assert resolution["event"]["state"] == "OK" and resolution["id"] != problem["id"]
    service.kill()
    again = hook(run_cli, config, service, env=st2_env(st2))
    assert again.returncode == 1
    ids = [e["id"] for e in spool_entries(state_dir)]
    assert len(set(ids)) == 3                                # a new incident, a new id


def test_min_occurrences_waits_for_the_second_failure(run_cli, make_config, service, st2):
    service.start()
    service.kill()
    st2.set_mode("down")
    data = service_config(service)
    data["remediations"]["process"]["guards"] = {"min_occurrences": 2}
    config = make_config(data)
    first = hook(run_cli, config, service, env=st2_env(st2))
    assert first.returncode == 0 and "skipped: seen 1 time(s), acting from 2" in first.stdout
    assert service.pids() == []
    second = hook(run_cli, config, service, env=st2_env(st2))
    assert second.returncode == 0 and "remediated: verified OK" in second.stdout


def test_maintenance_file_refuses_and_escalates(run_cli, make_config, service, st2, state_dir, tmp_path):
    service.start()
    service.kill()
    st2.set_mode("down")
    (tmp_path / "maintenance").write_text("# planned work\nnode-under-test\n")
    config = make_config(service_config(service))
    ran = hook(run_cli, config, service, env=st2_env(st2))
    assert ran.returncode == 1
    assert "refused: node-under-test is listed in maintenance file" in ran.stdout
    assert "ESCALATION hook node-under-test/process CRITICAL" in ran.stderr
    assert service.pids() == []
    [entry] = spool_entries(state_dir)
    assert entry["local"][0]["outcome"] == "refused" and entry["escalation"]


def test_rate_limit_escalates_when_the_fix_does_not_hold(run_cli, make_config, service, st2):
    service.start()
    service.kill()
    st2.set_mode("down")
    data = service_config(service)
    data["remediations"]["process"]["guards"] = {"rate_limit": {"max": 1, "per": "1h"}}
    config = make_config(data)
    assert hook(run_cli, config, service, env=st2_env(st2)).returncode == 0
    service.kill()
    ran = hook(run_cli, config, service, env=st2_env(st2))
    assert ran.returncode == 1 and "the fix does not hold" in ran.stdout
    assert service.pids() == []


def test_failed_verification_escalates(run_cli, make_config, service, st2, state_dir):
    st2.set_mode("down")
    data = service_config(service)
    data["remediations"]["process"]["targets"]["svc"].update(start=["/bin/true"], settle="1s")
    config = make_config(data)
    ran = hook(run_cli, config, service, env=st2_env(st2))
    assert ran.returncode == 1
    assert "failed: verification failed: CRITICAL" in ran.stdout
    [entry] = spool_entries(state_dir)
    assert "verification failed" in entry["escalation"]["reason"]
    [record] = [r for r in audit_records(state_dir, "remediation") if r["outcome"] == "failed"]
    assert record["event_id"] == entry["id"]


def test_dry_run_prints_the_plan_and_changes_nothing(run_cli, make_config, service, st2):
    service.start()
    service.kill()
    st2.set_mode("down")
    config = make_config(service_config(service))
    ran = hook(run_cli, config, service, "--dry-run", env=st2_env(st2))
    assert ran.returncode == 0 and "dry-run: would run the plan" in ran.stdout
    assert service.pids() == [] and service.start_count() == 1


def test_bad_hook_command_lines(run_cli, make_config, service):
    config = make_config(service_config(service))
    bad_option = run_cli("handle", "hook", "process", "--config", config, "--no-such-option")
    assert bad_option.returncode == 2 and "unrecognized arguments: --no-such-option" in bad_option.stderr
    bad_class = run_cli("handle", "hook", "no-such-class", "--config", config)
    assert bad_class.returncode == 2 and "unknown check class 'no-such-class'" in bad_class.stderr
    assert "Traceback" not in bad_option.stderr + bad_class.stderr


def test_target_from_the_routing_table(run_cli, make_config, service, st2, state_dir):
    service.start()
    service.kill()
    st2.set_mode("down")
    data = service_config(service, routes=[{"source": "hook", "check": "svc-proc", "class": "process",
                                            "target": "svc"}])
    config = make_config(data)
    ran = run_cli("handle", "hook", "process", "--config", config, "--check-name", "svc-proc",
                  *service.check_args, env=st2_env(st2))
    assert ran.returncode == 0 and "remediated: verified OK" in ran.stdout, ran
    assert json.loads(json.dumps(spool_entries(state_dir)[0]["event"]))["check"] == "svc-proc"
