"""Never lose an event: 1,000 events while StackStorm is down are all delivered
exactly once when it is back; StackStorm coming back (or going away) in the
middle of a replay; 4xx stops a replay; one replay at a time."""
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from autoremedy import statefile
from autoremedy.pipeline.event import from_sensu
from autoremedy.pipeline.spool import Spool

from handlerkit import API_KEY, AUTOREMEDY, fixture_text, spool_entries, st2_env

GO = json.loads(fixture_text("sensu", "sensu-go-event.json"))


def event_json(n, status=2):
    data = json.loads(json.dumps(GO))
    data["id"] = f"replay-{n:05d}"
    data["check"]["status"] = status
    data["check"]["state"] = "failing"
    return json.dumps(data)


def spool_directly(state_dir, count, start=0):
    """Spool events the way a handler does, without paying a process each."""
    spool = Spool(str(state_dir))
    for n in range(start, start + count):
        spool.put(from_sensu(json.loads(event_json(n))), claim=False)


def handler_env(st2, state_dir, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOREMEDY_")}
    env.update(st2_env(st2), AUTOREMEDY_STATE_DIR=str(state_dir), **extra)
    return env


def test_1000_events_while_down_are_delivered_exactly_once_in_order(st2, state_dir, tmp_path,
                                                                    monkeypatch, capsys):
    """The 1,000 events go through the handler's own main() (what `autoremedy handle
    sensu` runs, minus the interpreter start: 1,000 processes cost ~1.5 min on this
    shared 2-core machine; the process-level path is covered by the test below and
    by test_concurrency.py); the replay is the real command."""
    import io
    from autoremedy.handlers import sensu
    config = tmp_path / "ar.yaml"
    config.write_text(f"state_dir: {state_dir}\nroutes:\n  - {{check: '*', fallback: escalate}}\n")
    st2.set_mode("down")
    env = handler_env(st2, state_dir, AUTOREMEDY_CONFIG=str(config))
    for key, value in env.items():
        if key.startswith("AUTOREMEDY_"):
            monkeypatch.setenv(key, value)
    codes = [sensu.main([], stdin=io.BytesIO(event_json(n).encode())) for n in range(1000)]
    capsys.readouterr()
    assert codes == [1] * 1000                   # escalated (no local remediation), not lost
    assert st2.requests == []                    # the breaker kept them off the dead port
    spooled_order = [e["id"] for e in spool_entries(state_dir)]     # sorted by file name
    assert len(spooled_order) == 1000

    st2.set_mode("up")
    replay = subprocess.run([AUTOREMEDY, "replay", "--json"], capture_output=True, text=True,
                            env=env, timeout=300)
    assert replay.returncode == 0, replay.stderr
    summary = json.loads(replay.stdout)
    assert summary["delivered"] == 1000 and summary["left"] == 0
    tags = st2.trace_tags()
    assert len(tags) == 1000 and len(set(tags)) == 1000
    assert set(tags) == {f"replay-{n:05d}" for n in range(1000)}
    assert tags == spooled_order                 # delivered in spooling order
    bodies = [r["body"]["autoremedy"] for r in st2.accepted()]
    assert all(b["replayed"] and b["escalated"] and b["attempt"] >= 1 for b in bodies)
    again = subprocess.run([AUTOREMEDY, "replay", "--json"], capture_output=True, text=True,
                           env=env, timeout=60)
    assert json.loads(again.stdout)["delivered"] == 0 and len(st2.accepted()) == 1000


def test_events_from_handler_processes_while_down_are_all_delivered(st2, state_dir, tmp_path):
    config = tmp_path / "ar.yaml"
    config.write_text(f"state_dir: {state_dir}\nroutes:\n  - {{check: '*', fallback: escalate}}\n")
    st2.set_mode("down")
    env = handler_env(st2, state_dir, AUTOREMEDY_CONFIG=str(config))

    def handle(n):
        proc = subprocess.run([AUTOREMEDY, "handle", "sensu"], input=event_json(n), text=True,
                              capture_output=True, env=env, timeout=120)
        return proc.returncode, proc.stderr

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(handle, range(100)))
    assert all(code == 1 for code, _ in results), results[:3]
    assert all("Traceback" not in err for _, err in results)
    assert len(st2.requests) == 0 and len(spool_entries(state_dir)) == 100
    st2.set_mode("up")
    replay = subprocess.run([AUTOREMEDY, "replay", "--json"], capture_output=True, text=True,
                            env=env, timeout=300)
    assert replay.returncode == 0 and json.loads(replay.stdout)["delivered"] == 100
    assert sorted(st2.trace_tags()) == [f"replay-{n:05d}" for n in range(100)]


def test_replay_keeps_spool_order_in_process(st2, state_dir):
    from autoremedy.pipeline.replayer import Replayer
    from autoremedy.pipeline.stackstorm import Client
    spool_directly(state_dir, 30)
    replayer = Replayer(Spool(str(state_dir)), Client(st2.url, api_key=API_KEY)).run()
    assert replayer.delivered == 30 and replayer.stopped is None
    assert st2.trace_tags() == [f"replay-{n:05d}" for n in range(30)]


def test_stackstorm_coming_back_in_the_middle_of_a_replay(st2, state_dir):
    spool_directly(state_dir, 50)
    st2.set_mode("down")
    env = handler_env(st2, state_dir)
    proc = subprocess.Popen([AUTOREMEDY, "replay", "--json", "--max-time", "60s", "--backoff-max", "1s"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(1.5)
    assert proc.poll() is None                   # still backing off
    st2.set_mode("up")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["delivered"] == 50 and summary["retries"] >= 1 and summary["left"] == 0
    assert sorted(st2.trace_tags()) == [f"replay-{n:05d}" for n in range(50)]


def test_stackstorm_going_away_and_back_during_a_replay_loses_nothing(st2, state_dir):
    """At least once: the request in flight when the connection is cut may have
    been accepted without the answer arriving ("delivery unknown", StackStorm's webhook API: 202 is acceptance only);
    it is delivered again with the same trace tag. Nothing else repeats."""
    spool_directly(state_dir, 200)

    def outage():
        while len(st2.accepted()) < 60:
            time.sleep(0.005)
        st2.set_mode("down")                     # kept-alive connection cut, port refused
        time.sleep(1.0)
        st2.set_mode("error", fail_status=503, fail_count=3)   # then a few 503s
        time.sleep(0.3)

    thread = threading.Thread(target=outage)
    thread.start()
    ran = subprocess.run([AUTOREMEDY, "replay", "--json", "--backoff-max", "0.5s"], capture_output=True,
                         text=True, env=handler_env(st2, state_dir), timeout=120)
    thread.join()
    assert ran.returncode == 0, ran.stderr
    tags = st2.trace_tags()
    assert set(tags) == {f"replay-{n:05d}" for n in range(200)}
    assert len(tags) - 200 <= 1                  # at most the one in flight at the cut
    assert json.loads(ran.stdout)["retries"] >= 1


def test_replay_gives_up_after_max_time_and_keeps_everything(st2, state_dir):
    spool_directly(state_dir, 5)
    st2.set_mode("down")
    started = time.monotonic()
    ran = subprocess.run([AUTOREMEDY, "replay", "--max-time", "1.5s"], capture_output=True, text=True,
                         env=handler_env(st2, state_dir), timeout=60)
    assert ran.returncode == 1 and time.monotonic() - started < 10
    assert "0 delivered" in ran.stdout and "5 left in the spool (StackStorm unreachable" in ran.stdout
    entries = spool_entries(state_dir)
    assert len(entries) == 5 and entries[0]["attempts"] == 1 and "refused" in entries[0]["last_error"]


def test_4xx_stops_the_replay_and_keeps_the_order(st2, state_dir):
    spool_directly(state_dir, 5)
    ran = subprocess.run([AUTOREMEDY, "replay"], capture_output=True, text=True,
                         env=handler_env(st2, state_dir, AUTOREMEDY_ST2_WEBHOOK="not-registered"),
                         timeout=60)
    assert ran.returncode == 3
    assert "replay stopped: StackStorm configuration error" in ran.stderr
    assert "not registered with st2" in ran.stderr
    assert len(st2.requests) == 1 and len(spool_entries(state_dir)) == 5


def test_replay_without_stackstorm_configured_says_so(state_dir):
    spool_directly(state_dir, 2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOREMEDY_")}
    env["AUTOREMEDY_STATE_DIR"] = str(state_dir)
    ran = subprocess.run([AUTOREMEDY, "replay"], capture_output=True, text=True, env=env, timeout=60)
    assert ran.returncode == 1 and "StackStorm is not configured" in ran.stderr
    assert "2 event(s) wait" in ran.stderr


def test_only_one_replay_runs_at_a_time(st2, state_dir):
    spool_directly(state_dir, 3)
    spool = Spool(str(state_dir))
    with statefile.locked(spool.replay_lock_path):
        ran = subprocess.run([AUTOREMEDY, "replay"], capture_output=True, text=True,
                             env=handler_env(st2, state_dir), timeout=60)
    assert ran.returncode == 0 and "another replay is running" in ran.stdout
    assert st2.requests == [] and len(spool_entries(state_dir)) == 3


def test_entries_held_by_a_live_handler_are_left_alone(st2, state_dir):
    spool_directly(state_dir, 3)
    spool = Spool(str(state_dir))
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        held = spool.load(spool.names()[1])
        held.data["claim"] = {"pid": sleeper.pid, "until": time.time() + 600}
        spool.save(held, release=False)
        ran = subprocess.run([AUTOREMEDY, "replay"], capture_output=True, text=True,
                             env=handler_env(st2, state_dir), timeout=60)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert ran.returncode == 0 and "1 held by running handlers" in ran.stdout
    assert st2.trace_tags() == ["replay-00000", "replay-00002"]
    ran = subprocess.run([AUTOREMEDY, "replay"], capture_output=True, text=True,
                         env=handler_env(st2, state_dir), timeout=60)
    assert st2.trace_tags()[-1] == "replay-00001"        # its handler died: replay takes it


def test_a_corrupt_entry_goes_to_the_dead_letters_and_the_rest_is_delivered(st2, state_dir):
    spool_directly(state_dir, 3)
    spool = Spool(str(state_dir))
    with open(os.path.join(spool.dir, spool.names()[0]), "w") as handle:
        handle.write("{torn")
    ran = subprocess.run([AUTOREMEDY, "replay"], capture_output=True, text=True,
                         env=handler_env(st2, state_dir), timeout=60)
    assert ran.returncode == 0 and "1 corrupt moved to the dead letters" in ran.stdout
    assert st2.trace_tags() == ["replay-00001", "replay-00002"]
    assert spool.stats()["deadletter"] == 1

