"""`make deb`: the package's content, and a real `dpkg -i` / `dpkg --purge` on
this machine (its commands run, its scripts set up group, state directory,
byte-code and sudoers, and a purge leaves nothing behind)."""
import grp
import json
import os
import stat
import subprocess

import pytest

from pkgenv import AUTOREMEDY, PACKAGING, dpkg, machine_lock, need

pytestmark = pytest.mark.integration


def dpkg_deb(*args):
    return subprocess.run([need("dpkg-deb"), *map(str, args)], capture_output=True, text=True,
                          check=True).stdout


def test_control_fields_and_dependencies(deb_file):
    info = dpkg_deb("-f", deb_file)
    assert "Package: autoremedy\n" in info
    version = subprocess.run([AUTOREMEDY, "--version"], capture_output=True, text=True).stdout.strip()
    assert f"Version: {version}-1\n" in info
    assert "Depends: python3 (>= 3.9), adduser, libc6" in info   # psutil's C part needs libc only


def test_files_are_under_the_private_prefix_and_etc_is_conffiles(deb_file, tmp_path):
    listing = dpkg_deb("-c", deb_file)
    paths = {line.split()[5].lstrip(".") for line in listing.splitlines()}
    for path in ("/usr/lib/autoremedy/bin/autoremedy", "/usr/lib/autoremedy/libexec/autoremedy",
                 "/usr/lib/autoremedy/lib/autoremedy/cli.py", "/usr/lib/autoremedy/lib/psutil/__init__.py",
                 "/usr/bin/autoremedy", "/usr/libexec/autoremedy/remediate",
                 "/etc/autoremedy/autoremedy.yaml", "/etc/sudoers.d/autoremedy", "/etc/cron.d/autoremedy",
                 "/lib/systemd/system/autoremedy-replay.service", "/lib/systemd/system/autoremedy-replay.timer",
                 "/lib/systemd/system/autoremedy-forwarder.service",
                 "/etc/zabbix/zabbix_agentd.conf.d/autoremedy.conf",
                 "/etc/zabbix/externalscripts/autoremedy_check", "/etc/zabbix/alert.d/autoremedy_alert",
                 "/usr/share/autoremedy/zabbix/autoremedy_template.yaml",
                 "/usr/share/autoremedy/stackstorm/autoremedy/pack.yaml"):
        assert path in paths, path
    # Nothing generic on PATH, no byte-code owned by the package, no debug files.
    assert [p for p in paths if p.startswith("/usr/bin/") and p != "/usr/bin/"] == ["/usr/bin/autoremedy"]
    assert not [p for p in paths if "__pycache__" in p or p.startswith("/usr/lib/debug")]
    sudoers = next(line for line in listing.splitlines() if line.endswith("./etc/sudoers.d/autoremedy"))
    assert sudoers.startswith("-r--r----- root/root")
    subprocess.run([need("dpkg-deb"), "-e", str(deb_file), str(tmp_path / "control")], check=True)
    conffiles = (tmp_path / "control" / "conffiles").read_text().split()
    assert sorted(conffiles) == ["/etc/autoremedy/autoremedy.yaml", "/etc/cron.d/autoremedy",
                                 "/etc/sudoers.d/autoremedy",
                                 "/etc/zabbix/zabbix_agentd.conf.d/autoremedy.conf"]
    # The cron entry for nodes without systemd: packaging/cron/autoremedy as is, 0644 root.
    cron = next(line for line in listing.splitlines() if line.endswith("./etc/cron.d/autoremedy"))
    assert cron.startswith("-rw-r--r-- root/root")
    subprocess.run([need("dpkg-deb"), "-x", str(deb_file), str(tmp_path / "root")], check=True)
    with open(os.path.join(PACKAGING, "cron", "autoremedy"), "rb") as handle:
        assert (tmp_path / "root" / "etc" / "cron.d" / "autoremedy").read_bytes() == handle.read()


@pytest.fixture(scope="module")
def installed(deb_file):
    """dpkg -i on this machine; purged at the end (and checked to leave nothing).
    The machine has one dpkg database: another test session's install is waited
    for (machine_lock), and so is a package manager holding dpkg's lock."""
    with machine_lock("dpkg"):
        dpkg("--purge", "autoremedy")   # a leftover of an aborted run
        proc = dpkg("-i", deb_file)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        files = subprocess.run([need("dpkg"), "-L", "autoremedy"], capture_output=True, text=True,
                               check=True).stdout.split("\n")
        yield [f for f in files if f]
        proc = dpkg("--purge", "autoremedy")
        assert proc.returncode == 0, proc.stdout + proc.stderr


def run(*argv, env=None):
    """Run a command with a minimal environment, the way a monitor or sudo would
    (from /, so no source tree in the working directory can shadow anything)."""
    return subprocess.run(list(map(str, argv)), capture_output=True, text=True, cwd="/",
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **(env or {})})


def test_installed_commands_run_like_the_dev_install(installed, check_classes, tmp_path):
    assert run("/usr/bin/autoremedy", "check", "--list").stdout.split() == check_classes
    got = run("/usr/bin/autoremedy", "check", "disk", "-p", "/", "--format", "json")
    assert got.returncode in (0, 1, 2) and json.loads(got.stdout)["name"] == "disk"
    assert run("/usr/bin/autoremedy", "config", "check").stdout.strip() == "/etc/autoremedy/autoremedy.yaml: OK"
    # The vendored lib is what runs, not a copy elsewhere on the machine.
    where = run("/usr/bin/python3", "-c", "import autoremedy, psutil; print(autoremedy.__file__, psutil.__file__)",
                env={"PYTHONPATH": "/usr/lib/autoremedy/lib"})
    assert where.stdout.split() == ["/usr/lib/autoremedy/lib/autoremedy/__init__.py",
                                    "/usr/lib/autoremedy/lib/psutil/__init__.py"]
    # The Zabbix installer (pyzabbix is vendored too) answers bad input in one line.
    setup = run("/usr/bin/autoremedy", "zabbix-setup", "--url", "http://127.0.0.1:9", "--password-file",
                "/nonexistent")
    assert setup.returncode == 2 and setup.stderr == "autoremedy: /nonexistent: No such file or directory\n"


def test_postinst_sets_up_group_state_dir_and_bytecode(installed):
    group = grp.getgrnam("autoremedy")
    st = os.stat("/var/lib/autoremedy")
    assert stat.S_IMODE(st.st_mode) == 0o2770 and st.st_uid == 0 and st.st_gid == group.gr_gid
    try:
        import pwd
        pwd.getpwnam("zabbix")
        assert "zabbix" in grp.getgrnam("autoremedy").gr_mem
    except KeyError:
        pass
    assert os.path.exists("/usr/lib/autoremedy/lib/autoremedy/__pycache__")


def test_sudoers_drop_in_is_valid(installed):
    proc = run(need("visudo"), "-cf", "/etc/sudoers.d/autoremedy")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_systemd_units_verify(installed):
    proc = run(need("systemd-analyze"), "verify", "/lib/systemd/system/autoremedy-replay.service",
               "/lib/systemd/system/autoremedy-replay.timer", "/lib/systemd/system/autoremedy-forwarder.service")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_forwarder_unit_runs_the_installed_replay_follow(installed):
    """autoremedy-forwarder.service (installed, not enabled): its ExecStart is the installed
    continuous forwarder, which with the packaged configuration (no StackStorm URL) says
    why it stops and exits 0 (Restart=on-failure does not loop on it)."""
    with open("/lib/systemd/system/autoremedy-forwarder.service") as handle:
        unit = handle.read()
    assert "[Install]" in unit and "WantedBy=multi-user.target" in unit
    [start] = [ln[len("ExecStart="):] for ln in unit.splitlines() if ln.startswith("ExecStart=")]
    assert start.split()[:3] == ["/usr/bin/autoremedy", "replay", "--follow"]
    ran = subprocess.run(start.split(), capture_output=True, text=True, cwd="/", timeout=60,
                         env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert ran.returncode == 0, ran
    assert "replay: StackStorm is not configured (stackstorm.url)" in ran.stdout + ran.stderr, ran


@pytest.mark.parametrize("argv, message", [
    (["process"], "usage: remediate CLASS TARGET"),
    (["process", "nova-compute", "--config", "/tmp/evil.yaml"], "invalid event id"),
    (["process", "--config=/tmp/evil.yaml"], "invalid target"),
    (["process", "nova;reboot"], "invalid target"),
    (["process", "-x"], "invalid target"),
    (["Process", "x"], "invalid class name"),
    (["process", "x", "$(id)"], "invalid event id"),
])
def test_sudo_gate_refuses_anything_but_class_target_event(installed, argv, message):
    proc = run("/usr/libexec/autoremedy/remediate", *argv)
    assert proc.returncode == 2 and message in proc.stderr, proc


def test_sudo_gate_runs_the_guarded_remediation_with_the_system_config(installed):
    proc = run("/usr/libexec/autoremedy/remediate", "process", "not-allowlisted", "evt-1", "--dry-run")
    assert proc.returncode == 1, proc          # refused = escalation, never a restart
    outcome = json.loads(proc.stdout)
    assert outcome["outcome"] == "refused" and outcome["target"] == "not-allowlisted"
    assert outcome["event_id"] == "evt-1"


@pytest.mark.parametrize("argv, message", [
    (["hook", "process"], "usage: remediate hook CLASS TARGET"),
    (["hook", "process", "nova-compute", "--config", "/tmp/evil.yaml"], "not allowed here: --config"),
    (["hook", "process", "nova-compute", "--conf", "/tmp/evil.yaml"], "not allowed here: --conf"),
    (["hook", "process", "nova-compute", "--watch", "--config"], "invalid value for --watch"),
    (["hook", "process", "nova-compute", "--watch"], "needs a value"),
    (["hook", "process", "nova-compute", "--cmdline", ".*"], "not allowed here: --cmdline"),
    (["hook", "process", "nova-compute", "--watch", "x;reboot"], "invalid value for --watch"),
    (["hook", "process", "$(id)"], "invalid target"),
])
def test_sudo_gate_hook_mode_refuses_foreign_options(installed, argv, message):
    proc = run("/usr/libexec/autoremedy/remediate", *argv)
    assert proc.returncode == 2 and message in proc.stderr, proc


def test_sudo_gate_hook_mode_runs_the_node_hook_with_the_system_config(installed):
    # A passing check: the hook re-runs it with the given options and has nothing to do.
    # The target is one the shipped configuration allowlists (/var): the hook refuses
    # any other before running the check (it runs as root here).
    proc = run("/usr/libexec/autoremedy/remediate", "hook", "disk", "/var", "-p", "/var", "-w", "99.9", "-c", "100")
    assert proc.returncode == 0, proc
    assert proc.stdout.startswith("DISK OK: ") and "Traceback" not in proc.stdout + proc.stderr
    refused = run("/usr/libexec/autoremedy/remediate", "hook", "disk", "/", "-p", "/", "-w", "99.9", "-c", "100")
    assert refused.returncode == 2 and refused.stdout == "", refused
    assert refused.stderr == "autoremedy: hook: target '/' is not in remediations.disk.targets (nothing was run)\n"


@pytest.mark.parametrize("user", ["sensu", "zabbix"])
def test_the_agents_users_run_the_installed_deb_through_its_own_sudoers(installed, user):
    """The deb as a node runs it: the monitoring users (scripts/setup.d/47-users.sh makes them
    as their vendor packages do) run the installed checks themselves, and the guarded
    remediation only through the installed gate with the installed sudoers drop-in."""
    import pwd
    pwd.getpwnam(user)                    # fails, never skips, when the users are missing
    assert user in grp.getgrnam("autoremedy").gr_mem

    def as_user(*argv):
        return run("runuser", "-u", user, "--", *argv)
    got = as_user("/usr/bin/autoremedy", "check", "disk", "-p", "/", "--format", "json")
    assert got.returncode in (0, 1, 2) and json.loads(got.stdout)["name"] == "disk", got
    hook = as_user("sudo", "-n", "/usr/libexec/autoremedy/remediate", "hook", "disk", "/var",
                   "-p", "/var", "-w", "99.9", "-c", "100")
    assert hook.returncode == 0 and hook.stdout.startswith("DISK OK: "), hook
    refused = as_user("sudo", "-n", "/usr/libexec/autoremedy/remediate", "process", "not-allowlisted",
                      f"evt-{user}", "--dry-run")
    assert refused.returncode == 1 and json.loads(refused.stdout)["outcome"] == "refused", refused
    assert "Traceback" not in hook.stderr + refused.stderr
    # Not the gate: the user cannot pass its own configuration to anything run as root.
    foreign = as_user("sudo", "-n", "/usr/bin/autoremedy", "remediate", "process", "x")
    assert foreign.returncode == 1 and foreign.stdout == "", foreign
    assert foreign.stderr.startswith(("sudo: ", f"Sorry, user {user} ")), foreign


def test_the_cron_entry_runs_the_installed_replay(installed):
    """/etc/cron.d/autoremedy's command as cron would run it on this machine (no
    systemd here: /run/systemd/system is absent), with no random delay and
    syslog replaced by the output: the installed replay answers (StackStorm is
    not configured in the packaged configuration)."""
    assert not os.path.isdir("/run/systemd/system"), "this test needs a node without systemd"
    with open("/etc/cron.d/autoremedy") as handle:
        [line] = [ln for ln in handle.read().splitlines() if ln.startswith("* * * * * root ")]
    command = line[len("* * * * * root "):].replace("/dev/urandom", "/dev/zero") \
        .replace("logger -t autoremedy-replay -p daemon.notice", "cat")
    ran = run("/bin/sh", "-c", command)
    assert "replay: StackStorm is not configured (stackstorm.url); 0 event(s) wait in " \
        "/var/lib/autoremedy/spool" in ran.stdout, ran


def test_zabbix_paths_resolve(installed):
    for link in ("/etc/zabbix/externalscripts/autoremedy_check", "/etc/zabbix/alert.d/autoremedy_alert"):
        assert os.access(os.path.realpath(link), os.X_OK), link
    out = run("/etc/zabbix/externalscripts/autoremedy_check", "disk", "-p", "/")
    assert json.loads(out.stdout)["name"] == "disk"


def test_purge_leaves_nothing_behind(deb_file, installed):
    """Runs last in this module: remove, purge, and every file the package had is gone."""
    proc = dpkg("--purge", "autoremedy")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shared = {"/", "/.", "/etc", "/usr", "/usr/bin", "/usr/lib", "/usr/libexec", "/usr/share", "/usr/share/doc",
              "/lib", "/lib/systemd", "/lib/systemd/system", "/etc/sudoers.d", "/etc/cron.d", "/etc/zabbix",
              "/etc/zabbix/zabbix_agentd.conf.d", "/etc/zabbix/externalscripts", "/etc/zabbix/alert.d"}
    left = [f for f in installed if f not in shared and os.path.lexists(f)]
    assert left == []
    for path in ("/usr/lib/autoremedy", "/var/lib/autoremedy", "/etc/autoremedy"):
        assert not os.path.exists(path), path
    # Reinstall so the module fixture's final purge has something to purge.
    proc = dpkg("-i", deb_file)
    assert proc.returncode == 0, proc.stdout + proc.stderr
