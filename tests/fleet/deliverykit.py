"""Helpers of the delivery tests and bench: the StackStorm double (tests/doubles,
loaded by path: the repository root must not go on sys.path), events spooled
the way a handler spools them, and the command's environment."""
import importlib.util
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
API_KEY = "fleet-key-7d20"
AUTOREMEDY = os.path.join(os.path.dirname(sys.executable), "autoremedy")


def load_double():
    spec = importlib.util.spec_from_file_location("st2_double_fleet",
                                                  os.path.join(TESTS, "doubles", "st2.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


st2_double = load_double()


def sensu_event(n, incident=None):
    with open(os.path.join(TESTS, "fixtures", "sensu", "sensu-go-event.json")) as handle:
        data = json.load(handle)
    data["id"] = incident or f"storm-{n:05d}"
    data["check"]["status"] = 2
    data["check"]["state"] = "failing"
    data["check"]["name"] = f"storm-check-{n % 97}"
    data["entity"]["metadata"]["name"] = f"cmp-{n % 200:03d}"
    return json.dumps(data)


def spool_events(state_dir, count):
    from autoremedy.pipeline.event import from_sensu
    from autoremedy.pipeline.spool import Spool
    spool = Spool(str(state_dir))
    for n in range(count):
        spool.put(from_sensu(json.loads(sensu_event(n))), claim=False)


def env_for(double, state_dir, config=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOREMEDY_")}
    env.update(AUTOREMEDY_ST2_URL=double.url, AUTOREMEDY_ST2_API_KEY=API_KEY,
               AUTOREMEDY_STATE_DIR=str(state_dir))
    if config:
        env["AUTOREMEDY_CONFIG"] = str(config)
    return env


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def storm(tmp_path, events, st2_delay, delivery, spawners=8, concurrency=48, wait=240):
    """``events`` handler processes (``autoremedy handle sensu``) as fast as
    ``spawners`` threads can start them, StackStorm answering in ``st2_delay``
    seconds; returns (handler seconds each, the double's trace tags, exit codes)."""
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    config = tmp_path / "autoremedy.yaml"
    config.write_text(json.dumps({
        "state_dir": str(state), "maintenance_file": str(tmp_path / "maintenance"),
        "stackstorm": {"delivery": delivery, "read_timeout": st2_delay + 5},
        "routes": [{"check": "*", "fallback": "escalate"}]}))
    with st2_double.St2Double(api_key=API_KEY, mode="slow", delay=st2_delay) as double:
        env = env_for(double, state, config)
        forwarder = None
        if delivery == "forwarder":
            forwarder = subprocess.Popen([AUTOREMEDY, "replay", "--follow", "--quiet",
                                          "--concurrency", str(concurrency)], env=env,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + 30
            while not (state / "spool" / ".forwarder.json").exists():
                assert time.monotonic() < deadline and forwarder.poll() is None
                time.sleep(0.05)

        def handle(n):
            started = time.monotonic()
            done = subprocess.run([AUTOREMEDY, "handle", "sensu"], input=sensu_event(n),
                                  text=True, capture_output=True, env=env, timeout=120)
            return time.monotonic() - started, done.returncode, done.stderr
        try:
            with ThreadPoolExecutor(max_workers=spawners) as pool:
                results = list(pool.map(handle, range(events)))
            deadline = time.monotonic() + wait
            while len(set(double.trace_tags())) < events and time.monotonic() < deadline:
                time.sleep(0.2)
            tags = double.trace_tags()
        finally:
            if forwarder is not None:
                forwarder.terminate()
                forwarder.communicate(timeout=60)
    return [r[0] for r in results], tags, [(r[1], r[2]) for r in results]
