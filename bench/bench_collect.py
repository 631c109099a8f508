"""Incident bundles over large logs, side by side with grep.

1 GiB of nova-compute logs in 10 files (five plain, five gzipped rotations, ten
days at ~100 MiB a day), an incident in the live file, a ±15-minute window:

1. ``autoremedy collect`` (signatures, baseline hour, focus, graph; records off)
   against ``zcat -f | grep`` extracting the same window from the same files
   (target: within 3x; grep cannot know which file holds the window, so it reads
   them all), and, for information, against ``grep`` of the window in the live
   file alone (a grep that already knows where to look: no bisection, no
   signatures, no graph);
2. the same collect with only the live file present against all ten (target:
   within 1.3x): the window is found by binary search, and rotations older than
   the window are never opened, so the time does not grow with the total size.

Peak RSS is in the table. The files are generated once under
``$BENCH_COLLECT_DIR`` (default /tmp/autoremedy-bench-collect) and reused.

    .venv/bin/python bench/run.py collect
"""
import gzip
import os
import shutil
import time

from bench.lib import AUTOREMEDY, compare, row

DAY = 86400
FILES = 10
PER_SECOND = 8                      # ~150-byte lines: ~100 MiB a day
T_END = 1795000000.0                # the live file ends here
INCIDENT = T_END - DAY / 2          # in the middle of the live file
ROOT = os.environ.get("BENCH_COLLECT_DIR", "/tmp/autoremedy-bench-collect")
VERSION = "v1"


def _stamp(ts):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _day(handle, start):
    """One day of oslo-formatted lines; an incident in the live day."""
    for sec in range(DAY):
        ts = start + sec
        head = _stamp(ts)
        for k in range(PER_SECOND):
            req = f"req-{(sec * PER_SECOND + k) & 0xffffffff:08x}-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
            handle.write(f"{head}.{k * 100:03d} 3001 INFO nova.compute.manager [{req} {req} admin admin - "
                         f"default default] periodic task _heal_instance_info_cache ran {k}\n")
        if abs(ts - INCIDENT) < 30 and sec % 5 == 0:
            handle.write(f"{head}.950 3001 ERROR nova.compute.manager [req-11111111-2222-4333-8444-"
                         "555555555555 req-c0c0c0c0-c0c0-4c0c-8c0c-c0c0c0c0c0c0 admin admin - default default] "
                         "[instance: 6f9a3c2e-1b4d-4e8f-9a7b-2c3d4e5f6a7b] Instance failed to spawn: "
                         "libvirtError: internal error\n")


def generate():
    full = os.path.join(ROOT, VERSION, "all")
    live_only = os.path.join(ROOT, VERSION, "live")
    done = os.path.join(ROOT, VERSION, ".done")
    if os.path.exists(done):
        return full, live_only
    shutil.rmtree(os.path.join(ROOT, VERSION), ignore_errors=True)
    os.makedirs(full)
    os.makedirs(live_only)
    for i in range(FILES):             # 0 = live, 9 = oldest
        start = T_END - (i + 1) * DAY
        name = "nova-compute.log" + (f".{i}" if i else "") + (".gz" if i >= 5 else "")
        path = os.path.join(full, name)
        opener = (lambda p: gzip.open(p, "wt", compresslevel=1)) if name.endswith(".gz") else \
            (lambda p: open(p, "w"))
        with opener(path) as handle:
            _day(handle, start)
        os.utime(path, (start + DAY, start + DAY))
    shutil.copy2(os.path.join(full, "nova-compute.log"), os.path.join(live_only, "nova-compute.log"))
    open(done, "w").close()
    return full, live_only


def _config(folder, name):
    path = os.path.join(ROOT, VERSION, f"{name}.yaml")
    state = os.path.join(ROOT, VERSION, f"state-{name}")
    os.makedirs(state, exist_ok=True)
    with open(path, "w") as handle:
        handle.write(f"state_dir: {state}\nmaintenance_file: {state}/maintenance\n"
                     f"collect:\n  out_dir: {state}/incidents\n  keep: 3\n  records: false\n"
                     f"  sources:\n    - {{name: nova-compute, path: '{folder}/nova-compute.log*', "
                     "format: oslo}\n")
    return path


def _window_regex():
    """The seconds of the window as an ERE on the timestamp prefix (what an
    operator would type, by the minute)."""
    minutes = sorted({_stamp(INCIDENT + s)[:16] for s in range(-900, 901, 60)})
    return "^(" + "|".join(m.replace("-", "\\-") for m in minutes) + ")"


def run():
    full, live_only = generate()
    size = sum(os.path.getsize(os.path.join(full, f)) for f in os.listdir(full))
    print(f"logs: {FILES} files, {size / 2**20:.0f} MiB on disk under {full}")
    collect_all = [AUTOREMEDY, "collect", "--config", _config(full, "all"), "--at", str(INCIDENT),
                   "--window", "15m", "--json"]
    collect_live = [AUTOREMEDY, "collect", "--config", _config(live_only, "live"), "--at", str(INCIDENT),
                    "--window", "15m", "--json"]
    regex = _window_regex()
    grep_live = ["grep", "-E", regex, os.path.join(full, "nova-compute.log")]
    zgrep_all = ["sh", "-c", f"zcat -f {full}/nova-compute.log* | grep -E '{regex}'"]
    runs = int(os.environ.get("BENCH_COLLECT_RUNS", "5"))
    return [
        row("collect over 1 GiB / 10 files vs zcat|grep of the same window", "collect",
            "zcat -f * | grep -E <window>", compare(collect_all, zgrep_all, runs=max(2, runs // 2),
                                                    warmup=1), target=3.0),
        row("collect over 1 GiB vs grep of the window in the live file only (information)", "collect",
            "grep -E <window> live", compare(collect_all, grep_live, runs=runs, warmup=1)),
        row("collect with 10 files (1 GiB) vs the live file alone (100 MiB)", "collect 10 files",
            "collect 1 file", compare(collect_all, collect_live, runs=runs, warmup=1), target=1.3),
    ]
