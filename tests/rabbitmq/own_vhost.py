"""A vhost of the queue tests' own on the shared broker (``ar_oslo_<random>``),
deleted afterwards. The queue test modules import ``vhost`` from here, which
overrides the area's generic fixture of the same name."""
import uuid

import pytest

import rmq_helpers as rh


def make():
    name = f"ar_oslo_{uuid.uuid4().hex[:8]}"
    rh.Client().make_vhost(name)
    return name


@pytest.fixture
def vhost(shared):
    name = make()
    yield name
    shared.drop_vhost(name)
