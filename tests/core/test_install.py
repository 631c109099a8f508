"""The installed layout: one command on PATH, everything under the autoremedy namespace,
every class an entry point, and each sub-command importing only what it needs."""
import os
import subprocess
import sys
from importlib import metadata

import pytest

AUTOREMEDY = os.path.join(os.path.dirname(sys.executable), "autoremedy")
HEAVY = ("requests", "urllib3", "yaml", "pika", "pymysql", "openstack", "keystoneauth1",
         "pyzabbix", "sensu_plugin")


def test_only_autoremedy_lands_at_the_top_of_site_packages():
    dist = metadata.distribution("autoremedy")
    tops = {f.parts[0] for f in dist.files if f.suffix == ".py"}
    assert tops == {"autoremedy"}
    scripts = [ep.name for ep in dist.entry_points if ep.group == "console_scripts"]
    assert scripts == ["autoremedy"]


def test_every_class_module_is_an_entry_point():
    dist = metadata.distribution("autoremedy")
    groups = {}
    for ep in dist.entry_points:
        groups.setdefault(ep.group, set()).add(ep.name)
    import autoremedy.checks
    import autoremedy.remediations
    for group, package in (("autoremedy.checks", autoremedy.checks),
                           ("autoremedy.remediations", autoremedy.remediations)):
        modules = {f[:-3].replace("_", "-") for f in os.listdir(package.__path__[0])
                   if f.endswith(".py") and not f.startswith("_")}
        assert modules and groups[group] == modules


def imported_modules(*argv, env=None):
    run_env = {"PATH": "/usr/bin:/bin", "PYTHONPROFILEIMPORTTIME": "1", **(env or {})}
    proc = subprocess.run([AUTOREMEDY, *argv], capture_output=True, text=True, env=run_env)
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


@pytest.mark.parametrize("argv", [
    ("check", "process", "--name", "sshd"),
    ("check", "disk"),
    ("check", "disk", "--format", "zabbix"),
])
def test_node_checks_import_nothing_heavy(argv, tmp_path):
    names = imported_modules(*argv, env={"AUTOREMEDY_STATE_DIR": str(tmp_path)})
    assert "psutil" in names
    assert not names & set(HEAVY), names & set(HEAVY)
