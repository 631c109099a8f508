"""The hardened state-directory handling (issue #12), measured as a node runs it.

    .venv/bin/python bench/run.py privilege      (as root: it switches to zabbix)

A ``handle sensu`` per event as the ``zabbix`` user (a whole process: start-up,
spool in a root:autoremedy 2770 state directory, POST to the StackStorm double,
unspool), with this tree's file handling (safefs: openat walks, O_NOFOLLOW,
owner checks) against the same handler of the commit before it (BASE), both run
the same way (/usr/bin/python3 -S, the bundle and its libraries staged in a
directory zabbix can read). Target: <= 1.05x. A second row sets the hardened
handler against ``python3 -c 'import requests'``, the reference the other
handler rows use.
"""
import json
import os
import shutil
import subprocess
import tempfile

from bench.lib import PYTHON, compare, row

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = "e7ee506"             # main before the hardening
DOUBLE = os.path.join(ROOT, "tests", "doubles", "st2.py")
EVENT = os.path.join(ROOT, "tests", "fixtures", "sensu", "sensu-go-event.json")
KEY = "bench-key"
MAIN = "import sys; from autoremedy.cli import main; sys.exit(main())"
LIBS = ("psutil", "yaml", "_yaml", "requests", "urllib3", "idna", "certifi",
        "charset_normalizer")


def _site():
    """The venv's site-packages: the installed bundle (the source tree's
    autoremedy/ lacks the checks, handlers and remediations packages)."""
    import sysconfig
    return sysconfig.get_paths()["purelib"]


def _stage(dest, package_dir):
    os.makedirs(dest)
    shutil.copytree(package_dir, os.path.join(dest, "autoremedy"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    site = _site()
    for name in os.listdir(site):
        if name.split(".")[0] in LIBS and not name.endswith((".dist-info", ".pth")):
            src = os.path.join(site, name)
            (shutil.copytree if os.path.isdir(src) else shutil.copy2)(src, os.path.join(dest, name))
    subprocess.run(["/usr/bin/python3", "-S", "-m", "compileall", "-q", dest], check=True,
                   stdout=subprocess.DEVNULL)


def run():
    work = tempfile.mkdtemp(prefix="bench-priv-")
    os.chmod(work, 0o755)
    double = subprocess.Popen([PYTHON, DOUBLE, "--port", "0", "--api-key", KEY, "--hook",
                               "autoremedy", "--mode", "up"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        port = int(double.stdout.readline())
        new = os.path.join(work, "new")
        _stage(new, os.path.join(_site(), "autoremedy"))
        src = os.path.join(work, "src")
        os.mkdir(src)
        archive = subprocess.run(["git", "-C", ROOT, "archive", BASE], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", src], input=archive, check=True)
        installed = os.path.join(work, "old-install")
        subprocess.run([PYTHON, "-m", "pip", "install", "-q", "--no-deps", "--target", installed,
                        src], check=True, capture_output=True)
        old = os.path.join(work, "old")
        _stage(old, os.path.join(installed, "autoremedy"))
        for dirpath, dirnames, filenames in os.walk(work):
            os.chmod(dirpath, 0o755)
            for f in filenames:
                os.chmod(os.path.join(dirpath, f), 0o644)
        import grp
        state = os.path.join(work, "state")
        os.mkdir(state)
        os.chown(state, 0, grp.getgrnam("autoremedy").gr_gid)
        os.chmod(state, 0o2770)
        config = os.path.join(work, "autoremedy.yaml")
        with open(config, "w") as handle:
            json.dump({"state_dir": state, "hostname": "bench",
                       "stackstorm": {"url": f"http://127.0.0.1:{port}"}}, handle)
        os.chmod(config, 0o644)
        with open(EVENT) as handle:
            event = handle.read()

        def as_zabbix(lib, *argv):
            return ["runuser", "-u", "zabbix", "--", "env", "-i", "--chdir=/", "PATH=/usr/bin:/bin",
                    f"PYTHONPATH={lib}", f"AUTOREMEDY_CONFIG={config}",
                    f"AUTOREMEDY_ST2_API_KEY={KEY}", "/usr/bin/python3", "-S", *argv]

        handler_new = as_zabbix(new, "-c", MAIN, "handle", "sensu")
        handler_old = as_zabbix(old, "-c", MAIN, "handle", "sensu")
        reference = as_zabbix(new, "-c", "import requests")
        result = compare(handler_new, handler_old, runs=25, stdin_a=event, stdin_b=event)
        assert result["a_rc"] == [0] and result["b_rc"] == [0], result
        rows = [row("handler per event as zabbix: hardened vs before (issue 12)",
                    "handle sensu (safefs)", f"handle sensu ({BASE})", result, target=1.05)]
        result = compare(handler_new, reference, runs=15, stdin_a=event)
        rows.append(row("handler per event as zabbix vs import requests",
                        "handle sensu (safefs)", "python3 -S -c 'import requests'", result))
        return rows
    finally:
        double.terminate()
        double.wait()
        shutil.rmtree(work, ignore_errors=True)
