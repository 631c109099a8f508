"""What each dependency costs a process that imports it: the reason some are kept
off the checks' start-up path (README, "Dependencies")."""
import importlib.util

from bench.lib import PYTHON, compare, row

MODULES = ["psutil", "yaml", "requests", "urllib3", "pymysql", "pika", "pyzabbix", "sensu_plugin", "openstack"]


def run():
    rows = []
    baseline = [PYTHON, "-c", "pass"]
    for name in MODULES:
        if importlib.util.find_spec(name) is None:
            continue
        result = compare([PYTHON, "-c", f"import {name}"], baseline, runs=7, warmup=1)
        rows.append(row(f"import {name}", f"python3 -c 'import {name}'", "python3 -c pass", result))
    return rows
