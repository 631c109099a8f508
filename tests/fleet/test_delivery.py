"""Delivery at fleet scale: replay against a server that leaves Nagle on and
one that does not, order per incident with concurrent connections, and an
event storm absorbed by the continuous forwarder (handlers hand over)."""
import collections
import json
import subprocess

import pytest

import deliverykit as dk

pytestmark = pytest.mark.integration


def _replay(double, state_dir, *extra):
    done = subprocess.run([dk.AUTOREMEDY, "replay", "--json", *extra], capture_output=True,
                          text=True, env=dk.env_for(double, state_dir), timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _replay_rate(tmp_path, name, nodelay, events):
    state = tmp_path / name
    state.mkdir()
    dk.spool_events(state, events)
    with dk.st2_double.St2Double(api_key=dk.API_KEY, nodelay=nodelay) as double:
        summary = _replay(double, state, "--concurrency", "1")
        tags = double.trace_tags()
    assert summary["delivered"] == events and summary["left"] == 0
    assert sorted(tags) == [f"storm-{n:05d}" for n in range(events)]
    return summary["rate"]


def test_a_server_that_leaves_nagle_on_does_not_slow_replay(tmp_path):
    """Before the client-side fix (autoremedy/pipeline/stackstorm.py, TCP_QUICKACK), a
    server without TCP_NODELAY cost each event a delayed ACK: ~40 ms, 22 events/s
    on one connection against several hundred from a server that sets it, a
    ratio of ~0.05. Side by side, in the same run: the same 200 events replayed
    over one kept-alive connection (where each event meets the wait) to a Nagle
    server and to a NODELAY server, alternated, best of three each; the Nagle
    server must give at least half the NODELAY server's rate.

    Why a ratio and not the 500 events/s target: this suite shares two cores with
    other workers running real RabbitMQ, MariaDB and Nova, and an absolute floor
    there measures the load, not the client (it failed so under CI). Load slows
    both servers alike; the delayed ACK is a timer that load does not shorten, so
    the regression would still show as a ratio far under 0.5 unless one event
    took the NODELAY server 40 ms itself. The absolute figure against the target
    is printed by bench/bench_fleet.py (replay rows), on a quiet machine."""
    events = 200
    rates = {False: [], True: []}
    for attempt in range(3):
        for nodelay in (False, True):
            name = f"{'nodelay' if nodelay else 'nagle'}{attempt}"
            rates[nodelay].append(_replay_rate(tmp_path, name, nodelay, events))
        if max(rates[False]) >= 0.5 * max(rates[True]):
            break
    nagle, nodelay = max(rates[False]), max(rates[True])
    assert nagle >= 0.5 * nodelay, (f"Nagle server {nagle:.0f} events/s vs NODELAY server "
                                    f"{nodelay:.0f} events/s (ratio {nagle / nodelay:.2f}); "
                                    f"all runs {rates}")


def test_concurrent_replay_keeps_each_incidents_order(tmp_path):
    """100 incidents, each WARNING -> CRITICAL -> OK, spooled interleaved:
    with 4 connections every incident still arrives in its own order."""
    from autoremedy.pipeline.event import from_sensu
    from autoremedy.pipeline.spool import Spool
    spool = Spool(str(tmp_path))
    for status in (1, 2, 0):
        for n in range(100):
            data = json.loads(dk.sensu_event(n))
            data["check"]["status"] = status
            data["check"]["state"] = "passing" if status == 0 else "failing"
            spool.put(from_sensu(data), claim=False)
    with dk.st2_double.St2Double(api_key=dk.API_KEY) as double:
        summary = _replay(double, tmp_path, "--concurrency", "4")
        seen = collections.defaultdict(list)
        for request in double.accepted():
            event = request["body"]["event"]
            seen[event["id"]].append(event["status"])
    assert summary["delivered"] == 300
    assert len(seen) == 100
    assert all(statuses == [1, 2, 0] for statuses in seen.values()), \
        [s for s in seen.values() if s != [1, 2, 0]][:3]


def test_storm_handlers_stay_fast_while_stackstorm_is_slow(tmp_path):
    """A storm against a slow StackStorm: each handler spools and hands over to
    the forwarder, so its time does not grow with StackStorm's; every event is
    delivered, none twice.

    StackStorm answers in 6 s here, and a handler that waited for it could not
    take less; the bound is half of that. Not the design's 2 s at a 3 s
    StackStorm: on a CI shared with other workers a handler process's own start
    reached 3.4 s (p95 2.9 s with 8 handlers starting at once), and that is the
    load, not a handler waiting on StackStorm. The 2,000-event storm and the 2 s
    target are bench/bench_fleet.py's (storm rows). 60 events, 6 handlers
    starting at once, as many forwarder connections as events: the property is
    the same with more, only slower to show (the forwarder sends in passes over
    the spool, each at least one StackStorm answer long)."""
    delay, events = 6.0, 60
    seconds, tags, codes = dk.storm(tmp_path, events, delay, "forwarder", spawners=6,
                                    concurrency=events)
    assert all(code == 0 for code, _ in codes), [c for c in codes if c[0] != 0][:3]
    assert all("handed" not in err and "Traceback" not in err for _, err in codes)
    p95 = dk.percentile(seconds, 0.95)
    assert p95 <= delay / 2, (p95, dk.percentile(seconds, 0.5), max(seconds))
    assert sorted(set(tags)) == sorted(f"storm-{n:05d}" for n in range(events))
    assert len(tags) == events        # at least once; here exactly once
