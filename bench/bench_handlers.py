"""Handler benchmarks (issue #3), ratios measured side by side in one run.

    .venv/bin/python bench/run.py handlers

1. A handler per event, as a whole process (start-up + spool + POST to the
   StackStorm double + unspool) vs ``python -c 'import requests'``: target <= 1.3x.
2. Fallback with StackStorm blackholed, first event (breaker closed): a port
   that drops SYNs decides at the connect timeout; a port that accepts and never
   answers decides at the read timeout. Each against "sleep <timeout>, then the
   same handler against a port that refuses at once": 1.0x means the decision
   cost the timeout and nothing more; target <= 1.1x.
3. Breaker open: a later event skips StackStorm; its cost vs a normal delivery:
   target <= 1.3x.
4. Replay throughput over one kept-alive connection to the double: target >= 500
   events/s (the row's ratio is events/s / 500).

The StackStorm double runs as its own process (tests/doubles/st2.py), like a
remote StackStorm would, on loopback. Every handler run reads a small but real
configuration file (YAML), as deployed handlers do.
"""
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from bench.lib import AUTOREMEDY, PYTHON, compare, row, run_once

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOUBLE = os.path.join(ROOT, "tests", "doubles", "st2.py")
EVENT = os.path.join(ROOT, "tests", "fixtures", "sensu", "sensu-go-event.json")
KEY = "bench-key"
CONNECT, READ = 2.0, 5.0

SPOOLER = """\
import json, sys
from autoremedy.pipeline.event import from_sensu
from autoremedy.pipeline.spool import Spool
base = json.load(open(sys.argv[2]))
spool = Spool(sys.argv[1])
for n in range(int(sys.argv[3])):
    base["id"] = f"bench-{n:06d}"
    spool.put(from_sensu(base), claim=False)
"""


class Double:
    """tests/doubles/st2.py as a separate process."""

    def __init__(self, mode="up"):
        self.proc = subprocess.Popen([PYTHON, DOUBLE, "--port", "0", "--api-key", KEY,
                                      "--hook", "autoremedy", "--mode", mode],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.port = int(self.proc.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)


class Setting:
    """A state directory, a configuration and the environment of one handler set-up."""

    def __init__(self, base, name, url, routes=None):
        self.dir = os.path.join(base, name)
        self.state = os.path.join(self.dir, "state")
        os.makedirs(self.state)
        config = {"state_dir": self.state, "hostname": "bench-node",
                  "stackstorm": {"url": url, "connect_timeout": CONNECT, "read_timeout": READ,
                                 "breaker_cooldown": "1h"},
                  "routes": routes or [{"check": "*", "fallback": "escalate"}]}
        self.config = os.path.join(self.dir, "autoremedy.yaml")
        with open(self.config, "w") as handle:
            json.dump(config, handle)           # JSON is YAML: the handler parses it as YAML
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOREMEDY_")}
        self.env.update(AUTOREMEDY_CONFIG=self.config, AUTOREMEDY_ST2_API_KEY=KEY)

    def reset_breaker(self):
        try:
            os.unlink(os.path.join(self.state, "breaker.json"))
        except FileNotFoundError:
            pass

    def open_breaker(self):
        with open(os.path.join(self.state, "breaker.json"), "w") as handle:
            json.dump({"state": "open", "opened_at": time.time(), "since": time.time(),
                       "failures": 1, "last_error": "bench"}, handle)

    def clear_spool(self):
        shutil.rmtree(os.path.join(self.state, "spool"), ignore_errors=True)


def _event():
    with open(EVENT, "rb") as handle:
        data = json.load(handle)
    data["check"].update(status=2, state="failing")
    return json.dumps(data).encode()


def run():
    base = tempfile.mkdtemp(prefix="bench-handlers-")
    rows, doubles = [], []
    event = _event()
    handle = [AUTOREMEDY, "handle", "sensu"]
    try:
        up = Double("up")
        doubles.append(up)
        normal = Setting(base, "normal", up.url)

        # 1. one event, one whole process, delivered
        result = compare(handle, [PYTHON, "-c", "import requests"], runs=21,
                         env=normal.env, stdin_a=event)
        assert result["a_rc"] == [0], f"handler did not deliver: exit {result['a_rc']}"
        rows.append(row("handler per event, delivered (202)", "autoremedy handle sensu",
                        "python -c 'import requests'", result, target=1.3))

        # 2. blackholed StackStorm, first event: the breakers are closed every run
        refused = Double("down")
        doubles.append(refused)
        instant = Setting(base, "refused", refused.url)
        for mode, timeout, words in (("drop", CONNECT, "SYNs dropped: connect timeout"),
                                     ("blackhole", READ, "accepts, never answers: read timeout")):
            hole = Double(mode)
            doubles.append(hole)
            setting = Setting(base, mode, hole.url)
            baseline = ["/bin/sh", "-c", f'sleep {timeout:g} && AUTOREMEDY_CONFIG="$1" exec "$2" handle sensu',
                        "sh", instant.config, AUTOREMEDY]

            def reset(setting=setting):
                setting.reset_breaker()
                instant.reset_breaker()
            result = compare(handle, baseline, runs=3, warmup=1, env=setting.env, stdin_a=event,
                             stdin_b=event, setup=reset)
            assert result["a_rc"] == [1] and result["b_rc"] == [1], (result["a_rc"], result["b_rc"])
            rows.append(row(f"first event, StackStorm blackholed ({words})",
                            "autoremedy handle sensu", f"sleep {timeout:g}s + same handler, port refused",
                            result, target=1.1))

        # 3. breaker open vs a normal delivery (same event, same configuration shape)
        down = Setting(base, "open", up.url)
        result = _compare_settings(handle, event, down, normal)
        rows.append(row("later event, breaker open (no POST, spool + escalate)",
                        "breaker open", "normal delivery", result, target=1.3))

        # 4. replay throughput
        rows.append(_replay(base, up.url, event))
    finally:
        for double in doubles:
            double.stop()
        shutil.rmtree(base, ignore_errors=True)
    return rows


def _compare_settings(handle, event, opened, normal, runs=21):
    """Interleave a handler with the breaker forced open and a normal delivery."""
    opened.open_breaker()
    for _ in range(2):
        run_once(handle, opened.env, event)
        run_once(handle, normal.env, event)
    rows_a, rows_b = [], []
    for _ in range(runs):
        opened.open_breaker()
        opened.clear_spool()
        rows_a.append(run_once(handle, opened.env, event))
        rows_b.append(run_once(handle, normal.env, event))
    assert {r[3] for r in rows_a} == {1} and {r[3] for r in rows_b} == {0}
    ratios = [a[0] / b[0] for a, b in zip(rows_a, rows_b)]
    return {"a_wall": statistics.median(r[0] for r in rows_a),
            "b_wall": statistics.median(r[0] for r in rows_b),
            "a_rss_kib": max(r[2] for r in rows_a), "b_rss_kib": max(r[2] for r in rows_b),
            "ratio": statistics.median(ratios), "runs": runs}


def _replay(base, url, event, count=2000, rounds=5):
    setting = Setting(base, "replay", url)
    script = os.path.join(base, "spooler.py")
    with open(script, "w") as handle:
        handle.write(SPOOLER)
    fixture = os.path.join(base, "event.json")
    with open(fixture, "wb") as handle:
        handle.write(event)
    rates, walls, rss = [], [], 0
    for _ in range(rounds):
        subprocess.run([PYTHON, script, setting.state, fixture, str(count)], check=True, cwd=base)
        started = time.perf_counter()
        proc = subprocess.Popen([AUTOREMEDY, "replay", "--json"], stdout=subprocess.PIPE,
                                env=setting.env, cwd=base)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        walls.append(time.perf_counter() - started)
        summary = json.loads(out)
        assert summary["delivered"] == count, summary
        rates.append(summary["rate"])
        rss = max(rss, usage.ru_maxrss)
    rate = statistics.median(rates)
    print(f"replay: {count} events per round, rates {rates} events/s, whole command "
          f"{statistics.median(walls):.2f}s (median)", flush=True)
    result = {"a_wall": 1.0 / rate, "b_wall": 1.0 / 500, "ratio": rate / 500, "a_rss_kib": rss}
    return row(f"replay throughput, one kept-alive connection ({rate:.0f} events/s)",
               "replay, per event", "budget at 500 events/s", result, target=1.0, better="higher")


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    from bench.lib import table
    print(table(run()))
