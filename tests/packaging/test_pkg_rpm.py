"""`make rpm`: the file list, attributes and scriptlets checked with `rpm -qp`,
and the payload's command run from an unpacked copy."""
import os
import subprocess
import tarfile

import pytest

from pkgenv import PACKAGING, need

pytestmark = pytest.mark.integration


def rpm_q(rpm_file, *args):
    return subprocess.run([need("rpm"), "-qp", *args, str(rpm_file)], capture_output=True, text=True,
                          check=True).stdout


def test_file_list(rpm_file):
    files = set(rpm_q(rpm_file, "--list").split())
    for path in ("/usr/lib/autoremedy/bin/autoremedy", "/usr/lib/autoremedy/lib/autoremedy/cli.py",
                 "/usr/bin/autoremedy", "/usr/libexec/autoremedy/remediate", "/etc/autoremedy/autoremedy.yaml",
                 "/etc/sudoers.d/autoremedy", "/etc/cron.d/autoremedy",
                 "/usr/lib/systemd/system/autoremedy-replay.service",
                 "/usr/lib/systemd/system/autoremedy-replay.timer", "/var/lib/autoremedy",
                 "/usr/lib/systemd/system/autoremedy-forwarder.service",
                 "/etc/zabbix/zabbix_agentd.d/autoremedy.conf", "/usr/lib/zabbix/externalscripts/autoremedy_check",
                 "/usr/lib/zabbix/alertscripts/autoremedy_alert",
                 "/usr/share/autoremedy/zabbix/autoremedy_template.yaml"):
        assert path in files, path
    assert not [f for f in files if "__pycache__" in f or "/usr/com" in f or f.startswith("/usr/lib/debug")]


def test_config_files_and_attributes(rpm_file):
    assert sorted(rpm_q(rpm_file, "--configfiles").split()) == [
        "/etc/autoremedy/autoremedy.yaml", "/etc/cron.d/autoremedy", "/etc/sudoers.d/autoremedy",
        "/etc/zabbix/zabbix_agentd.d/autoremedy.conf"]
    # --dump: path size mtime digest mode owner group isconfig isdoc rdev symlink
    dump = {line.split()[0]: line.split() for line in rpm_q(rpm_file, "--dump").splitlines()}
    state = dump["/var/lib/autoremedy"]
    assert int(state[4], 8) & 0o7777 == 0o2770 and state[5:7] == ["root", "autoremedy"]
    assert int(dump["/etc/sudoers.d/autoremedy"][4], 8) & 0o7777 == 0o440
    # The cron entry for nodes without systemd: packaging/cron/autoremedy as is, 0644 root.
    cron = dump["/etc/cron.d/autoremedy"]
    assert int(cron[4], 8) & 0o7777 == 0o644 and cron[5:7] == ["root", "root"]
    import hashlib
    with open(os.path.join(PACKAGING, "cron", "autoremedy"), "rb") as handle:
        assert cron[3] == hashlib.sha256(handle.read()).hexdigest()
    assert dump["/usr/bin/autoremedy"][10] == "/usr/lib/autoremedy/bin/autoremedy"


def test_requires_only_python3_and_glibc(rpm_file):
    requires = [r for r in rpm_q(rpm_file, "--requires").splitlines() if not r.startswith("rpmlib(")]
    assert sorted(set(requires)) == ["/bin/sh", "glibc", "python3 >= 3.9", "shadow-utils"]


def test_scriptlets(rpm_file):
    scripts = rpm_q(rpm_file, "--scripts")
    pre = scripts.split("preinstall scriptlet")[1].split("postinstall scriptlet")[0]
    assert "groupadd -r autoremedy" in pre
    post = scripts.split("postinstall scriptlet")[1].split("preuninstall scriptlet")[0]
    assert "compileall" in post and "enable --now autoremedy-replay.timer" in post
    preun = scripts.split("preuninstall scriptlet")[1].split("postuninstall scriptlet")[0]
    # On erase ($1 = 0) only: stop the timer and remove the compiled byte-code.
    assert 'if [ "$1" -eq 0 ]' in preun and "__pycache__" in preun and "disable --now" in preun
    # Every scriptlet is valid sh.
    for part in scripts.split(" scriptlet (using /bin/sh):\n")[1:]:
        body = part.rsplit("\n", 1)[0] if part.rstrip().endswith("scriptlet") else part
        body = "\n".join(l for l in body.splitlines() if "scriptlet (using" not in l)
        assert subprocess.run(["sh", "-n"], input=body, text=True).returncode == 0, body


def test_payload_command_runs(rpm_file, tmp_path):
    archive = tmp_path / "payload.tgz"
    with open(archive, "wb") as handle:
        subprocess.run([need("rpm2archive"), "-"], stdin=open(rpm_file, "rb"), stdout=handle, check=True)
    root = tmp_path / "root"
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="tar")
    wrapper = root / "usr/lib/autoremedy/bin/autoremedy"
    out = subprocess.run([str(wrapper), "check", "disk", "-p", "/"], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin"})
    assert out.stdout.startswith("DISK "), out
    assert os.path.islink(root / "usr/bin/autoremedy")
