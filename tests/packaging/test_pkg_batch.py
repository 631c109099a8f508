"""`autoremedy check batch`: every configured node check in one process, each
result reported on its own (Zabbix master item, Sensu agent events)."""
import json
import time

import pytest

from loopback import SensuAgentAPI


@pytest.fixture
def batch_config(make_config, live_process, tmp_path):
    def make(**extra):
        section = {"checks": [
            {"name": "disk-tmp", "class": "disk", "args": ["-p", str(tmp_path), "-w", "99.9", "-c", "100"]},
            {"name": "alive", "class": "process", "args": ["--cmdline", live_process]},
            {"name": "dead", "class": "process", "args": ["--cmdline", live_process + "-gone"]},
        ]}
        section.update(extra)
        return make_config({"checks": {"batch": section}})
    return make


def test_nagios_output_has_the_worst_status_and_one_line_per_check(run_cli, batch_config):
    ran = run_cli("check", "batch", "--config", batch_config())
    assert ran.returncode == 2, ran
    lines = ran.stdout.splitlines()
    assert lines[0].startswith("BATCH CRITICAL: 1 of 3 checks failing: dead CRITICAL | ")
    assert "'dead'=2;;;0;3" in lines[0] and "'alive'=0;;;0;3" in lines[0]
    assert lines[1].startswith("DISK-TMP OK: ")
    assert lines[2] == "ALIVE OK: 1 process matching cmdline " + lines[2].split("cmdline ")[1]
    assert lines[3].startswith("DEAD CRITICAL: 0 processes matching cmdline ")


def test_zabbix_master_item_carries_each_result_as_a_separate_check_would(run_cli, batch_config):
    config = batch_config()
    ran = run_cli("check", "batch", "--config", config, "--format", "zabbix")
    assert ran.returncode == 0, ran
    checks = json.loads(ran.stdout)["data"]["checks"]
    assert sorted(checks) == ["alive", "dead", "disk-tmp"]
    # The same check run alone gives the same verdict and summary.
    for name, argv in (("alive", None), ("dead", None)):
        alone = run_cli("check", "process", "--cmdline", checks[name]["data"]["value"],
                        "--format", "json", "--config", config).json
        assert checks[name]["status"] == alone["status"]
        assert checks[name]["summary"] == alone["summary"]
        assert checks[name]["class"] == "process"
    assert checks["alive"]["metrics"]["count"] == 1
    assert checks["dead"]["status"] == 2
    assert checks["disk-tmp"]["status"] == 0


def test_discovery_lists_the_configured_checks_with_their_targets(run_cli, batch_config, make_config, tmp_path):
    ran = run_cli("check", "batch", "--config", batch_config(), "--discover")
    # The target is what the arguments name (one -p); a process found by
    # --cmdline names no allowlist key: "" (the template then sets no target tag).
    assert json.loads(ran.stdout) == [
        {"{#AR.CHECK}": "disk-tmp", "{#AR.CLASS}": "disk", "{#AR.TARGET}": str(tmp_path)},
        {"{#AR.CHECK}": "alive", "{#AR.CLASS}": "process", "{#AR.TARGET}": ""},
        {"{#AR.CHECK}": "dead", "{#AR.CLASS}": "process", "{#AR.TARGET}": ""},
    ]
    config = make_config({"checks": {"batch": {"checks": [
        {"name": "nova", "class": "process", "args": ["--watch", "nova-compute"]},
        {"name": "api", "class": "process", "args": ["--cmdline", "x"], "target": "nova-api"},
        {"name": "disks", "class": "disk", "args": ["-p", "/", "-p", "/var"]}]}}})
    rows = json.loads(run_cli("check", "batch", "--config", config, "--discover").stdout)
    assert [r["{#AR.TARGET}"] for r in rows] == ["nova-compute", "nova-api", ""]
    bad = make_config({"checks": {"batch": {"checks": [
        {"name": "api", "class": "process", "args": [], "target": "two words"}]}}})
    ran = run_cli("check", "batch", "--config", bad, "--format", "json")
    assert ran.json["status"] == 3 and "checks.batch.checks[0].target" in ran.json["summary"], ran


def test_only_runs_the_named_checks(run_cli, batch_config):
    ran = run_cli("check", "batch", "--config", batch_config(), "--only", "alive", "--format", "json")
    assert list(ran.json["data"]["checks"]) == ["alive"]
    assert ran.returncode == 0


def test_default_checks_are_disk_and_the_watched_processes(run_cli, make_config):
    config = make_config({"checks": {"process": {"watch": [{"name": "sshd-x", "unit": "sshd-x"}]}}})
    ran = run_cli("check", "batch", "--config", config, "--discover")
    rows = json.loads(ran.stdout)
    assert rows[:2] == [{"{#AR.CHECK}": "disk", "{#AR.CLASS}": "disk", "{#AR.TARGET}": ""},
                        {"{#AR.CHECK}": "sshd-x", "{#AR.CLASS}": "process", "{#AR.TARGET}": "sshd-x"}]
    classes = run_cli("check", "--list").stdout.split()
    assert ({"{#AR.CHECK}": "spool", "{#AR.CLASS}": "spool", "{#AR.TARGET}": ""} in rows) == ("spool" in classes)


def test_sensu_mode_posts_each_result_as_its_own_event(run_cli, batch_config, tmp_path):
    with SensuAgentAPI() as agent:
        ran = run_cli("check", "batch", "--config", batch_config(handlers=["autoremedy", "slack"], ttl=180),
                      "--sensu", "--agent-api", agent.url)
    assert ran.returncode == 0, ran
    assert ran.stdout.startswith(f"BATCH OK: posted 3 result(s) to {agent.url} (1 not OK: dead CRITICAL)")
    by_name = {e["check"]["metadata"]["name"]: e["check"] for e in agent.events}
    assert sorted(by_name) == ["alive", "dead", "disk-tmp"]
    dead = by_name["dead"]
    assert dead["status"] == 2
    assert dead["output"].startswith("DEAD CRITICAL: 0 processes matching cmdline ")
    assert dead["handlers"] == ["autoremedy", "slack"]
    assert dead["ttl"] == 180
    assert dead["metadata"]["labels"] == {"autoremedy_class": "process"}     # --cmdline: no target
    # An entry naming its target (one -p) carries it, as the Zabbix batch triggers do.
    assert by_name["disk-tmp"]["metadata"]["labels"] == {"autoremedy_class": "disk",
                                                         "autoremedy_target": str(tmp_path)}
    assert dead["output_metric_format"] == "nagios_perfdata"
    # One keep-alive connection is enough: every POST went to /events.
    assert [path for path, _, _ in agent.requests] == ["/events"] * 3


def test_sensu_mode_reports_unknown_when_the_agent_refuses_an_event(run_cli, batch_config):
    with SensuAgentAPI(fail_names={"alive"}) as agent:
        ran = run_cli("check", "batch", "--config", batch_config(), "--sensu", "--agent-api", agent.url)
    assert ran.returncode == 3
    assert ran.stdout.startswith(f"BATCH UNKNOWN: 1 of 3 result(s) not posted to {agent.url}: alive: HTTP 500")
    # Nothing is lost: the results are in the batch's own output.
    assert "ALIVE OK: 1 process matching" in ran.stdout
    assert sorted(e["check"]["metadata"]["name"] for e in agent.events) == ["dead", "disk-tmp"]


def test_sensu_mode_without_an_agent_is_unknown_with_every_result_printed(run_cli, batch_config):
    ran = run_cli("check", "batch", "--config", batch_config(), "--sensu",
                  "--agent-api", "http://127.0.0.1:9/events")
    assert ran.returncode == 3
    assert "3 of 3 result(s) not posted" in ran.stdout and "ConnectionRefusedError" in ran.stdout
    assert "DEAD CRITICAL" in ran.stdout and "Traceback" not in ran.stdout + ran.stderr


def test_sensu_mode_with_an_agent_that_never_answers_waits_one_timeout_not_n(run_cli, batch_config):
    import socket
    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(16)            # connections queue in the kernel; nobody answers
        port = blackhole.getsockname()[1]
        started = time.monotonic()
        ran = run_cli("check", "batch", "--config", batch_config(), "--sensu",
                      "--agent-api", f"http://127.0.0.1:{port}/events")
        took = time.monotonic() - started
    assert ran.returncode == 3 and "3 of 3 result(s) not posted" in ran.stdout, ran
    assert took < 4.5, took             # one 2 s read timeout, not three


def test_a_hung_check_uses_up_only_its_share_of_the_budget(run_cli, make_config, tmp_path):
    # A check whose probe hangs: `--unit` asks `systemctl show`, and this systemctl
    # never answers (a wedged systemd/D-Bus). The commands a check runs are looked up
    # on AUTOREMEDY_EXEC_PATH (autoremedy/contract/execute.py). (A FIFO as --pidfile no longer
    # hangs: the process check refuses anything but a regular file without opening it.)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    systemctl = fake_bin / "systemctl"
    systemctl.write_text("#!/bin/sh\nexec sleep 600\n")
    systemctl.chmod(0o755)
    config = make_config({"checks": {"batch": {"checks": [
        {"name": "stuck", "class": "process", "args": ["--unit", "ar-hung.service"]},
        {"name": "disk", "class": "disk", "args": ["-p", str(tmp_path)]},
    ]}}})
    started = time.monotonic()
    ran = run_cli("check", "batch", "--config", config, "--timeout", "3", "--format", "json",
                  env={"AUTOREMEDY_EXEC_PATH": f"{fake_bin}:/usr/bin:/bin"})
    took = time.monotonic() - started
    checks = ran.json["data"]["checks"]
    assert checks["stuck"]["status"] == 3 and "timed out" in checks["stuck"]["summary"]
    assert checks["disk"]["status"] == 3 and "budget was spent" in checks["disk"]["summary"]
    assert took < 5, took


@pytest.mark.parametrize("section, message", [
    ({"checks": []}, "checks.batch.checks: expected a non-empty list"),
    ({"checks": [{"name": "a b", "class": "disk"}]}, "checks.batch.checks[0].name: 'a b' is not a name"),
    ({"checks": [{"name": "x", "class": "nope"}]}, "checks.batch.checks[0].class: 'nope' is not a check class"),
    ({"checks": [{"name": "x", "class": "batch"}]}, "checks.batch.checks[0].class: 'batch' is not a check class"),
    ({"checks": [{"name": "x", "class": "disk"}, {"name": "x", "class": "disk"}]}, "is used twice"),
    ({"checks": [{"name": "x", "class": "disk", "args": "-p /"}]}, "checks.batch.checks[0].args: expected a list"),
])
def test_bad_configuration_is_one_unknown_line(run_cli, make_config, section, message):
    ran = run_cli("check", "batch", "--config", make_config({"checks": {"batch": section}}))
    assert ran.returncode == 3
    assert ran.stdout.startswith("BATCH UNKNOWN: ") and message in ran.stdout, ran
    assert len(ran.stdout.splitlines()) == 1 and not ran.stderr
