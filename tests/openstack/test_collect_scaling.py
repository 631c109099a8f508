"""The cost of a bundle follows the window, not the size of the logs: the
window's start is found by binary search in plain files, and rotations older
than the window are never opened. Measured in bytes the process reads
(/proc/self/io rchar), which does not depend on the machine's load."""
import gzip
import os

import oslogs

from autoremedy.collection import collect
from autoremedy.config import Config

T0 = 1795000000.0


def read_bytes():
    with open("/proc/self/io") as handle:
        return int(next(l for l in handle if l.startswith("rchar:")).split()[1])


def write_days(folder, days, lines_per_day=40000):
    """``days`` files of a day each, the newest live and plain, the rest rotated
    (plain then gzipped), mtimes at each file's end."""
    os.makedirs(folder, exist_ok=True)
    for i in range(days):
        start = T0 - (i + 1) * 86400 + 43200
        name = "nova-compute.log" + (f".{i}" if i else "") + (".gz" if i >= 2 else "")
        path = os.path.join(folder, name)
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "wt") as handle:
            step = 86400 / lines_per_day
            for k in range(lines_per_day):
                ts = start + k * step
                handle.write(oslogs.oslo(ts, 3001, "INFO", "nova.compute.manager",
                                         f"periodic task ran {k % 7}") + "\n")
                if i == 0 and abs(ts - T0) < step:
                    handle.write(oslogs.oslo(ts, 3001, "ERROR", "nova.compute.manager", "the needle",
                                             oslogs.GLOBAL_REQ, oslogs.COMPUTE_REQ, oslogs.INSTANCE) + "\n")
        os.utime(path, (start + 86400, start + 86400))


def bundle_cost(tmp_path, make_config, name, days):
    folder = tmp_path / name
    write_days(str(folder), days)
    config = Config.load(make_config({"collect": {
        "out_dir": str(tmp_path / f"out-{name}"), "records": False,
        "sources": [{"name": "nova-compute", "path": f"{folder}/nova-compute.log*"}]}}, name=f"{name}.yaml"))
    before = read_bytes()
    result = collect.collect(config, T0, 900.0)
    cost = read_bytes() - before
    return cost, sum(uncompressed(os.path.join(folder, f)) for f in os.listdir(folder)), result


def uncompressed(path):
    if not path.endswith(".gz"):
        return os.path.getsize(path)
    with open(path, "rb") as handle:          # gzip's trailer: ISIZE, the size mod 2**32
        handle.seek(-4, os.SEEK_END)
        return int.from_bytes(handle.read(4), "little")


def test_reading_does_not_grow_with_the_logs_beyond_the_window(tmp_path, make_config):
    small, small_size, one = bundle_cost(tmp_path, make_config, "one-day", 1)
    large, large_size, six = bundle_cost(tmp_path, make_config, "six-days", 6)
    assert large_size > 5 * small_size
    assert [s["template"] for s in six["new_signatures"]] == ["the needle"] == \
        [s["template"] for s in one["new_signatures"]]
    # the bytes read for six days are within 10 % of one day's, though six times as much is on disk
    assert large < small * 1.1 + 64 * 1024, (small, large, small_size, large_size)
    # and far less than the live file itself: a window plus the baseline hour, found by bisection
    live = os.path.getsize(tmp_path / "one-day" / "nova-compute.log")
    assert small < live / 3, (small, live)
