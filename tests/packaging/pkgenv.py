"""Paths and helpers the packaging tests share (imported by name from the test
modules; kept out of conftest.py so no other area's conftest can shadow it)."""
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PACKAGING = os.path.join(ROOT, "packaging")
SCRIPTS = os.path.join(ROOT, "scripts")
VENV_BIN = os.path.dirname(sys.executable)
AUTOREMEDY = os.path.join(VENV_BIN, "autoremedy")


def need(tool):
    """The path of an external tool the test needs; fails (never skips) without it."""
    path = shutil.which(tool) or (tool if os.path.isfile(tool) else None)
    if path is None:
        pytest.fail(f"{tool} is not installed: run scripts/setup.d/40-zabbix.sh and 45-packaging.sh")
    return path


def classes():
    """The check classes this build has (`autoremedy check --list`)."""
    out = subprocess.run([AUTOREMEDY, "check", "--list"], capture_output=True, text=True, check=True)
    return out.stdout.split()
