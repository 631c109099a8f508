"""Fixtures of the fleet area: a Redis, a MariaDB and an etcd of the tests' own
(tests/fleet/services.py), each brought up once per session, stopped at the end.
Tests that kill a backend bring it back before they end."""
import os
import sys
import uuid

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import services   # noqa: E402


@pytest.fixture(scope="session")
def fleet_base():
    base = services.make_base()
    yield base
    services.remove(base)


def _service(kind, base, first=True):
    server = kind(base)
    if isinstance(server, services.MariaDB):
        server.start(first=True)
    else:
        server.start()
    return server


@pytest.fixture(scope="session")
def redis_backend(fleet_base):
    server = _service(services.Redis, fleet_base)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mysql_backend(fleet_base):
    server = _service(services.MariaDB, fleet_base)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def etcd_backend(fleet_base):
    server = _service(services.Etcd, fleet_base)
    yield server
    server.stop()


BACKENDS = {"redis": "redis_backend", "mysql": "mysql_backend", "etcd": "etcd_backend"}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request):
    """Each coordination backend in turn (a running server of our own)."""
    return request.getfixturevalue(BACKENDS[request.param])


@pytest.fixture
def namespace():
    """Keys (Redis, etcd) and ledger rows (MySQL) of this test only."""
    return f"t{uuid.uuid4().hex[:10]}"
