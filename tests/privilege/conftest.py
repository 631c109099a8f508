"""Fixtures for the privilege tests (helpers in privkit.py)."""
import os
import shutil
import tempfile

import pytest

from privkit import API_KEY, Node, require_users, st2_double, stage_bundle



@pytest.fixture(scope="session")
def users():
    """(gid of autoremedy, {user: uid}); fails when scripts/setup.d/47-users.sh did not run."""
    assert os.geteuid() == 0, "the privilege tests run as root (they switch to sensu and zabbix)"
    return require_users()


@pytest.fixture(scope="session")
def scratch():
    """Root's scratch directory that every user may traverse (pytest's are 0700)."""
    path = tempfile.mkdtemp(prefix="autoremedy-priv-")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def bundle(scratch):
    return stage_bundle(os.path.join(scratch, "bundle"))


@pytest.fixture
def node(scratch, bundle, users, request):
    base = tempfile.mkdtemp(prefix="node-", dir=scratch)
    os.chmod(base, 0o755)
    return Node(base, bundle, *users)


@pytest.fixture
def st2():
    double = st2_double().St2Double(api_key=API_KEY, hooks=["autoremedy"]).start()
    yield double
    double.stop()


@pytest.fixture(scope="session")
def gate(scratch, bundle, users):
    """The packages' sudo gate, installed with the bundle under test: the gate
    script as packaged with its two paths pointed here, and a sudoers drop-in
    (validated with visudo -c) letting sensu and zabbix run it as root."""
    import subprocess
    from privkit import GROUP, MAIN, PYTHON, ROOT
    where = os.path.join(scratch, "gate")
    os.mkdir(where, 0o755)
    command = os.path.join(where, "autoremedy")
    with open(command, "w") as handle:
        handle.write(f"#!/bin/sh\nPYTHONPATH={bundle} exec {PYTHON} -S -c '{MAIN}' \"$@\"\n")
    os.chmod(command, 0o755)
    config = os.path.join(where, "autoremedy.yaml")
    with open(os.path.join(ROOT, "packaging", "sudoers", "remediate")) as handle:
        script = handle.read()
    assert "autoremedy=/usr/bin/autoremedy\n" in script and \
        "config=/etc/autoremedy/autoremedy.yaml\n" in script
    script = script.replace("autoremedy=/usr/bin/autoremedy\n", f"autoremedy={command}\n") \
        .replace("config=/etc/autoremedy/autoremedy.yaml\n", f"config={config}\n")
    path = os.path.join(where, "remediate")
    with open(path, "w") as handle:
        handle.write(script)
    os.chmod(path, 0o755)
    with open(os.path.join(ROOT, "packaging", "sudoers", "autoremedy")) as handle:
        sudoers = handle.read().replace("/usr/libexec/autoremedy/remediate", path)
    # sudo reads every drop-in as one file: sessions running side by side (pytest-xdist
    # workers, a second checkout) each need an alias name of their own.
    sudoers = sudoers.replace("AUTOREMEDY_REMEDIATE", f"AUTOREMEDY_REMEDIATE_{os.getpid()}")
    drop_in = f"/etc/sudoers.d/autoremedy-privtest-{os.getpid()}"
    staged = os.path.join(where, "sudoers")
    with open(staged, "w") as handle:
        handle.write(sudoers)
    os.chmod(staged, 0o440)
    check = subprocess.run(["visudo", "-c", "-f", staged], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    os.rename(staged, drop_in) if os.stat(staged).st_dev == os.stat("/etc").st_dev \
        else subprocess.run(["install", "-m", "0440", staged, drop_in], check=True)
    try:
        yield {"path": path, "config": config, "group": GROUP}
    finally:
        os.unlink(drop_in)
