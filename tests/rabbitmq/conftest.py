"""Fixtures of the RabbitMQ area.

Integration tests run against the machine's shared RabbitMQ (AMQP 5672, management
API 15672, enabled by scripts/setup.d/20-rabbitmq.sh), each test in a vhost of its
own that is deleted afterwards, and against throwaway nodes started here (ports
5673-5675 / 15673-15675 / 25673-25675, node names rmqtest-*@<host>) for anything
destructive. A missing service fails the tests; nothing is skipped.
"""
import os
import sys
import uuid

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import rmq_helpers as rh  # noqa: E402


@pytest.fixture(scope="session")
def shared():
    """The shared node's management API; fails (never skips) when it is not there."""
    client = rh.Client()
    try:
        client.call("GET", "overview")
    except Exception as exc:
        pytest.fail(f"shared RabbitMQ management API {rh.SHARED_API} unavailable ({exc}); "
                    "run scripts/setup.d/20-rabbitmq.sh")
    return client


@pytest.fixture
def vhost(shared):
    name = f"ar-test-{uuid.uuid4().hex[:10]}"
    shared.make_vhost(name)
    yield name
    shared.drop_vhost(name)


@pytest.fixture
def rmq_config(make_config):
    """A config for the shared node with a ``rabbitmq:`` section; extra keys merge in."""
    def make(rabbitmq=None, remediations=None, **top):
        section = {"api_url": rh.SHARED_API, "user": "guest", "node": "rabbit@localhost"}
        section.update(rabbitmq or {})
        data = {"rabbitmq": section, **top}
        if remediations is not None:
            data["remediations"] = remediations
        return make_config(data)
    return make


@pytest.fixture
def double():
    server = rh.Double()
    yield server
    server.close()
