"""The sudo gate as the monitoring users meet it: real sudo, the packaged
sudoers drop-in and gate script (pointed at the bundle under test). The gate
decides class, target and allowlist before any probe, and never shows what a
root-only file holds, whatever option points at it."""
import os
import shutil
import subprocess

import pytest

from privkit import PATH

SECRET = "ROOT-ONLY-7f3a9c1e"


def configure(node, gate, targets=("svc",)):
    node.write_config({"remediations": {"process": {"enabled": True, "targets": {
        name: {"start": ["/bin/true"], "check": {"pidfile": os.path.join(node.base, "svc.pid")},
               "settle": "1s"} for name in targets}}}})
    shutil.copy(node.config, gate["config"])


def sudo(user, gate, *argv, timeout=30):
    return subprocess.run(["runuser", "-u", user, "--", "sudo", "-n", gate["path"], *argv],
                          capture_output=True, text=True, cwd="/", timeout=timeout,
                          env={"PATH": PATH, "LANG": "C.UTF-8"})


def test_a_target_outside_the_allowlist_is_refused_before_the_check(node, gate):
    configure(node, gate)
    ran = sudo("zabbix", gate, "hook", "process", "elsewhere", "--pidfile", node.secret)
    assert ran.returncode == 2, ran
    assert "target 'elsewhere' is not in remediations.process.targets (nothing was run)" \
        in ran.stderr
    assert "pidfile" not in ran.stdout + ran.stderr          # no probe at all
    ran = sudo("zabbix", gate, "hook", "nosuch", "svc", "--pidfile", node.secret)
    assert ran.returncode == 2 and "no remediation class 'nosuch'" in ran.stderr, ran


@pytest.mark.parametrize("option", ["--pidfile", "--path", "--name", "--unit", "--watch",
                                    "--server", "--node"])
def test_options_pointed_at_root_only_files_show_nothing_of_them(node, gate, option):
    configure(node, gate)
    fifo = os.path.join(node.outside, "fifo")
    if not os.path.exists(fifo):
        os.mkfifo(fifo, 0o600)
    # Only --pidfile and --path are opened as files: a FIFO there must not block.
    for value in (node.secret, fifo) if option in ("--pidfile", "--path") else (node.secret,):
        ran = sudo("zabbix", gate, "hook", "process", "svc", option, value,
                   "--timeout", "5", timeout=20)
        out = ran.stdout + ran.stderr
        assert SECRET not in out and "root:" not in out, out
        assert "Traceback" not in out and "internal error" not in out, out
    with open(node.secret) as handle:
        assert handle.read().strip() == SECRET


def test_a_bad_pidfile_is_not_a_pid_file_nothing_more(node, gate):
    configure(node, gate)
    ran = sudo("zabbix", gate, "hook", "process", "svc", "--pidfile", node.secret)
    assert f"pidfile {node.secret} is not a pid file" in ran.stdout, ran
    assert SECRET not in ran.stdout + ran.stderr


def test_one_remediation_through_the_gate_as_each_user(node, gate):
    configure(node, gate)
    for user in ("sensu", "zabbix"):
        ran = sudo(user, gate, "process", "svc", "--dry-run")
        assert ran.returncode == 0, ran
        assert '"outcome": "dry-run"' in ran.stdout, ran
    # The records are root's, in the group's state directory, group-writable.
    log = os.path.join(node.state, "audit.log")
    assert os.stat(log).st_mode & 0o060 == 0o060
