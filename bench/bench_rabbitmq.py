"""RabbitMQ checks: what a run costs with 100, 1,000 and 5,000 real queues.

Queues are created for real on the machine's RabbitMQ (management API on
127.0.0.1:15672, scripts/setup.d/20-rabbitmq.sh), one vhost per size, deleted at
the end. Rows (whole `autoremedy` processes, interleaved, median of pair ratios):

- the check's own work (start, parse, judge, print) with 5,000 vs 100 queues: the
  real broker's answers, recorded once, replayed by a loopback server so the
  broker's own listing time is left out ("beyond the request itself");
- the same on the broker, request included;
- the cheap listing (disable_stats, no consumer counts) vs the default one;
- the API check vs AMQP passive declares of the same 1,000 queues;
- the node check over HTTP vs one `rabbitmq-diagnostics check_running`;
- what the rabbitmq-node remediation reads for its no-harm declarations (one
  `cluster_status`, one queue listing of every queue) vs one node check;
- 10,000 queues (vhost ``ar_oslo_bench_<pid>``): the check, with no include, a
  regex ``--include`` and an exact-names ``--include``, each against ``curl`` of
  the same listing (same columns, gzip like the check's client): the
  one-request promise for any selection; and a cap's dry-run (plan + the no-harm
  reading: reach and invariants) against the same curl.

It also prints, in process, request time vs own work per size, and the modules a
check imports (pika must not be among them).

    .venv/bin/python bench/run.py rabbitmq
"""
import json
import os
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

from bench.lib import AUTOREMEDY, PYTHON, compare, row

API = "http://127.0.0.1:15672"
AMQP_PORT = 5672
SIZES = (100, 1000, 5000)
COLUMNS = "name,vhost,messages,messages_ready,messages_unacknowledged,consumers"
CHECK_COLUMNS = COLUMNS + ",arguments"          # what the check asks for by default (x-expires)
BIG = 10000


def _http(method, path, body=None):
    import urllib3
    headers = urllib3.make_headers(basic_auth="guest:guest")
    headers["content-type"] = "application/json"
    resp = urllib3.PoolManager().request(method, f"{API}/api/{path}", headers=headers,
                                         body=None if body is None else json.dumps(body))
    if resp.status >= 400:
        raise RuntimeError(f"{method} /api/{path}: HTTP {resp.status}")
    return resp.data


def make_vhost(name, count):
    """A vhost with ``count`` queues, declared in one burst of nowait frames."""
    import pika
    import pika.frame
    import pika.spec
    _http("PUT", f"vhosts/{quote(name, safe='')}")
    _http("PUT", f"permissions/{quote(name, safe='')}/guest", {"configure": ".*", "write": ".*", "read": ".*"})
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", AMQP_PORT, name, pika.PlainCredentials("guest", "guest")))
    ch = conn.channel()
    number = ch.channel_number
    frames = b"".join(pika.frame.Method(number, pika.spec.Queue.Declare(
        queue=f"q.{i:05d}", durable=False, nowait=True)).marshal() for i in range(count - 1))
    conn._impl._transport._sock.sendall(frames)
    ch.queue_declare(f"q.{count - 1:05d}")      # answered only after every frame before it
    for i in range(0, count, max(1, count // 10)):                 # some depth to judge
        ch.basic_publish("", f"q.{i:05d}", b"x" * 100)
    conn.close()


class Replay:
    """Serves recorded API answers by path: the check's work without the broker's."""

    def __init__(self, answers):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = answers.get(self.path.split("?", 1)[0], b"[]")
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def check_argv(vhost, *extra, url=API):
    return [AUTOREMEDY, "check", "rabbitmq-queues", "--api-url", url, "--vhost", vhost, *extra]


BREAKDOWN = """
import argparse, json, statistics, sys, time
from autoremedy.clients import rabbitmq
from autoremedy.checks import rabbitmq_queues as rq
from autoremedy.contract.ranges import Range
from autoremedy.contract.render import render
args = argparse.Namespace(warning=Range.parse("1000"), critical=Range.parse("10000"),
    ready_warning=None, ready_critical=None, unacked_warning=None, unacked_critical=None,
    no_consumers="warning", no_consumers_min=1, stuck_consumers="off", growth_warning=None,
    growth_critical=None, drain_warning=None, drain_critical=None, drain_min=100,
    vhost=[sys.argv[1]], exclude_vhost=[], include=[], exclude=[], top=5)
request, work = [], []
for _ in range(5):
    api = rabbitmq.Api(sys.argv[2], "guest", "guest")
    started = time.perf_counter()
    rows = rq.from_api(api, args, rq.Selection(args))
    middle = time.perf_counter()
    render(rq.summarise(rows, rq.Rules(args), {}, args.top, "api"), "nagios")
    request.append(middle - started)
    work.append(time.perf_counter() - middle)
print(json.dumps([statistics.median(request), statistics.median(work)]))
"""


def breakdown(vhost):
    """In process (a fresh interpreter on the installed package): median request
    time and median own work (parse, judge, render) over 5 runs."""
    done = subprocess.run([PYTHON, "-c", BREAKDOWN, vhost, API], capture_output=True, text=True,
                          env=ENV, cwd=ENV["AUTOREMEDY_STATE_DIR"])
    if done.returncode != 0:
        raise RuntimeError(f"breakdown: {done.stderr.strip()[-300:]}")
    return json.loads(done.stdout)


def imported_modules(vhost):
    code = ("import json, sys; from autoremedy.cli import main; "
            f"rc = main(['check', 'rabbitmq-queues', '--vhost', {vhost!r}]); "
            "print(json.dumps(sorted(m for m in ('pika', 'requests', 'urllib3', 'yaml', 'psutil') "
            "if m in sys.modules)))")
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, env=ENV,
                         cwd=ENV["AUTOREMEDY_STATE_DIR"]).stdout.strip().splitlines()
    return out[-1] if out else "?"


ENV = None

# What the rabbitmq-node remediation reads for its reach and invariants (they share
# one cluster_status and one queue listing), as a whole process.
NODE_EVIDENCE = """
from autoremedy.clients import rabbitmq
from autoremedy.remediations import _rabbitmq_cluster as cluster
from autoremedy.config import Config
s = rabbitmq.settings(Config.load())
membership, _ = cluster.learn(lambda *a, **k: rabbitmq.run_ctl(s, *a, **k), "none@nowhere", ["rabbit@localhost"])
assert membership is not None
cluster.list_queues(s.api())
"""


def curl_argv(vhost, columns=CHECK_COLUMNS):
    return ["curl", "-s", "--compressed", "-o", "/dev/null", "-u", "guest:guest",
            f"{API}/api/queues/{quote(vhost, safe='')}?columns={columns}"]


def big_rows(vhost, state):
    """10,000 queues: the check against the plain listing, whatever the selection."""
    started = time.perf_counter()
    make_vhost(vhost, BIG)
    print(f"created {BIG} queues in {time.perf_counter() - started:.1f}s")
    time.sleep(6)
    plain = curl_argv(vhost)
    out = []
    for label, extra in (("no --include", ()), ("--include regex '^q\\.'", ("--include", r"^q\.")),
                         ("--include of 2 exact names", ("--include", r"^(?:q\.00001|q\.00002)$"))):
        result = compare(check_argv(vhost, *extra), plain, runs=7, env=ENV)
        out.append(row(f"queue check, 10,000 queues, {label}", "check (1 request)",
                       "curl of the listing", result, target=1.2))
    config = os.path.join(state, "cap.yaml")
    with open(config, "w") as handle:
        json.dump({"state_dir": state, "rabbitmq": {"queue_policies": {"cap": {
            "vhost": vhost, "pattern": r"^q\.0000[0-9]$", "messages": 0, "action": "cap",
            "max_length": 10}}}, "remediations": {"rabbitmq-queues": {"enabled": True}}}, handle)
    dry = [AUTOREMEDY, "remediate", "rabbitmq-queues", "cap", "--config", config, "--dry-run"]
    result = compare(dry, plain, runs=5, env=ENV)
    out.append(row("cap dry-run, 10,000 queues (plan + no-harm reading)", "remediate --dry-run",
                   "curl of the listing", result))
    return out


def _environment():
    global ENV
    state = tempfile.mkdtemp(prefix="bench-rabbitmq-")
    ENV = {**os.environ, "AUTOREMEDY_STATE_DIR": state, "AUTOREMEDY_CONFIG": os.path.join(state, "none.yaml")}
    open(ENV["AUTOREMEDY_CONFIG"], "w").write(f"state_dir: {state}\n")
    return state


def run_big():
    """Only the 10,000-queue rows: ``.venv/bin/python -m bench.bench_rabbitmq big``."""
    state = _environment()
    vhost = f"ar_oslo_bench_{os.getpid()}"
    try:
        return big_rows(vhost, state)
    finally:
        _http("DELETE", f"vhosts/{quote(vhost, safe='')}")


def run():
    state = _environment()
    stamp = f"{os.getpid()}"
    vhosts = {n: f"bench-{n}-{stamp}" for n in SIZES}
    rows = []
    try:
        started = time.perf_counter()
        for size, vhost in vhosts.items():
            make_vhost(vhost, size)
        print(f"created {sum(SIZES)} queues in {time.perf_counter() - started:.1f}s")
        time.sleep(6)                                # one statistics interval: depths settle
        answers = {}
        for size in (100, 5000):
            path = f"/api/queues/{quote(vhosts[size], safe='')}"
            answers[path] = _http("GET", f"queues/{quote(vhosts[size], safe='')}?columns={COLUMNS}")
        replay = Replay(answers)
        try:
            own = compare(check_argv(vhosts[5000], url=replay.url), check_argv(vhosts[100], url=replay.url),
                          runs=11, env=ENV)
            rows.append(row("queue check own work (replayed answers)", "5,000 queues", "100 queues", own,
                            target=2.0))
        finally:
            replay.close()
        real = compare(check_argv(vhosts[5000]), check_argv(vhosts[100]), runs=9, env=ENV)
        rows.append(row("queue check on the broker", "5,000 queues", "100 queues", real))
        cheap = compare(check_argv(vhosts[5000], "--no-consumers", "off"), check_argv(vhosts[5000]),
                        runs=9, env=ENV)
        rows.append(row("queue check, 5,000 queues", "cheap listing (no consumers)", "default listing",
                        cheap, target=1.0))
        fallback = os.path.join(state, "fallback.yaml")
        with open(fallback, "w") as handle:
            json.dump({"state_dir": state, "rabbitmq": {"fallback_queues": [
                {"vhost": vhosts[1000], "name": f"q.{i:05d}"} for i in range(1000)]}}, handle)
        via = compare([*check_argv(vhosts[1000]), "--config", fallback],
                      [*check_argv(vhosts[1000]), "--config", fallback, "--via", "amqp"], runs=7, env=ENV)
        rows.append(row("queue check, 1,000 queues", "API (1 request)", "AMQP passive declares", via,
                        target=1.0))
        node = compare([AUTOREMEDY, "check", "rabbitmq-node"],
                       ["rabbitmq-diagnostics", "-q", "-n", "rabbit@localhost", "check_running"],
                       runs=9, env=ENV)
        rows.append(row("node health", "check rabbitmq-node (HTTP)", "rabbitmq-diagnostics check_running",
                        node, target=0.5))
        evidence = compare([PYTHON, "-I", "-c", NODE_EVIDENCE], [AUTOREMEDY, "check", "rabbitmq-node"], runs=7, env=ENV)
        rows.append(row("rabbitmq-node no-harm reading (once before, once after a run)",
                        f"cluster_status + one queue listing ({sum(SIZES):,} queues)", "check rabbitmq-node",
                        evidence))
        print("in process, request vs own work (parse, judge, render), median of 5:")
        for size, vhost in vhosts.items():
            request, work = breakdown(vhost)
            print(f"  {size:5d} queues: request {request * 1000:7.1f} ms, own work {work * 1000:6.1f} ms "
                  f"({work / size * 1e6:.1f} us/queue)")
        print(f"modules a queue check imports (of pika, requests, urllib3, yaml, psutil): "
              f"{imported_modules(vhosts[100])}")
        big = f"ar_oslo_bench_{stamp}"
        vhosts[BIG] = big
        rows.extend(big_rows(big, state))
    finally:
        for vhost in vhosts.values():
            try:
                _http("DELETE", f"vhosts/{quote(vhost, safe='')}")
            except Exception as exc:                 # keep going: the others must go too
                print(f"could not delete vhost {vhost}: {exc}")
    return rows


if __name__ == "__main__":
    import sys
    from bench.lib import table
    print(table(run_big() if sys.argv[1:] == ["big"] else run()))
