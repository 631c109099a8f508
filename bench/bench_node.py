"""Node checks: cold start of each check as a whole process, side by side with
its floor (`python3 -c 'import psutil'`: a psutil check cannot start faster) and
with monitoring-plugins' C checks where installed. Target: median <= 1.5x the floor.
"""
import json
import os
import shutil
import subprocess
import tempfile
import time

from bench.lib import AUTOREMEDY, PYTHON, compare, row

PLUGINS = "/usr/lib/nagios/plugins"
FLOOR = [PYTHON, "-c", "import psutil"]


def run():
    rows = []
    env = {"PATH": "/usr/bin:/bin", "AUTOREMEDY_STATE_DIR": "/tmp/autoremedy-bench"}
    process = [AUTOREMEDY, "check", "process", "--name", "sshd"]
    disk = [AUTOREMEDY, "check", "disk"]
    rows.append(row("check process cold start", "autoremedy check process --name sshd",
                    "python3 -c 'import psutil'", compare(process, FLOOR, env=env), target=1.5))
    rows.append(row("check disk cold start", "autoremedy check disk", "python3 -c 'import psutil'",
                    compare(disk, FLOOR, env=env), target=1.5))
    if os.path.exists(os.path.join(PLUGINS, "check_procs")):
        rows.append(row("check process vs C plugin", "autoremedy check process --name sshd",
                        "check_procs -C sshd -c 1:",
                        compare(process, [os.path.join(PLUGINS, "check_procs"), "-C", "sshd", "-c", "1:"], env=env)))
    if os.path.exists(os.path.join(PLUGINS, "check_disk")):
        rows.append(row("check disk vs C plugin", "autoremedy check disk", "check_disk -w 15% -c 5%",
                        compare(disk, [os.path.join(PLUGINS, "check_disk"), "-w", "15%", "-c", "5%"], env=env)))
    rows += noharm_rows()
    return rows


def noharm_rows():
    """What the no-harm contract costs a node remediation: ``remediate --dry-run`` plans and
    reads the reach and the invariants (exactly what a run reads before it acts) — side by
    side with the class's own check on the same target. Disk: a 16 MiB tmpfs 85% full with
    500 rotated logs in the rule's root (the walk the reach watches); process: a daemon
    that is down (the reach reads every /proc/*/cmdline)."""
    if os.geteuid() != 0:
        print("no-harm rows skipped: mounting the tmpfs needs root")
        return []
    work = tempfile.mkdtemp(prefix="autoremedy-bench-noharm-")
    mnt = os.path.join(work, "mnt")
    os.mkdir(mnt)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", mnt], check=True)
    try:
        logs = os.path.join(mnt, "log")
        os.mkdir(logs)
        with open(os.path.join(logs, "big.log.1"), "wb") as handle:
            handle.write(b"\0" * (12 << 20))
        for n in range(500):
            with open(os.path.join(logs, f"app{n}.log.1"), "wb") as handle:
                handle.write(b"x" * 100)
        config = os.path.join(work, "autoremedy.yaml")
        with open(config, "w") as handle:
            json.dump({"state_dir": os.path.join(work, "state"), "hostname": "bench", "remediations": {
                "process": {"enabled": True, "targets": {"benchd": {
                    "start": ["/usr/bin/sleep", "100000"], "check": {"cmdline": "sleep 100000"}}}},
                "disk": {"enabled": True, "targets": {mnt: {
                    "warning": 50, "critical": 80, "target": 40,
                    "rules": [{"type": "rotated-logs", "root": logs, "older_than": "1s"}]}}}}}, handle)
        time.sleep(1.5)       # every log older than the rule's 1 s: the plan lists them all
        env = {"PATH": "/usr/bin:/bin", "AUTOREMEDY_CONFIG": config}
        process = compare([AUTOREMEDY, "remediate", "process", "benchd", "--dry-run"],
                          [AUTOREMEDY, "check", "process", "--cmdline", "sleep 100000"], env=env)
        disk = compare([AUTOREMEDY, "remediate", "disk", mnt, "--dry-run"],
                       [AUTOREMEDY, "check", "disk", "-p", mnt], env=env)
        assert process["a_rc"] == [0] and disk["a_rc"] == [0], (process, disk)
        return [row("process: plan + no-harm reading (reach, invariants)", "remediate process --dry-run",
                    "check process --cmdline", process),
                row("disk: plan + no-harm reading, 501 files in reach", "remediate disk --dry-run",
                    "check disk -p MOUNT", disk)]
    finally:
        subprocess.run(["umount", mnt], check=False)
        shutil.rmtree(work, ignore_errors=True)
