"""`autoremedy remediate process|disk` end to end: real processes, real files, real guards."""
import getpass
import json
import os
import subprocess
import time

import pytest

from nodekit import fill, fresh, future_env

pytestmark = pytest.mark.integration
MiB = 1024 * 1024


def audit(state_dir):
    with open(state_dir / "audit.log") as handle:
        return [json.loads(line) for line in handle]


def kill_matching(pattern):
    subprocess.run(["pkill", "-f", pattern], check=False)


@pytest.fixture
def process_config(make_config, daemon_binary, tmp_path):
    marker = f"{os.path.basename(daemon_binary)} 3600"
    path = make_config({"remediations": {"process": {
        "enabled": True,
        "guards": {"rate_limit": {"max": 2, "per": "1h"}},
        "targets": {"demo-daemon": {"start": [daemon_binary, "3600"],
                                    "check": {"cmdline": marker}, "settle": "5s",
                                    "min_uptime": "1s"}}}}})
    yield path, marker
    kill_matching(marker)


def test_restart_a_dead_daemon_verify_and_audit(run_cli, process_config, state_dir):
    config, marker = process_config
    check = run_cli("check", "process", "--cmdline", marker)
    assert check.returncode == 2
    ran = run_cli("remediate", "process", "--config", config, "demo-daemon")
    assert ran.returncode == 0, ran
    lines = ran.stdout.splitlines()
    assert lines[0] == "process demo-daemon: remediated: verified OK"
    assert any(line.startswith("  verify: OK: 1 process matching cmdline") for line in lines)
    assert run_cli("check", "process", "--cmdline", marker).returncode == 0
    record = audit(state_dir)[-1]
    assert record["outcome"] == "remediated" and record["trigger"] == "cli"
    assert record["plan"][0]["argv"][1:] == ["3600"]
    # Idempotent: a second run finds it healthy and does nothing.
    again = run_cli("remediate", "process", "--config", config, "demo-daemon")
    assert again.stdout.startswith("process demo-daemon: noop")


def test_dry_run_prints_the_plan_and_starts_nothing(run_cli, process_config):
    config, marker = process_config
    ran = run_cli("remediate", "process", "--config", config, "--dry-run", "demo-daemon")
    assert ran.returncode == 0
    assert ran.stdout.splitlines()[0] == "process demo-daemon: dry-run: would run the plan"
    assert f"  would: start demo-daemon as {getpass.getuser()} in /  [" in ran.stdout
    assert run_cli("check", "process", "--cmdline", marker).returncode == 2


def test_rate_limit_then_escalation(run_cli, process_config, state_dir):
    config, marker = process_config
    for _ in range(2):
        assert run_cli("remediate", "process", "--config", config, "demo-daemon").returncode == 0
        kill_matching(marker)
        time.sleep(0.2)
    third = run_cli("remediate", "process", "--config", config, "demo-daemon")
    assert third.returncode == 1
    assert third.stdout.startswith("process demo-daemon: refused: 2 runs on demo-daemon in the last 3600s")
    assert audit(state_dir)[-1]["guard"] == "rate_limit"


def test_unlisted_target_and_disabled_class_are_refused(run_cli, make_config, process_config):
    config, _ = process_config
    ran = run_cli("remediate", "process", "--config", config, "sshd")
    assert ran.returncode == 1 and "'sshd' is not in remediations.process.targets" in ran.stdout
    off = make_config({"remediations": {"process": {"targets": {"x": {"unit": "x"}}}}}, name="off.yaml")
    ran = run_cli("remediate", "process", "--config", off, "x")
    assert ran.returncode == 1 and "remediations.process.enabled is not true" in ran.stdout


def test_environment_dry_run_wins(run_cli, process_config):
    config, marker = process_config
    ran = run_cli("remediate", "process", "--config", config, "demo-daemon", env={"AUTOREMEDY_DRY_RUN": "1"})
    assert "dry-run" in ran.stdout.splitlines()[0]
    assert run_cli("check", "process", "--cmdline", marker).returncode == 2


def test_bad_configuration_is_exit_3_naming_the_key(run_cli, make_config):
    bad = make_config({"remediations": {"process": {"enabled": True, "targets": {"x": {"start": "rm -rf /"}}}}})
    ran = run_cli("remediate", "process", "--config", bad, "x")
    assert ran.returncode == 3
    assert "remediations.process.targets.x.start: expected a list" in ran.stderr
    ran = run_cli("config", "check", "--config", bad)
    assert ran.returncode == 3 and "targets.x.start" in ran.stderr


# --- disk ---------------------------------------------------------------------------

@pytest.fixture
def full_disk(tmpfs, tmp_path, make_config):
    """96% full; the remediation runs 10 days ahead (nodekit.future_env), so
    every file written here is 10 days old unless made fresh."""
    mount = tmpfs("10m")
    logs = os.path.join(mount, "log")
    os.makedirs(os.path.join(logs, "nova"))
    old = [fill(logs, 2 * MiB, "syslog.1"), fill(os.path.join(logs, "nova"), 3 * MiB, "nova-compute.log.2.gz"),
           fill(logs, 2 * MiB, "kern.log.old")]
    recent = fill(logs, MiB // 2, "syslog.2.gz")                    # rotated but recent: kept
    fresh(recent)
    current = fill(logs, MiB // 2, "syslog")                        # live log: kept
    userdata = fill(mount, int(1.6 * MiB), "database.ibd")         # not a log: kept
    outside = tmp_path / "precious.1"                               # reachable only via a symlink
    outside.write_bytes(b"x" * 1000)
    os.symlink(str(outside), os.path.join(logs, "link.1"))
    os.symlink(str(tmp_path), os.path.join(logs, "dirlink"))
    config = make_config({"remediations": {"disk": {"enabled": True, "targets": {mount: {
        "warning": 85, "critical": 95, "target": 20,
        "rules": [{"type": "rotated-logs", "root": logs, "older_than": "7d"}]}}}}})
    return {"mount": mount, "config": config, "old": old, "kept": [recent, current, userdata],
            "outside": str(outside)}


def test_free_disk_removes_only_what_policy_names(run_cli, full_disk):
    mount, config = full_disk["mount"], full_disk["config"]
    future = future_env()
    assert run_cli("check", "disk", "-p", mount).returncode == 2
    dry = run_cli("remediate", "disk", "--config", config, "--dry-run", mount, env=future)
    assert dry.returncode == 0
    assert "would: remove up to 3 file(s) under" in dry.stdout
    assert ": 7.0MiB in file sizes, frees 7.0MiB of allocated blocks" in dry.stdout
    for path in full_disk["old"]:
        assert f"      {path}\tbytes=" in dry.stdout and os.path.exists(path)
    ran = run_cli("remediate", "disk", "--config", config, mount, env=future)
    assert ran.returncode == 0, ran
    assert ran.stdout.splitlines()[0] == f"disk {mount}: remediated: verified OK"
    assert "removed 3 file(s), 7.0MiB in file sizes, freed 7.0MiB of allocated blocks" in ran.stdout
    assert "freed 7.0MiB (files removed by rules: 7.0MiB of allocated blocks)" in ran.stdout
    assert not any(os.path.exists(p) for p in full_disk["old"])
    assert all(os.path.exists(p) for p in full_disk["kept"])
    assert os.path.exists(full_disk["outside"])                     # symlink never followed
    assert run_cli("check", "disk", "-p", mount).returncode == 0


def test_cleanup_that_is_not_enough_escalates(run_cli, full_disk):
    mount = full_disk["mount"]
    for path in full_disk["old"]:                                   # mostly user data, little to clean
        os.unlink(path)
    fill(mount, int(6.5 * MiB), "more-user-data")
    fill(os.path.join(mount, "log"), int(0.3 * MiB), "boot.log.1")
    ran = run_cli("remediate", "disk", "--config", full_disk["config"], mount, env=future_env())
    assert ran.returncode == 1
    assert ran.stdout.splitlines()[0].startswith(f"disk {mount}: failed: verification failed: ")
    assert "removed 1 file(s)" in ran.stdout


def test_disk_rules_are_validated(run_cli, make_config, tmpfs):
    mount = tmpfs("4m")
    bad = make_config({"remediations": {"disk": {"enabled": True, "targets": {mount: {
        "rules": [{"type": "rotated-logs", "root": "relative/path", "older_than": "1d"}]}}}}})
    ran = run_cli("remediate", "disk", "--config", bad, mount)
    assert ran.returncode == 1 and "root: an absolute directory is required" in ran.stdout
    bad = make_config({"remediations": {"disk": {"enabled": True, "targets": {mount: {
        "rules": [{"type": "home-dirs"}]}}}}}, name="b.yaml")
    ran = run_cli("config", "check", "--config", bad)
    assert ran.returncode == 3 and "'home-dirs' is not one of" in ran.stderr


def test_a_check_that_cannot_tell_is_a_refusal_never_a_blind_restart(run_cli, make_config, daemon_binary, tmp_path):
    config = make_config({"remediations": {"process": {"enabled": True, "targets": {"blind": {
        "start": [daemon_binary, "3600"], "check": {"pidfile": str(tmp_path / "no" / "such" / "dir.pid")}}}}}})
    ran = run_cli("remediate", "process", "--config", config, "blind")
    assert ran.returncode == 1
    assert ran.stdout.startswith("process blind: refused: cannot tell the process state: pidfile directory")
    assert run_cli("check", "process", "--cmdline", f"{os.path.basename(daemon_binary)} 3600").returncode == 2
