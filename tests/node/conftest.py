"""Node fixtures: real processes started and killed by the test, real tmpfs mounts."""
import shutil
import subprocess
import time
import uuid

import pytest


@pytest.fixture
def daemon_binary(tmp_path):
    """A copy of sleep(1) under a unique name, so --name matches only our processes."""
    name = "ar-" + uuid.uuid4().hex[:10]
    path = tmp_path / name
    shutil.copy("/bin/sleep", path)
    return str(path)


@pytest.fixture
def spawn():
    procs = []

    def start(argv, **kw):
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, **kw)
        procs.append(proc)
        time.sleep(0.05)
        return proc
    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def tmpfs(tmp_path):
    """Mount small tmpfs filesystems (root is required: CI runs as root; fail otherwise)."""
    mounted = []

    def mount(size="8m", inodes=None, name="fs"):
        point = tmp_path / f"{name}-{len(mounted)}"
        point.mkdir()
        opts = f"size={size}" + (f",nr_inodes={inodes}" if inodes else "")
        subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(point)], check=True)
        mounted.append(str(point))
        return str(point)
    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", point], check=False)


@pytest.fixture
def bind():
    """Bind-mount a directory (or file) somewhere; unmounted after the test."""
    mounted = []

    def mount(source, point):
        subprocess.run(["mount", "--bind", str(source), str(point)], check=True)
        mounted.append(str(point))
        return str(point)
    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", point], check=False)
