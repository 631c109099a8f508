"""Fixtures for the OpenStack area: a fake cloud on loopback that openstacksdk
talks to through a real clouds.yaml, and fake ping/ipmitool/virsh executables
on the subprocess boundary's PATH."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from fakebin import FakeBin  # noqa: E402
from fakecloud import Cloud, FakeCloud  # noqa: E402
from osworld import address, deep_merge  # noqa: E402


@pytest.fixture
def cloud():
    world = Cloud(evacuate_seconds=0.05)
    with FakeCloud(world) as fake:
        world.fake = fake
        yield world


@pytest.fixture
def fakebin(tmp_path, monkeypatch):
    fake = FakeBin(tmp_path / "bin")
    monkeypatch.setenv("AUTOREMEDY_EXEC_PATH", fake.path)
    return fake


@pytest.fixture
def os_config(make_config, cloud, tmp_path, fakebin):
    """Write a configuration for the fake cloud; ``extra`` deep-merges over it."""
    def make(extra=None):
        clouds = cloud.fake.clouds_yaml(tmp_path / "clouds.yaml")
        hosts = sorted({s["host"] for s in cloud.services.values()})
        data = {
            "openstack": {
                "cloud": "fake", "clouds_yaml": clouds, "timeout": 10,
                "compute": {"probe": {"icmp": True, "tcp_ports": [], "timeout": 1},
                            "hosts": {h: {"address": address(h)} for h in hosts}},
            },
            "remediations": {"compute-node": {
                "enabled": True, "host_patterns": ["cmp*"], "concurrency": 4,
                "poll_interval": 0.05, "watch_interval": 0.05, "evacuate_timeout": 20,
            }},
        }
        return make_config(deep_merge(data, extra))
    return make


@pytest.fixture
def computes(cloud, fakebin):
    """Build N computes; the dead ones are down in Nova and answer no ping."""
    def build(n, dead=(), alive_but_down=(), **kwargs):
        for i in range(1, n + 1):
            host = f"cmp{i}"
            is_dead = host in dead
            cloud.add_compute(host, alive=not is_dead and host not in alive_but_down, **kwargs)
            fakebin.ping(address(host), not is_dead)
        return [f"cmp{i}" for i in range(1, n + 1)]
    return build


@pytest.fixture
def env_for(fakebin, state_dir):
    """Environment for run_cli: the fake executables first on the boundary's PATH."""
    return {"AUTOREMEDY_EXEC_PATH": fakebin.path}
