"""One name for the process selector: `process:` in a watch (checks.process.watch)
and in a remediation target's `check:`; the old `check.name` is still read, and
`autoremedy config check` says it is deprecated in one line."""
import subprocess
import sys

import pytest

from autoremedy.config import Config, ConfigError


def remediation(targets, tmp_path):
    from autoremedy.cli import load
    config = Config({"state_dir": str(tmp_path), "remediations": {"process": {
        "enabled": True, "targets": targets}}})
    return load("remediations", "process").REMEDIATION(config)


START = {"start": ["/usr/bin/sleep", "3600"]}


@pytest.mark.parametrize("check,argv", [
    ({"process": "sleep"}, ["--name", "sleep"]),
    ({"name": "sleep"}, ["--name", "sleep"]),                 # deprecated, same meaning
    ({"cmdline": "sleep 3600"}, ["--cmdline", "sleep 3600"]),
    (None, ["--name", "sleepy"]),                              # default: the target's name
])
def test_the_check_selector_of_a_target(tmp_path, check, argv):
    entry = dict(START, **({"check": check} if check else {}))
    fix = remediation({"sleepy": entry}, tmp_path)
    assert fix.resolve("sleepy") == "sleepy"
    assert fix.selector("sleepy")[:2] == argv


def test_process_is_accepted_and_name_is_flagged_deprecated(tmp_path):
    fix = remediation({"new": dict(START, check={"process": "sleep"}),
                       "old": dict(START, check={"name": "sleep"})}, tmp_path)
    assert fix.config_notes("new") == []
    [note] = fix.config_notes("old")
    assert note.startswith("deprecated: check.name is read as check.process") and "\n" not in note


def test_both_spellings_at_once_are_refused(tmp_path):
    fix = remediation({"both": dict(START, check={"process": "sleep", "name": "other"})}, tmp_path)
    with pytest.raises(ConfigError, match="same selector"):
        fix.resolve("both")


def test_config_check_shows_the_deprecation(run_cli, make_config):
    new = make_config({"remediations": {"process": {"enabled": True, "targets": {
        "sleepy": dict(START, check={"process": "sleep"})}}}}, name="new.yaml")
    ran = run_cli("config", "check", "--config", new)
    assert ran.returncode == 0 and "deprecated" not in ran.stdout + ran.stderr, ran
    old = make_config({"remediations": {"process": {"enabled": True, "targets": {
        "sleepy": dict(START, check={"name": "sleep"})}}}}, name="old.yaml")
    ran = run_cli("config", "check", "--config", old)
    assert ran.returncode == 0, ran
    lines = [line for line in ran.stdout.splitlines() if "deprecated" in line]
    assert lines == ["note: remediations.process.targets.sleepy: deprecated: check.name is read "
                     "as check.process (the key a process watch uses): rename it to 'process'"], ran


def test_a_watch_and_a_target_find_the_same_process_by_the_same_key(run_cli, make_config, tmp_path):
    """The watch's `process:` and the target's `check.process:` give the same
    verdict for a running daemon (argv[0] is its process name)."""
    name = "ar-selector-t"
    daemon = subprocess.Popen([name, "-c", "import time; time.sleep(60)"], executable=sys.executable)
    try:
        config = make_config({"checks": {"process": {"watch": [{"name": "w", "process": name}]}},
                              "remediations": {"process": {"enabled": True, "targets": {
                                  "t": dict(START, check={"process": name})}}}})
        watch = run_cli("check", "process", "--watch", "w", env={"AUTOREMEDY_CONFIG": config})
        fix = remediation({"t": dict(START, check={"process": name})}, tmp_path)
        direct = run_cli("check", "process", *fix.selector("t")[:2])
        assert watch.returncode == direct.returncode == 0, (watch, direct)
    finally:
        daemon.kill()
        daemon.wait()
