"""What the documentation tells a user to type, run as typed (issue 13, item 8),
and the plugin conventions at the command line's edges (item 6)."""
import os
import re

import pytest

from handlerkit import TESTS

REPO = os.path.dirname(TESTS)


def doc_block(path, heading):
    """The first ```yaml block after ``heading`` in a docs page."""
    with open(os.path.join(REPO, path), encoding="utf-8") as handle:
        text = handle.read()
    after = text[text.index(heading):]
    return re.search(r"```yaml\n(.*?)```", after, re.S).group(1)


def test_the_handlers_page_configuration_passes_config_check(run_cli, tmp_path):
    block = doc_block("docs/handlers.md", "## Configuration")
    key = tmp_path / "st2-api-key"
    key.write_text("k\n")
    # Only what must exist on this machine is moved: the state directory and the key file.
    text = block.replace("/var/lib/autoremedy", str(tmp_path / "state")) \
                .replace("/etc/autoremedy/st2-api-key", str(key))
    config = tmp_path / "handlers.yaml"
    config.write_text(text)
    ran = run_cli("config", "check", "--config", config)
    assert ran.returncode == 0, ran
    assert ran.stdout.strip() == f"{config}: OK"


def test_config_check_refuses_a_stackstorm_url_the_handler_would_refuse(run_cli, make_config):
    ran = run_cli("config", "check", "--config", make_config({"stackstorm": {"url": "st2.example.com"}}))
    assert ran.returncode == 3
    assert "stackstorm.url 'st2.example.com' must be http(s)://host" in ran.stderr
    ok = run_cli("config", "check", "--config", make_config({"stackstorm": {"url": "https://st2.example.com"}}))
    assert ok.returncode == 0, ok


def test_collect_at_minus_ten_minutes_as_the_help_says(run_cli, make_config, tmp_path):
    config = make_config({"collect": {"out_dir": str(tmp_path / "bundles"),
                                      "sources": [{"name": "app", "path": str(tmp_path / "app.log")}]}})
    (tmp_path / "app.log").write_text("")
    ran = run_cli("collect", "--at", "-10m", "--config", config, "--json")
    assert ran.returncode == 0, ran
    assert ran.json["path"].startswith(str(tmp_path / "bundles"))


def test_collect_refuses_a_source_it_does_not_have(run_cli, make_config, tmp_path):
    config = make_config({"collect": {"out_dir": str(tmp_path / "bundles"),
                                      "sources": [{"name": "app", "path": str(tmp_path / "app.log")}]}})
    ran = run_cli("collect", "--at", "now", "--source", "nosuch", "--config", config)
    assert ran.returncode == 2
    assert ran.stderr.strip() == ("autoremedy: collect: no source named 'nosuch' "
                                  "(collect.sources has: app)")
    assert not (tmp_path / "bundles").exists()


def test_zabbix_setup_finds_the_definitions_of_a_checkout_without_source(run_cli):
    """README: `make zabbix` then `autoremedy zabbix-setup --url ...` from the
    checkout. Past the definitions, it fails only at the (closed) frontend."""
    ran = run_cli("zabbix-setup", "--url", "http://127.0.0.1:9/", "--password-file", "/dev/null",
                  "--timeout", "2", cwd=REPO,
                  env={"AUTOREMEDY_ZABBIX_PASSWORD": "x"})
    assert "autoremedy_template.yaml" not in ran.stderr, ran
    assert ran.returncode in (2, 3), ran


def test_zabbix_setup_without_any_definitions_says_where_it_looked(run_cli, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    ran = run_cli("zabbix-setup", "--url", "http://127.0.0.1:9/", cwd=tmp_path,
                  env={"AUTOREMEDY_ZABBIX_PASSWORD": "x", "AUTOREMEDY_ZABBIX_DIR": empty})
    assert ran.returncode == 2
    assert f"no autoremedy_template.yaml in {empty} (give --source DIR" in ran.stderr
    # Nothing named: the installed copy, then a checkout's (this machine may have
    # the installed one, so the lookup is run here with it moved out of the way).
    from autoremedy import zabbix_setup
    from autoremedy.contract.runtime import UsageError
    monkeypatch.setattr(zabbix_setup, "DEFAULT_SOURCE", str(tmp_path / "not-installed"))
    monkeypatch.delenv("AUTOREMEDY_ZABBIX_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="not-installed, out/zabbix, packaging/zabbix"):
        zabbix_setup.source_dir(None)
    (tmp_path / "out" / "zabbix").mkdir(parents=True)
    (tmp_path / "out" / "zabbix" / "autoremedy_template.yaml").write_text("zabbix_export: {}\n")
    assert zabbix_setup.source_dir(None) == "out/zabbix"


def test_help_lists_every_command(run_cli):
    ran = run_cli("--help")
    assert ran.returncode == 0
    for command in ("check", "remediate", "handle", "replay", "status", "collect", "config",
                    "zabbix-setup"):
        assert re.search(rf"^  {re.escape(command)}\b", ran.stdout, re.M), command


def test_replay_json_is_json_when_stackstorm_is_not_configured(run_cli, state_dir):
    ran = run_cli("replay", "--json")
    assert ran.returncode == 0
    assert ran.json["stopped"] == "not-configured" and ran.json["left"] == 0


@pytest.mark.parametrize("argv", [[], ["check"], ["remediate"], ["handle"], ["nosuch"]])
def test_usage_errors_exit_3_never_0(run_cli, argv):
    """For a plugin 0 is OK and 2 CRITICAL: a command line that cannot be used
    is UNKNOWN (monitoring-plugins guidelines)."""
    ran = run_cli(*argv)
    assert ran.returncode == 3, ran
    assert "usage" in ran.stdout or "unknown command" in ran.stderr


@pytest.mark.parametrize("argv", [["--help"], ["check", "--help"], ["remediate", "--help"]])
def test_help_asked_for_exits_0(run_cli, argv):
    assert run_cli(*argv).returncode == 0


@pytest.mark.parametrize("spec", ["inf:", "@inf", "1e309:", " "])
def test_thresholds_that_are_not_ranges_are_unknown_with_the_reason(run_cli, spec):
    ran = run_cli("check", "spool", "-w", spec)
    assert ran.returncode == 3
    assert ran.stdout.startswith("SPOOL UNKNOWN: invalid range") and "Traceback" not in ran.stdout
    assert "internal error" not in ran.stdout


@pytest.mark.parametrize("spec,shown", [("10 : 20", "10:20"), ("1e3", "1000"), ("~:1e2", "~:100"),
                                        ("@", "@0:")])
def test_perfdata_carries_the_normalised_threshold(run_cli, spec, shown):
    ran = run_cli("check", "spool", "-w", spec)
    perf = ran.stdout.splitlines()[0].split(" | ", 1)[1]
    assert perf.startswith(f"'depth'=0;{shown};1000;0 "), perf


def test_an_audit_log_that_cannot_be_written_does_not_turn_a_handled_event_into_an_error(
        run_cli, make_config, state_dir, tmp_path):
    """Item 7: audit.log is a directory. The dry-run of the node hook goes through
    perform() (which audits every decision): the event is handled all the same,
    exit 0, no 'internal error', no dead letter."""
    (state_dir / "audit.log").mkdir()
    pidfile = tmp_path / "svc.pid"
    config = make_config({"hostname": "node-under-test", "remediations": {"process": {
        "enabled": True, "targets": {"svc": {"start": ["/bin/true"], "check": {"pidfile": str(pidfile)}}}}}})
    ran = run_cli("handle", "hook", "process", "--config", config, "--target", "svc", "--dry-run",
                  "--pidfile", str(pidfile))
    assert ran.returncode == 0, ran
    assert "internal error" not in ran.stdout + ran.stderr
    assert "local process svc: dry-run" in ran.stdout, ran
    assert not (state_dir / "deadletter").exists()
