"""Shared test fixtures.

The suite tests the *installed* bundle (``make test`` installs it into .venv):
``autoremedy`` is run as a whole process exactly the way Sensu or Zabbix runs it,
and Python imports use ``autoremedy.*`` only.

Integration tests need real services (RabbitMQ, MariaDB, Zabbix...). The project's
scripts install and start them (scripts/ci-setup.sh); a test that cannot reach
its service must fail, not skip. ``pytest_sessionfinish`` below turns any skip
into a failed run when ``CI`` or ``AUTOREMEDY_NO_SKIP`` is set, so a missing
service can never pass unnoticed.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

BIN_DIR = os.path.dirname(sys.executable)
AUTOREMEDY = os.path.join(BIN_DIR, "autoremedy")
FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")

_skipped = []


def pytest_runtest_logreport(report):
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    strict = os.environ.get("AUTOREMEDY_NO_SKIP") or os.environ.get("CI")
    if strict and _skipped and exitstatus == 0:
        sys.stderr.write("\nskipped tests are failures here (a missing service must not pass):\n")
        for nodeid in _skipped:
            sys.stderr.write(f"  {nodeid}\n")
        session.exitstatus = 1


@pytest.fixture
def state_dir(tmp_path):
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
def make_config(tmp_path, state_dir):
    """Write a YAML config (a dict or a YAML string) with state_dir set; return its path."""
    import yaml

    def make(content=None, name="autoremedy.yaml"):
        if content is None:
            data = {}
        elif isinstance(content, str):
            data = yaml.safe_load(textwrap.dedent(content)) or {}
        else:
            data = dict(content)
        data.setdefault("state_dir", str(state_dir))
        data.setdefault("maintenance_file", str(tmp_path / "maintenance"))
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data))
        return str(path)
    return make


def cli_env(extra=None, state_dir=None):
    """A clean environment for the command: no inherited AUTOREMEDY_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOREMEDY_")}
    if state_dir is not None:
        env["AUTOREMEDY_STATE_DIR"] = str(state_dir)
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return env


class Ran:
    def __init__(self, proc):
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    @property
    def json(self):
        return json.loads(self.stdout)

    def __repr__(self):
        return f"Ran(rc={self.returncode}, stdout={self.stdout!r}, stderr={self.stderr!r})"


@pytest.fixture
def run_cli(state_dir):
    """Run the installed ``autoremedy`` command; returns .returncode/.stdout/.stderr."""
    def run(*args, env=None, input=None, timeout=60, cwd=None):
        proc = subprocess.run([AUTOREMEDY, *map(str, args)], capture_output=True, text=True,
                              env=cli_env(env, state_dir), input=input, timeout=timeout, cwd=cwd)
        return Ran(proc)
    return run


def pytest_configure(config):
    config.addinivalue_line("markers", "integration: needs a real service or a real external tool")
