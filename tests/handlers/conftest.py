"""Fixtures for the handler tests; the helpers live in handlerkit.py."""
import json

import pytest

from handlerkit import API_KEY, Service, fixture_text, st2_double


@pytest.fixture
def st2():
    double = st2_double.St2Double(api_key=API_KEY, hooks=["autoremedy"]).start()
    yield double
    double.stop()


@pytest.fixture
def sensu_go():
    return json.loads(fixture_text("sensu", "sensu-go-event.json"))


@pytest.fixture
def sensu_classic():
    return json.loads(fixture_text("sensu", "sensu-classic-event.json"))


@pytest.fixture
def service(tmp_path):
    svc = Service(tmp_path)
    yield svc
    svc.kill()
