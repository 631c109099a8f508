"""Packaging benchmarks: what one monitoring cycle costs a node, and what the
packaging adds to a command's start-up.

- ``check batch`` (every node check in one process) against one check, and N
  separate checks against one: the batch target is <= 1.3x one check (one
  interpreter, one set of imports, one configuration load and one reading of
  /proc serve every check: checks/batch.py).
- Start-up of the same command from the unpacked Sensu asset and from the deb's
  files, against the dev venv: target <= 1.2x. The asset and the deb run the
  system's /usr/bin/python3 while the venv may run another build of CPython, so
  a second pair runs the asset with the venv's own interpreter
  (AUTOREMEDY_PYTHON) to isolate what the packaging itself adds.

    $ .venv/bin/python bench/run.py packaging
"""
import os
import subprocess
import sys
import tarfile
import tempfile

from bench.lib import AUTOREMEDY, compare, row

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WATCHES = ("mariadbd", "beam.smp", "redis-server")


def _config(tmp):
    import yaml
    path = os.path.join(tmp, "autoremedy.yaml")
    with open(path, "w") as handle:
        yaml.safe_dump({"state_dir": os.path.join(tmp, "state"),
                        "checks": {"process": {"watch": [{"name": w, "cmdline": w} for w in WATCHES]}}}, handle)
    return path


def _asset(tmp):
    out = os.path.join(tmp, "asset")
    subprocess.run([os.path.join(ROOT, "scripts", "build-asset.sh"), out], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env=dict(os.environ, ASSET_ARCHES="amd64", PYTHON=sys.executable))
    tarball = next(os.path.join(out, f) for f in os.listdir(out) if f.endswith("_linux_amd64.tar.gz"))
    dest = os.path.join(tmp, "asset-unpacked")
    with tarfile.open(tarball) as tar:
        tar.extractall(dest, filter="data")
    return dest


def _deb_root(tmp):
    """The deb's files as dpkg -i leaves them (postinst byte-compiles)."""
    out = os.path.join(tmp, "deb")
    subprocess.run([os.path.join(ROOT, "scripts", "build-deb.sh"), out], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env=dict(os.environ, PYTHON=sys.executable))
    deb = next(os.path.join(out, f) for f in os.listdir(out) if f.endswith(".deb"))
    root = os.path.join(tmp, "deb-root")
    subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
    prefix = os.path.join(root, "usr", "lib", "autoremedy")
    subprocess.run(["/usr/bin/python3", "-m", "compileall", "-q", "-j", "0", prefix], check=True)
    return prefix


def run():
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        config = _config(tmp)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "AUTOREMEDY_CONFIG": config,
               "AUTOREMEDY_STATE_DIR": os.path.join(tmp, "state")}
        one = [AUTOREMEDY, "check", "process", "--watch", WATCHES[0], "--format", "zabbix"]
        batch = [AUTOREMEDY, "check", "batch", "--format", "zabbix"]
        n = len(subprocess.run(batch[:3] + ["--discover"], capture_output=True, text=True, env=env).stdout
                .split("{#AR.CHECK}")) - 1
        result = compare(batch, one, env=env, runs=31)
        rows.append(row(f"check batch ({n} checks) vs one check", "batch", "process --watch", result, target=1.3))
        # The figure the operator pays for on a tenant's compute node: CPU time.
        print(f"check batch ({n} checks) vs one check: CPU time ratio {result['cpu_ratio']:.2f}x", flush=True)
        separate = ["sh", "-c", "; ".join(
            [f"{AUTOREMEDY} check disk --format zabbix >/dev/null"]
            + [f"{AUTOREMEDY} check process --watch {w} --format zabbix >/dev/null" for w in WATCHES]
            + ([f"{AUTOREMEDY} check spool --format zabbix >/dev/null"] if n > 1 + len(WATCHES) else []))]
        result = compare(separate, one, env=env, runs=9)
        rows.append(row(f"{n} separate checks vs one check", "N processes", "process --watch", result))
        print(f"{n} separate checks vs one check: CPU time ratio {result['cpu_ratio']:.2f}x", flush=True)
        rows.append(row(f"{n} separate checks vs check batch", "N processes", "batch",
                        compare(separate, batch, env=env, runs=9)))

        cmd = ["check", "process", "--name", "no-such-daemon"]
        asset = _asset(tmp)
        asset_env = dict(env, PATH=f"{asset}/bin:{env['PATH']}")
        rows.append(row("start-up: Sensu asset vs dev venv", "asset (/usr/bin/python3)", "venv",
                        compare([f"{asset}/bin/autoremedy", *cmd], [AUTOREMEDY, *cmd], env=asset_env), target=1.2))
        same = dict(asset_env, AUTOREMEDY_PYTHON=os.path.realpath(sys.executable))
        rows.append(row("start-up: Sensu asset vs dev venv, same interpreter", "asset (venv's python)", "venv",
                        compare([f"{asset}/bin/autoremedy", *cmd], [AUTOREMEDY, *cmd], env=same), target=1.2))
        prefix = _deb_root(tmp)
        rows.append(row("start-up: deb install vs dev venv", "deb (/usr/bin/python3)", "venv",
                        compare([f"{prefix}/bin/autoremedy", *cmd], [AUTOREMEDY, *cmd], env=env), target=1.2))
        rows.append(row("start-up: deb install vs Sensu asset", "deb", "asset",
                        compare([f"{prefix}/bin/autoremedy", *cmd], [f"{asset}/bin/autoremedy", *cmd], env=env)))
    return rows
