"""`autoremedy check process` as Sensu/Zabbix run it, against real processes."""
import json
import os
import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration


def test_running_daemon_by_name_is_ok_with_exact_output(run_cli, daemon_binary, spawn):
    proc = spawn([daemon_binary, "300"])
    name = os.path.basename(daemon_binary)
    ran = run_cli("check", "process", "--name", name)
    assert ran.returncode == 0, ran
    head, perf = ran.stdout.strip().split(" | ")
    assert head == f"PROCESS OK: 1 process matching name {name}"
    fields = perf.split()
    assert fields[0] == "'count'=1;;1:;0"
    assert fields[1].startswith("'rss'=") and fields[1].endswith("B;;;0")
    assert fields[2].startswith("'cpu'=") and fields[2].endswith("c")
    assert ran.stderr == ""
    proc.kill()
    proc.wait()
    ran = run_cli("check", "process", "--name", name)
    assert ran.returncode == 2
    assert ran.stdout == (f"PROCESS CRITICAL: 0 processes matching name {name} (crit <1) | "
                          "'count'=0;;1:;0 'rss'=0B;;;0 'cpu'=0c\n")


def test_count_ranges_warn_on_too_many(run_cli, daemon_binary, spawn):
    for _ in range(3):
        spawn([daemon_binary, "300"])
    name = os.path.basename(daemon_binary)
    ran = run_cli("check", "process", "--name", name, "-w", "1:2", "-c", "1:")
    assert ran.returncode == 1
    assert ran.stdout.startswith(f"PROCESS WARNING: 3 processes matching name {name} (warn outside 1..2)")


def test_cmdline_regex_does_not_count_the_check_itself(run_cli, daemon_binary, spawn):
    spawn([daemon_binary, "301"])
    pattern = os.path.basename(daemon_binary) + " 301"
    # Sensu wraps the command in `sh -c`: neither the shell nor the check may match.
    ran = run_cli("check", "process", "--cmdline", pattern)
    assert ran.stdout.startswith("PROCESS OK: 1 process matching cmdline"), ran


def test_other_checks_for_the_same_pattern_are_not_counted(run_cli, spawn, daemon_binary):
    """A concurrent `handle hook process --cmdline X` (or check) carries X in its argv."""
    pattern = os.path.basename(daemon_binary) + " 302"
    checker = spawn([sys.executable, "-c", "import time; time.sleep(300)", "check", "process",
                     "--cmdline", pattern])                   # argv of another checker
    assert checker.poll() is None
    assert run_cli("check", "process", "--cmdline", pattern).returncode == 2
    spawn([daemon_binary, "302"])
    ran = run_cli("check", "process", "--cmdline", pattern)
    assert ran.stdout.startswith("PROCESS OK: 1 process matching cmdline"), ran


def test_pidfile_states(run_cli, daemon_binary, spawn, tmp_path):
    pidfile = tmp_path / "d.pid"
    proc = spawn([daemon_binary, "300"])
    pidfile.write_text(f"{proc.pid}\n")
    assert run_cli("check", "process", "--pidfile", pidfile).returncode == 0
    proc.kill()
    proc.wait()
    stale = run_cli("check", "process", "--pidfile", pidfile)
    assert stale.returncode == 2 and "(stale pidfile)" in stale.stdout
    pidfile.unlink()
    missing = run_cli("check", "process", "--pidfile", pidfile)
    assert missing.returncode == 2 and f"pidfile {pidfile} is missing" in missing.stdout
    nodir = run_cli("check", "process", "--pidfile", tmp_path / "nope" / "x.pid")
    assert nodir.returncode == 3 and "does not exist (wrong --pidfile?)" in nodir.stdout
    pidfile.write_text("garbage")
    assert "is not a pid file" in run_cli("check", "process", "--pidfile", pidfile).stdout


def test_zombies_are_not_counted_as_running_and_can_warn(run_cli, daemon_binary, spawn):
    # The parent starts the daemon copy with a 0 s sleep and never reaps it: a zombie.
    # It keeps the Popen object: an unreferenced one is collected at once, and its
    # __del__ polls (waitpid WNOHANG), which reaps a child that has already exited,
    # so on a busy machine there was sometimes no zombie at all (a clean-clone run).
    code = textwrap.dedent(f"""
        import subprocess, time
        child = subprocess.Popen([{daemon_binary!r}, "0"])
        time.sleep(300)
    """)
    spawn([sys.executable, "-c", code])
    import time
    deadline = time.monotonic() + 30      # the parent may take a while to start it on a busy machine
    while True:
        ran = run_cli("check", "process", "--name", os.path.basename(daemon_binary), "--zombies", "-c", "0:")
        if ran.returncode != 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert ran.returncode == 1, ran
    assert "0 processes matching" in ran.stdout and "1 zombie(s)" in ran.stdout
    assert "'zombies'=1;0;;0" in ran.stdout


def test_unit_without_systemd_is_unknown_with_a_reason(run_cli, tmp_path):
    ran = run_cli("check", "process", "--unit", "nova-compute",
                  env={"AUTOREMEDY_EXEC_PATH": str(tmp_path)})   # no systemctl on that PATH
    assert ran.returncode == 3
    assert ran.stdout.startswith("PROCESS UNKNOWN: cannot query systemd for nova-compute: systemctl: command not found")


def test_unit_processes_and_restart_count_from_systemctl(run_cli, daemon_binary, spawn, tmp_path):
    proc = spawn([daemon_binary, "300"])
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "systemctl").write_text(textwrap.dedent(f"""\
        #!/bin/sh
        [ "$1 $2" = "show nova-compute" ] || {{ echo "Unit $2 could not be found." >&2; exit 1; }}
        printf 'LoadState=loaded\\nActiveState=active\\nSubState=running\\nMainPID={proc.pid}\\nNRestarts=7\\nControlGroup=/nonexistent.slice\\n'
        """))
    (fake / "systemctl").chmod(0o755)
    env = {"AUTOREMEDY_EXEC_PATH": str(fake)}
    ran = run_cli("check", "process", "--unit", "nova-compute", "--max-restarts", "5", env=env)
    assert ran.returncode == 1, ran
    assert ran.stdout.startswith("PROCESS WARNING: 1 process matching unit nova-compute; restarted 7 times (more than 5)")
    assert "unit nova-compute: active/running, 7 restart(s)" in ran.stdout
    gone = run_cli("check", "process", "--unit", "glance-api", env=env)
    assert gone.returncode == 3 and "Unit glance-api could not be found." in gone.stdout


def test_watch_entries_from_the_configuration_and_discovery(run_cli, daemon_binary, spawn, make_config):
    spawn([daemon_binary, "300"])
    config = make_config({"checks": {"process": {"watch": [
        {"name": "mydaemon", "process": os.path.basename(daemon_binary)},
        {"name": "compute", "unit": "nova-compute"}]}}})
    ran = run_cli("check", "process", "--watch", "mydaemon", "--config", config)
    assert ran.returncode == 0, ran
    lld = run_cli("check", "process", "--discover", "--config", config)
    assert json.loads(lld.stdout) == [{"{#PROC.NAME}": "mydaemon", "{#PROC.UNIT}": ""},
                                      {"{#PROC.NAME}": "compute", "{#PROC.UNIT}": "nova-compute"}]
    missing = run_cli("check", "process", "--watch", "nope", "--config", config)
    assert missing.returncode == 3 and "no checks.process.watch entry named 'nope'" in missing.stdout


@pytest.mark.parametrize("argv,expected", [
    (["--frobnicate"], "PROCESS UNKNOWN: autoremedy check process: unrecognized arguments: --frobnicate"),
    ([], "PROCESS UNKNOWN: give exactly one of --name, --cmdline, --pidfile, --unit, --watch"),
    (["--name", "a", "--cmdline", "b"], "PROCESS UNKNOWN: give exactly one of"),
    (["--cmdline", "(unclosed"], "PROCESS UNKNOWN: invalid --cmdline regex '(unclosed'"),
    (["--name", "x", "-c", "1:0"], "PROCESS UNKNOWN: invalid range '1:0': start 1 is above end 0"),
    (["--name", "x", "--timeout", "soon"], "PROCESS UNKNOWN: autoremedy check process: argument --timeout"),
])
def test_bad_input_is_unknown_in_one_line(run_cli, argv, expected):
    ran = run_cli("check", "process", *argv)
    assert ran.returncode == 3
    assert ran.stdout.startswith(expected), ran
    assert "Traceback" not in ran.stdout + ran.stderr


def test_zabbix_format_exits_zero_and_carries_the_state(run_cli):
    ran = run_cli("check", "process", "--name", "no-such-daemon-xyz", "--format", "zabbix")
    assert ran.returncode == 0
    data = json.loads(ran.stdout)
    assert data["status"] == 2 and data["metrics"]["count"] == 0
    value = run_cli("check", "process", "--name", "no-such-daemon-xyz", "--format", "zabbix", "--field", "count")
    assert (value.returncode, value.stdout) == (0, "0\n")
    bad = run_cli("check", "process", "--bogus", "--format", "zabbix")
    assert bad.returncode == 0 and json.loads(bad.stdout)["status"] == 3


def test_unknown_check_class_and_command(run_cli):
    ran = run_cli("check", "../../etc/passwd")
    assert ran.returncode == 3 and "is not a valid name" in ran.stdout
    ran = run_cli("check", "nosuchclass")
    assert ran.returncode == 3 and "unknown check class 'nosuchclass' (known: " in ran.stdout
    assert "disk" in ran.stdout and "process" in ran.stdout


def traversable_by_others(path):
    """Add o+x to every directory above ``path`` that lacks it (a CI checkout under a
    0700 temp dir); return the changes so the caller can undo them."""
    changed = []
    path = os.path.dirname(os.path.realpath(path))
    while path != "/":
        mode = os.stat(path).st_mode & 0o7777
        if not mode & 0o001:
            os.chmod(path, mode | 0o001)
            changed.append((path, mode))
        path = os.path.dirname(path)
    return changed


def test_unprivileged_user_reading_other_users_processes(daemon_binary, spawn, state_dir):
    """As `nobody`, root's processes deny some /proc reads: still a clear answer."""
    import subprocess
    autoremedy = os.path.join(os.path.dirname(sys.executable), "autoremedy")
    spawn([daemon_binary, "300"])
    changed = traversable_by_others(autoremedy) + traversable_by_others(os.path.realpath(sys.executable))
    try:
        proc = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                               autoremedy, "check", "process", "--name", os.path.basename(daemon_binary)],
                              capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    finally:
        for path, mode in changed:
            os.chmod(path, mode)
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stdout.startswith("PROCESS OK: 1 process matching name"), proc


def test_processes_whose_proc_entries_deny_reading_are_skipped(monkeypatch):
    """hidepid / other users' kernel threads: unreadable entries are not counted, no error."""
    from autoremedy.checks import process
    real = process._read
    monkeypatch.setattr(process, "_read", lambda path: None if path.endswith("/comm") else real(path))
    assert process._proc_scan(process.by_name("sshd"), None, set()) == []
