"""The host-wide circuit breaker: open after an outage, one probe after the
cool-down, closed by a success; shared by every process through its file."""
import os
import subprocess
import sys

from autoremedy.pipeline.breaker import Breaker


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def breaker(tmp_path, clock, cooldown=60):
    return Breaker(str(tmp_path / "breaker.json"), cooldown=cooldown, probe_lease=10, clock=clock)


def test_closed_allows_and_a_success_costs_no_write_when_recent(tmp_path):
    clock = Clock()
    b = breaker(tmp_path, clock)
    assert b.allow()
    b.success()
    stamp = os.stat(tmp_path / "breaker.json").st_mtime_ns
    clock.now += 5
    b.success()
    assert os.stat(tmp_path / "breaker.json").st_mtime_ns == stamp
    assert b.describe().startswith("closed: delivering to StackStorm")


def test_failure_opens_for_the_cooldown_then_one_probe(tmp_path):
    clock = Clock()
    a, b = breaker(tmp_path, clock), breaker(tmp_path, clock)     # two processes' views
    a.failure("connection refused")
    assert not a.allow() and not b.allow()
    assert "open: StackStorm unreachable" in a.describe() and "next probe in 60s" in a.describe()
    clock.now += 61
    assert a.allow() is True                 # a becomes the probe
    assert b.allow() is False                # b keeps falling back meanwhile
    assert "probe in flight" in b.describe()
    a.success()
    assert b.allow() is True and b.state()["state"] == "closed"


def test_a_failed_probe_reopens_and_a_dead_probe_expires(tmp_path):
    clock = Clock()
    a, b = breaker(tmp_path, clock), breaker(tmp_path, clock)
    a.failure("timeout")
    clock.now += 61
    assert a.allow()
    a.failure("timeout again")
    assert not b.allow()
    assert a.state()["failures"] == 2
    clock.now += 61
    assert a.allow()                         # a probes ... and is killed -9 before reporting
    clock.now += 11                          # past the probe lease
    assert b.allow()


def test_not_configured_is_described_as_such(tmp_path):
    b = Breaker(str(tmp_path / "breaker.json"), configured=False)
    assert b.describe().startswith("not configured")


PROBE = """\
import sys
from autoremedy.pipeline.breaker import Breaker
print(Breaker(sys.argv[1], cooldown=0.0, probe_lease=60).allow())
"""


def test_exactly_one_of_many_processes_probes(tmp_path):
    path = str(tmp_path / "breaker.json")
    Breaker(path, cooldown=0.0).failure("refused")
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    procs = [subprocess.Popen([sys.executable, str(script), path], stdout=subprocess.PIPE, text=True)
             for _ in range(12)]
    answers = [p.communicate()[0].strip() for p in procs]
    assert answers.count("True") == 1 and answers.count("False") == 11
