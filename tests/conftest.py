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
import time

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
def live_process():
    """A real process with a unique command line (its argv[0]) for process checks to find:
    a --cmdline pattern is anchored at the program (docs/process.md)."""
    token = f"autoremedy-live-{os.getpid()}-{time.monotonic_ns()}"
    proc = subprocess.Popen([token, "-c", "import time; time.sleep(300)"], executable=sys.executable)
    yield token
    proc.kill()
    proc.wait()


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
    # pytest-xdist registers it; a run with -p no:xdist would warn about an unknown mark.
    config.addinivalue_line("markers", "xdist_group(name): tests kept on one worker (pytest-xdist)")


# --- parallel runs (pytest-xdist, --dist loadgroup) ------------------------------------------
# `make test` runs the suite in a few worker processes. Tests that share a real system brought up
# once per session, or fixed ports, must stay on one worker: they form one group. Every other test
# file is a group of its own. The long groups go first so they start at once and the short files
# fill the other workers around them.
SHARED_SYSTEMS = [  # (group, how to recognise its tests), longest first
    ("real-nova", lambda item: "real_nova" in getattr(item, "fixturenames", ())),
    ("rabbitmq-nodes", lambda item: _path(item) in ("rabbitmq/test_node_cluster.py",
                                                    "rabbitmq/test_node_throwaway.py")),
    ("mysql", lambda item: _path(item).startswith("mysql/")),         # fixed ports (pair, galera)
    ("packaging", lambda item: _path(item).startswith("packaging/")),  # Zabbix stack, built packages
    ("fleet", lambda item: _path(item).startswith("fleet/")),  # own Redis, MariaDB, etcd
]


def _path(item):
    return os.path.relpath(str(item.path), os.path.dirname(__file__)).replace(os.sep, "/")


def _group(item):
    for rank, (name, belongs) in enumerate(SHARED_SYSTEMS):
        if belongs(item):
            return rank, name
    return len(SHARED_SYSTEMS), _path(item)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    groups = {id(item): _group(item) for item in items}
    items.sort(key=lambda item: groups[id(item)][0])     # stable: file order kept within a rank
    for item in items:
        item.add_marker(pytest.mark.xdist_group(groups[id(item)][1]))


@pytest.hookimpl(optionalhook=True)          # an xdist hook: unknown under -p no:xdist
def pytest_xdist_node_collection_finished(node, ids):
    """On the controller: every test carries a group (above), so under ``--dist loadgroup``
    every collected id must end in ``@group``. Without it xdist spreads a group over several
    workers, and two workers bring up the same real system on the same ports and kill each
    other's servers: stop at once rather than fail that way (pytest 9.2 with pytest-xdist
    3.8 does this: https://github.com/pytest-dev/pytest-xdist/issues/1386)."""
    if node.config.getvalue("dist") != "loadgroup":
        return
    ungrouped = [nodeid for nodeid in ids if nodeid.rfind("@") <= nodeid.rfind("]")]
    if ungrouped:
        pytest.exit(f"--dist loadgroup is not in effect ({len(ungrouped)} of {len(ids)} tests without their "
                    f"@group suffix, e.g. {ungrouped[0]}): shared systems would run on several workers at "
                    "once. Use a pytest that pytest-xdist supports (setup.py pins it).", returncode=4)
