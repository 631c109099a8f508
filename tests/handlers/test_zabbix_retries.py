"""The Zabbix alert script's exit status tells the truth, and the same truth on
every retry: Zabbix marks an alert *sent* on 0 and *failed* (retried up to the
media type's attempts) otherwise, so the same event must not read "failed",
then "sent" (issue 19). The last stdout line is what the action log shows."""
import json
import os

from handlerkit import service_config, spool_entries, st2_env


def alert_message(event_id, target, status_tag="2"):
    return json.dumps({
        "event_id": str(event_id), "value": "1", "status": "PROBLEM", "severity": "4",
        "host": "node-under-test", "trigger": f"Process {target} is CRITICAL on node-under-test",
        "trigger_id": "1234", "time": "2026.01.01 10:00:00",
        "tags": [{"tag": "autoremedy_class", "value": "process"},
                 {"tag": "autoremedy_target", "value": target},
                 {"tag": "autoremedy_status", "value": status_tag}]}, indent=0)


def alert(run_cli, config, event_id, target, env):
    return run_cli("handle", "zabbix", "--config", config, "--", "autoremedy",
                   f"PROBLEM: {target}", alert_message(event_id, target), env=env)


def outcome(line):
    """The verdict without StackStorm's own words (connection refused, then the
    circuit breaker open: the delivery attempt is news, the outcome is not)."""
    import re
    return re.sub(r"\(StackStorm: [^;]*\)", "(StackStorm: ...)", line).replace(" (earlier attempt)", "")


def verdict(ran):
    lines = [line for line in ran.stdout.splitlines() if line.startswith("autoremedy: zabbix alert: ")]
    assert len(lines) == 1, ran
    return lines[0]


def test_failed_fallback_is_kept_sent_and_the_same_on_every_retry(run_cli, make_config, service, st2,
                                                                   state_dir):
    """StackStorm down, the local restart fails: the event is kept for delivery
    (sent, not failed) and escalated, and Zabbix's retries read the same."""
    service.start()
    service.kill()
    st2.set_mode("down")
    data = service_config(service)
    data["remediations"]["process"]["targets"]["svc"] = dict(service.target("1s"), start=["/bin/false"])
    config = make_config(data)
    runs = [alert(run_cli, config, 501, "svc", st2_env(st2)) for _ in range(3)]
    codes = {r.returncode for r in runs}
    assert codes == {0}, runs
    first = verdict(runs[0])
    assert first.startswith("autoremedy: zabbix alert: kept for delivery (StackStorm: connection refused")
    assert "; local: process svc: failed" in first and "; escalated: process svc: failed" in first
    for again in runs[1:]:
        assert outcome(verdict(again)) == outcome(first), (first, again.stdout)
        assert "not run again for this event" in again.stdout
    [entry] = spool_entries(state_dir)
    assert [m["outcome"] for m in entry["local"]] == ["failed"]     # tried once, not three times
    assert entry["escalation"]["reason"].startswith("process svc: failed")

    st2.set_mode("up")
    replay = run_cli("replay", "--config", config, env=st2_env(st2))
    assert replay.returncode == 0 and "(escalated)" in replay.stdout, replay


def test_remediated_locally_is_sent_and_delivered_is_sent(run_cli, make_config, service, st2, state_dir):
    service.start()
    service.kill()
    st2.set_mode("down")
    data = service_config(service)
    data["stackstorm"]["breaker_cooldown"] = "0s"       # the next alert tries StackStorm again
    config = make_config(data)
    ran = alert(run_cli, config, 502, "svc", st2_env(st2))
    assert ran.returncode == 0, ran
    line = verdict(ran)
    assert line.startswith("autoremedy: zabbix alert: kept for delivery")
    assert "; remediated locally: process svc: remediated: verified OK" in line and "escalated" not in line
    assert service.pids()
    st2.set_mode("up")
    ran = alert(run_cli, config, 503, "svc", st2_env(st2))
    assert ran.returncode == 0
    assert verdict(ran).startswith("autoremedy: zabbix alert: delivered to StackStorm (HTTP 202")


def test_not_kept_is_failed_on_every_try(run_cli, make_config, service, st2, state_dir):
    """Only an event neither delivered nor spooled fails the alert: Zabbix's
    retry is then the one way left to StackStorm — and it says so every time."""
    st2.set_mode("down")
    config = make_config(service_config(service))
    spool = state_dir / "spool"
    spool.mkdir()
    os.chmod(spool, 0o500)
    try:
        if os.geteuid() == 0:
            # root ignores the mode: make the spool path a file instead
            os.chmod(spool, 0o700)
            os.rmdir(spool)
            spool.write_text("not a directory\n")
        runs = [alert(run_cli, config, 504, "no-such-target", st2_env(st2)) for _ in range(2)]
    finally:
        if spool.is_dir():
            os.chmod(spool, 0o700)
    assert [r.returncode for r in runs] == [1, 1], runs
    assert outcome(verdict(runs[0])) == outcome(verdict(runs[1]))
    assert "NOT kept" in verdict(runs[0]) and "escalated" in verdict(runs[0])


def test_stackstorm_refusing_the_key_is_a_configuration_error_that_says_kept(run_cli, make_config, service,
                                                                           st2, state_dir):
    config = make_config(service_config(service))
    env = st2_env(st2, AUTOREMEDY_ST2_API_KEY="wrong-key")
    runs = [alert(run_cli, config, 505, "svc", env) for _ in range(2)]
    assert [r.returncode for r in runs] == [3, 3], runs
    assert "kept for delivery (StackStorm: " in verdict(runs[0])
    assert "configuration error" in runs[0].stderr
    assert len(spool_entries(state_dir)) == 1
