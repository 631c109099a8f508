"""openstacksdk (and requests) load only on the code paths that talk to the cloud."""
import json
import subprocess
import sys

import pytest

HEAVY = ("openstack", "keystoneauth1", "requests", "yaml")

PROBE = """
import json, sys
from autoremedy.cli import run_check
{body}
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def loaded(body):
    code = PROBE.format(body=body, heavy=HEAVY)
    # cwd=/: the source tree must not shadow the installed package
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd="/")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_node_checks_import_nothing_heavy():
    assert loaded("run_check('disk', ['-p', '/']); run_check('process', ['--name', 'init'])") == []


def test_importing_every_openstack_module_imports_no_sdk():
    body = ("import autoremedy.checks.compute_node, autoremedy.checks.openstack_consistency, "
            "autoremedy.remediations.compute_node, autoremedy.remediations.openstack_consistency, "
            "autoremedy.clients.cloud, autoremedy.collection.collect, autoremedy.collection.loggraph, autoremedy.collection.logwindow")
    assert loaded(body) == []


def test_a_usage_error_in_an_api_check_costs_no_sdk_import():
    assert loaded("r, _ = run_check('compute-node', ['--bogus']); assert r.status == 3, r") == []


@pytest.mark.integration
def test_the_api_check_does_load_the_sdk(cloud, computes, os_config):
    computes(2)
    body = f"r, _ = run_check('compute-node', ['--config', {os_config()!r}]); assert r.status == 0, r"
    assert "openstack" in loaded(body)
