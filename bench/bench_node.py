"""Node checks: cold start of each check as a whole process, side by side with
its floor (`python3 -c 'import psutil'`: a psutil check cannot start faster) and
with monitoring-plugins' C checks where installed. Target: median <= 1.5x the floor.
"""
import os

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
    return rows
