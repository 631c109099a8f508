"""The packaged cron entry (packaging/cron/autoremedy, /etc/cron.d/autoremedy):
on a node without systemd it replays the spool as root, leaving the state
directory the group's; where systemd runs (the timer's job) it does nothing."""
import os
import re
import stat
import subprocess

from privkit import API_KEY, ROOT, st2_settings, zabbix_argv

CRON = os.path.join(ROOT, "packaging", "cron", "autoremedy")


def job():
    """(schedule fields, user, command) of the file's one job line."""
    with open(CRON) as handle:
        lines = [ln for ln in handle.read().splitlines()
                 if ln.strip() and not ln.startswith("#") and not re.match(r"^[A-Z]+=", ln)]
    assert len(lines) == 1, lines
    fields = lines[0].split(None, 6)
    return fields[:5], fields[5], fields[6]


def test_the_file_is_one_root_job_every_minute_that_cron_reads_as_written():
    with open(CRON, "rb") as handle:
        data = handle.read()
    assert data.endswith(b"\n")                      # cron ignores an unterminated last line
    assert "." not in os.path.basename(CRON)         # run-parts/cron.d skip names with dots
    schedule, user, command = job()
    assert schedule == ["*"] * 5 and user == "root"
    assert "%" not in command                        # cron would cut the command there
    assert command.startswith("[ -d /run/systemd/system ] || [ ! -x /usr/bin/autoremedy ] || {")
    assert "umask 0007;" in command
    assert "/usr/bin/autoremedy replay --quiet --max-time 25s" in command
    with open(CRON) as handle:
        text = handle.read()
    assert "SHELL=/bin/sh\n" in text and "PATH=/usr/sbin:/usr/bin:/sbin:/bin\n" in text
    # The systemd unit's command is the same replay.
    with open(os.path.join(ROOT, "packaging", "systemd", "autoremedy-replay.service")) as handle:
        assert "ExecStart=/usr/bin/autoremedy replay --quiet" in handle.read()


def cron_command(node, systemd_dir, log):
    """The job's command as cron runs it, pointed at this node: the bundle for
    /usr/bin/autoremedy, a directory of the test's for /run/systemd/system, no
    random delay (/dev/zero), syslog replaced by a file."""
    command = job()[2]
    wrapper = os.path.join(node.base, "autoremedy-cmd")
    with open(wrapper, "w") as handle:
        handle.write("#!/bin/sh\nexec /usr/bin/python3 -S -c "
                     "'import sys; from autoremedy.cli import main; sys.exit(main())' \"$@\"\n")
    os.chmod(wrapper, 0o755)
    for old, new in (("/usr/bin/autoremedy", wrapper), ("/run/systemd/system", systemd_dir),
                     ("/dev/urandom", "/dev/zero"),
                     ("logger -t autoremedy-replay -p daemon.notice", f"cat >> {log}")):
        assert old in command, old
        command = command.replace(old, new)
    return command


def run_as_cron(node, st2, command):
    # cron's environment: the file's SHELL and PATH, root, umask 022 from the daemon.
    env = node.env({"AUTOREMEDY_ST2_API_KEY": API_KEY, "SHELL": "/bin/sh"})
    return subprocess.run(["/bin/sh", "-c", f"umask 022; {command}"], capture_output=True,
                          text=True, env=env, cwd="/", timeout=120)


def spooled(node):
    spool = os.path.join(node.state, "spool")
    return sorted(n for n in os.listdir(spool) if n.endswith(".json") and n[0] != ".")


def test_without_systemd_the_job_replays_and_leaves_the_state_the_groups(node, st2):
    node.write_config({"stackstorm": st2_settings(st2)})
    env = {"AUTOREMEDY_ST2_API_KEY": API_KEY}
    st2.set_mode("down")
    for _ in range(2):
        assert node.run("zabbix", *zabbix_argv(), env=env).returncode in (0, 1)
    argv = zabbix_argv()
    argv[-1] = argv[-1].replace('"4711"', '"4712"')
    assert node.run("zabbix", *argv, env=env).returncode in (0, 1)
    assert len(spooled(node)) == 2
    st2.set_mode("up")
    log = os.path.join(node.base, "syslog")
    absent = os.path.join(node.base, "no-systemd-here")
    ran = run_as_cron(node, st2, cron_command(node, absent, log))
    assert ran.returncode == 0, ran
    with open(log) as handle:
        said = handle.read()
    assert "replay: 2 delivered" in said and "spool empty" in said, said
    assert spooled(node) == [] and len(st2.accepted()) == 2
    gid = os.stat(node.state).st_gid
    for rel, st in node.tree().items():
        assert st.st_gid == gid, rel
        assert stat.S_IMODE(st.st_mode) & 0o060 == 0o060, (rel, oct(st.st_mode))
    # The users go on spooling after root's run.
    st2.set_mode("down")
    ran = node.run("zabbix", *zabbix_argv(), env=env)
    assert "cannot spool" not in ran.stderr and len(spooled(node)) == 1, ran


def test_where_systemd_runs_the_job_leaves_the_replay_to_the_timer(node, st2):
    node.write_config({"stackstorm": st2_settings(st2)})
    env = {"AUTOREMEDY_ST2_API_KEY": API_KEY}
    st2.set_mode("down")
    assert node.run("zabbix", *zabbix_argv(), env=env).returncode in (0, 1)
    st2.set_mode("up")
    present = os.path.join(node.base, "run-systemd-system")
    os.mkdir(present)
    log = os.path.join(node.base, "syslog")
    ran = run_as_cron(node, st2, cron_command(node, present, log))
    assert ran.returncode == 0 and ran.stdout == "" and ran.stderr == "", ran
    assert not os.path.exists(log)                  # nothing ran
    assert len(spooled(node)) == 1 and st2.accepted() == []
