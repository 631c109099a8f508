"""The commented sample configuration (installed as /etc/autoremedy/autoremedy.yaml)
validates, and so do its commented-out sections once uncommented, for every
failure class this build has: the sample never documents a key that does not exist."""
import os
import re
import subprocess

from pkgenv import AUTOREMEDY, PACKAGING

SAMPLE = os.path.join(PACKAGING, "autoremedy.yaml.sample")


def config_check(path):
    return subprocess.run([AUTOREMEDY, "config", "check", "--config", str(path)], capture_output=True, text=True)


def remediation_classes():
    out = subprocess.run([AUTOREMEDY, "remediate", "--help"], capture_output=True, text=True).stdout
    return out.split("classes:")[1].replace(",", " ").split()


def test_sample_validates_as_shipped(tmp_path):
    path = tmp_path / "autoremedy.yaml"
    path.write_text(open(SAMPLE).read())
    ran = config_check(path)
    assert ran.returncode == 0 and ran.stdout.strip() == f"{path}: OK", ran
    assert "dry_run: true" in open(SAMPLE).read().split("\n# ---")[1]   # the installed default plans only


def uncommented(text, keep):
    """Uncomment the commented YAML blocks of the sample whose top key is in ``keep``
    (class sections two spaces in, connection sections at the top level)."""
    out, active = [], False
    for line in text.splitlines():
        block = re.match(r"^(  )?# ([a-z][a-z-]*):(\s|$)", line)
        if block:
            active = block.group(2) in keep
        elif not re.match(r"^(  )?#( |$)", line):
            active = False
        if active and re.match(r"^(  )?# ", line):
            indent = "  " if line.startswith("  #") else ""
            line = indent + line.strip()[2:]
        out.append(line)
    return "\n".join(out) + "\n"


def test_commented_sections_validate_for_the_classes_this_build_has(tmp_path):
    classes = set(remediation_classes())
    keep = classes | {"mysql" if "mysql-replication" in classes else "",
                      "openstack" if "compute-node" in classes else "",
                      "collect", "rabbitmq" if "rabbitmq-queues" in classes else ""}
    text = uncommented(open(SAMPLE).read(), keep)
    # `config check` reads the secret files a configuration names (a missing one is an
    # operator's error worth reporting), so point them at secrets of the test's own.
    secret = tmp_path / "rabbitmq.secret"
    secret.write_text("guest\n")
    assert "/etc/autoremedy/rabbitmq.secret" in text
    text = text.replace("/etc/autoremedy/rabbitmq.secret", str(secret))
    path = tmp_path / "autoremedy.yaml"
    path.write_text(text)
    ran = config_check(path)
    assert ran.returncode == 0, (ran.stderr, text)
    for cls in classes - {"process", "disk"}:
        assert re.search(rf"^  {re.escape(cls)}:(\s|$)", text, re.M), f"no sample section for {cls}"
