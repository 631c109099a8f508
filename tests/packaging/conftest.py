"""Fixtures for the packaging tests (tests/packaging).

The expensive artefacts (the staged prefix / Sensu asset, the deb, the rpm, a
running Zabbix) are built once per session and shared. Everything they need is
installed by scripts/setup.d/40-zabbix.sh and 45-packaging.sh; a missing tool
fails the test that needs it (never a skip).
"""
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from pkgenv import ROOT, SCRIPTS, classes, need  # noqa: E402


@pytest.fixture(scope="session")
def check_classes():
    return classes()


@pytest.fixture(scope="session")
def artefacts():
    """A session-wide scratch directory that the zabbix user can traverse
    (the zabbix user cannot enter /root; pytest keeps its own tmp dirs 0700)."""
    import pathlib
    import tempfile
    path = pathlib.Path(tempfile.mkdtemp(prefix="autoremedy-packaging-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def asset_dir(artefacts):
    """`make asset` for this machine's architecture: the output directory."""
    out = artefacts / "asset"
    subprocess.run([os.path.join(SCRIPTS, "build-asset.sh"), str(out)], check=True,
                   env=dict(os.environ, ASSET_ARCHES="amd64", PYTHON=sys.executable),
                   stdout=subprocess.DEVNULL)
    return out


@pytest.fixture(scope="session")
def unpacked_asset(asset_dir, artefacts):
    """The amd64 tarball unpacked the way the agent does (into a cache dir named
    after its sha512), after checking the sha512 against the asset definition."""
    import hashlib
    import tarfile
    import yaml
    definition = yaml.safe_load((asset_dir / "autoremedy-asset.yaml").read_text())
    build = next(b for b in definition["spec"]["builds"] if "entity.system.arch == 'amd64'" in b["filters"])
    tarball = asset_dir / os.path.basename(build["url"])
    digest = hashlib.sha512(tarball.read_bytes()).hexdigest()
    assert digest == build["sha512"], "asset sha512 does not match its definition"
    dest = artefacts / "sensu-agent-cache" / digest
    dest.mkdir(parents=True)
    with tarfile.open(tarball) as tar:
        tar.extractall(dest, filter="data")
    return dest


def build(script, out, **env):
    """Run scripts/<script> OUT; return the one file it built matching its suffix."""
    proc = subprocess.run([os.path.join(SCRIPTS, script), str(out)], capture_output=True, text=True,
                          env=dict(os.environ, PYTHON=sys.executable, **env))
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="session")
def deb_file(artefacts):
    """`make deb OUT=...` into a directory that already holds a file: the build
    must leave it alone (dh's clean once ran the project's `make clean` with OUT)."""
    need("dpkg-buildpackage")
    out = artefacts / "deb"
    out.mkdir()
    (out / "keep-me").write_text("an operator's file\n")
    proc = subprocess.run(["make", "-C", ROOT, "deb", f"OUT={out}"], capture_output=True, text=True)
    assert proc.returncode == 0, f"make deb failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    assert (out / "keep-me").read_text() == "an operator's file\n"
    debs = sorted(out.glob("autoremedy_*.deb"))
    assert len(debs) == 1, debs
    return debs[0]


@pytest.fixture(scope="session")
def rpm_file(artefacts):
    need("rpmbuild")
    out = artefacts / "rpm"
    build("build-rpm.sh", out)
    rpms = sorted(out.glob("autoremedy-*.rpm"))
    assert len(rpms) == 1, rpms
    return rpms[0]


@pytest.fixture(scope="session")
def zabbix(unpacked_asset, artefacts):
    """The real Zabbix 6.0 of the session (zabbix_kit.running_stack), shared by
    test_pkg_zabbix.py, test_zabbix_docs.py and test_zabbix_e2e.py: the packaging
    group runs on one worker, so it is started once."""
    from zabbix_kit import running_stack
    with running_stack(unpacked_asset, artefacts) as stack:
        yield stack


@pytest.fixture(scope="module")
def st2(zabbix):
    """A StackStorm double per test module (its own record of what arrived)."""
    from loopback import st2_double
    from zabbix_kit import API_KEY
    with st2_double(API_KEY) as double:
        yield double
