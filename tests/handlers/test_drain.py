"""A node without the replay timer (no systemd): the next handler run that
reaches StackStorm delivers what waits in the spool — bounded by
spool.drain_max_events / drain_max_time, oldest first (one incident's events in
their order), through replay's own code and lock. A StackStorm that fails
during the drain leaves the rest spooled."""
import json
import subprocess
import time

from autoremedy.pipeline.event import from_sensu
from autoremedy.pipeline.spool import Spool

from handlerkit import AUTOREMEDY, fixture_text, spool_entries, st2_double, st2_env, API_KEY

GO = json.loads(fixture_text("sensu", "sensu-go-event.json"))
ZABBIX_MESSAGE = fixture_text("zabbix", "problem-message.json")


def sensu_event(event_id, status=2):
    data = json.loads(json.dumps(GO))
    data["id"] = event_id
    data["check"]["status"] = status
    data["check"]["state"] = "failing" if status else "passing"
    return from_sensu(data)


# Two incidents interleaved: A's problem, B's problem, A's recovery, then C and D.
WAITING = [("inc-a", 2), ("inc-b", 2), ("inc-a", 0), ("inc-c", 2), ("inc-d", 2)]


def spool_waiting(state_dir):
    spool = Spool(str(state_dir))
    for event_id, status in WAITING:
        spool.put(sensu_event(event_id, status), claim=False)
        time.sleep(0.002)                 # distinct spool names, in this order


def zabbix_alert(st2, state_dir, config, timeout=60):
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "AUTOREMEDY_STATE_DIR": str(state_dir),
           "AUTOREMEDY_CONFIG": config, **st2_env(st2)}
    return subprocess.run([AUTOREMEDY, "handle", "zabbix", "--", "ops@example.com",
                           "PROBLEM: svc down", ZABBIX_MESSAGE], capture_output=True, text=True,
                          env=env, timeout=timeout)


def delivered(st2):
    """(trace tag, state) of every accepted POST, in arrival order."""
    return [(r["trace_tag"], r["body"]["event"]["state"] if isinstance(r["body"], dict)
             and isinstance(r["body"].get("event"), dict) else None) for r in st2.accepted()]


def test_a_delivering_handler_run_drains_k_events_oldest_first(st2, state_dir, make_config):
    config = make_config({"spool": {"drain_max_events": 3, "drain_max_time": "5s"},
                          "routes": [{"source": "*", "fallback": "escalate"}]})
    spool_waiting(state_dir)
    ran = zabbix_alert(st2, state_dir, config)
    assert ran.returncode == 0, ran
    lines = ran.stdout.strip().splitlines()
    assert "drained 3 earlier event(s) from the spool, 2 left" in ran.stdout, ran.stdout
    assert lines[-1].startswith("autoremedy: zabbix alert: delivered to StackStorm"), lines
    tags = [tag for tag, _ in delivered(st2)]
    # Its own event first, then the three oldest: A's problem before A's recovery.
    assert tags[1:] == ["inc-a", "inc-b", "inc-a"], tags
    states = [state for _, state in delivered(st2)][1:]
    assert states[0] != states[2], delivered(st2)          # problem, then recovery
    assert all(r["body"]["autoremedy"]["replayed"] for r in st2.accepted()[1:])
    assert [e["id"] for e in spool_entries(state_dir)] == ["inc-c", "inc-d"]
    # The next run drains the rest; then nothing is left and nothing is sent twice.
    ran = zabbix_alert(st2, state_dir, config)
    assert ran.returncode == 0 and "drained 2 earlier event(s) from the spool, 0 left" \
        in ran.stdout, ran
    assert spool_entries(state_dir) == []
    tags = [tag for tag, _ in delivered(st2)]
    assert tags[-2:] == ["inc-c", "inc-d"] and len(tags) == 7, tags


def test_the_drain_is_off_with_zero_and_an_empty_spool_costs_nothing(st2, state_dir,
                                                                       make_config):
    config = make_config({"spool": {"drain_max_events": 0},
                          "routes": [{"source": "*", "fallback": "escalate"}]})
    spool_waiting(state_dir)
    ran = zabbix_alert(st2, state_dir, config)
    assert ran.returncode == 0 and "drained" not in ran.stdout, ran
    assert len(st2.accepted()) == 1 and len(spool_entries(state_dir)) == len(WAITING)


class FailsAfter(st2_double.St2Double):
    """Accepts the first ``ok`` POSTs, then answers 503 to every other one."""

    def __init__(self, ok, **kwargs):
        super().__init__(**kwargs)
        self.ok, self.posts = ok, 0

    def _serve(self, handler, method):
        if method == "POST":
            self.posts += 1
            if self.posts > self.ok:
                self.mode, self.fail_status, self.fail_count = "error", 503, None
        return super()._serve(handler, method)


def test_a_stackstorm_failing_during_the_drain_leaves_the_events_spooled(state_dir,
                                                                          make_config):
    config = make_config({"spool": {"drain_max_events": 10, "drain_max_time": "1s"},
                          "routes": [{"source": "*", "fallback": "escalate"}]})
    spool_waiting(state_dir)
    st2 = FailsAfter(2, api_key=API_KEY, hooks=["autoremedy"]).start()
    try:
        started = time.monotonic()
        ran = zabbix_alert(st2, state_dir, config)
        took = time.monotonic() - started
    finally:
        st2.stop()
    assert ran.returncode == 0, ran                  # its own event was delivered
    assert "drained 1 earlier event(s) from the spool, 4 left (stopped: " in ran.stdout, ran
    assert ran.stdout.strip().splitlines()[-1].startswith(
        "autoremedy: zabbix alert: delivered to StackStorm"), ran.stdout
    left = spool_entries(state_dir)
    # The one that failed is next in line, marked with the attempt; order unchanged.
    assert [(e["id"], e["event"]["state"]) for e in left][0][0] == "inc-b"
    assert [e["id"] for e in left] == ["inc-b", "inc-a", "inc-c", "inc-d"]
    assert left[0]["attempts"] == 1 and left[0]["last_error"]
    assert took < 15, took                           # bounded by drain_max_time


def test_a_running_replay_keeps_the_spool_to_itself(st2, state_dir, make_config):
    """The drain takes replay's lock without waiting: while a replay (or the
    forwarder) holds it, the handler leaves every waiting event to it."""
    from autoremedy import statefile
    config = make_config({"routes": [{"source": "*", "fallback": "escalate"}]})
    spool_waiting(state_dir)
    spool = Spool(str(state_dir))
    with statefile.locked(spool.replay_lock_path, timeout=0):
        ran = zabbix_alert(st2, state_dir, config)
    assert ran.returncode == 0 and "drained" not in ran.stdout, ran
    assert len(st2.accepted()) == 1 and len(spool_entries(state_dir)) == len(WAITING)


def test_drain_settings_are_validated(make_config, run_cli):
    bad = make_config({"spool": {"drain_max_events": -1}}, name="bad.yaml")
    ran = run_cli("config", "check", "--config", bad)
    assert ran.returncode == 3 and "spool.drain_max_events: must not be negative" \
        in ran.stdout + ran.stderr, ran
