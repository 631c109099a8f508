"""StackStorm area: the pack's rules and workflows under orquesta 1.2.0."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from st2kit import Engine  # noqa: E402


@pytest.fixture(scope="session")
def engine():
    eng = Engine()
    yield eng
    eng.close()
