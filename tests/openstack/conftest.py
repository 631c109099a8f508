"""Fixtures for the OpenStack area: a real Nova 34 + Placement 16 for the whole
session (tests/openstack/realnova.py), a fake cloud on loopback for the edge
cases real Nova cannot be made to show, and fake ping/ipmitool/virsh
executables on the subprocess boundary's PATH."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from fakebin import FakeBin  # noqa: E402
from fakecloud import Cloud, FakeCloud  # noqa: E402
from osworld import address, deep_merge  # noqa: E402
from realnova import RealNova  # noqa: E402


@pytest.fixture(scope="session")
def real_nova(tmp_path_factory):
    """One real Nova for the session (about 50 s to bring up with the schema
    cache, 1.2 GiB RSS); stopped, its databases and vhost dropped, at the end."""
    nova = RealNova(tmp_path_factory.mktemp("real-nova")).start()
    try:
        yield nova
    finally:
        nova.stop()


@pytest.fixture
def nova(real_nova, fakebin):
    """The session's real Nova at its baseline (three computes up and enabled, no
    servers), every host answering the ping stand-in."""
    real_nova.reset()
    for host in real_nova.hosts:
        fakebin.ping(host, True)
    return real_nova


@pytest.fixture
def nova_config(make_config, nova):
    """A configuration for the real Nova (clouds.yaml, password auth); ``extra``
    deep-merges over it."""
    def make(extra=None, cloud=None, name="autoremedy.yaml"):
        data = {
            "openstack": {
                "cloud": cloud or nova.cloud, "clouds_yaml": nova.clouds_yaml, "timeout": 30,
                "compute": {"probe": {"icmp": True, "tcp_ports": [], "timeout": 1}},
            },
            "remediations": {"compute-node": {
                "enabled": True, "host_patterns": ["host-*"], "concurrency": 3,
                "poll_interval": 0.3, "watch_interval": 0.5, "evacuate_timeout": 90,
            }},
        }
        return make_config(deep_merge(data, extra), name=name)
    return make


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
    make.cloud_url = cloud.fake.url     # its RabbitMQ management API too (fakecloud.py)
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
