"""Guards across hosts (autoremedy.clients.coordination) against real backends of the
tests' own: three "hosts" (processes with their own state directories and host
names, each with a pool of handler processes) acting on shared objects."""
import collections
import os
import signal
import subprocess
import sys
import time

import pytest

import fleetkit as fk

pytestmark = pytest.mark.integration

# 20 shared objects: enough for every target's events to meet on all three hosts
# and for a cap to stop part of them; not a multiple of 3, or the round-robin of
# _run_hosts would send all of a target's events to one host.
TARGETS = [f"t{i:02d}" for i in range(20)]
HOSTS = ("host-a", "host-b", "host-c")


def _run_hosts(base, backend_url, namespace, events, world, guards=None, workers=4, hold=0.01,
               coordination=None, targets=TARGETS, mode="perform"):
    """``events`` [(event id, target)] dealt round-robin to three hosts that run
    at once; returns every result."""
    configs = {h: fk.host_config(str(base), h, backend_url, world, targets, namespace,
                                 guards=guards, coordination=coordination, hold=hold)
               for h in HOSTS}
    shares = collections.defaultdict(list)
    for i, (event_id, target) in enumerate(events):
        host = HOSTS[i % len(HOSTS)]
        shares[host].append([configs[host], event_id, target])
    barrier = os.path.join(str(base), "barrier")
    os.makedirs(barrier)
    procs = {h: fk.start_host(shares[h], os.path.join(str(base), f"{h}.out"), workers,
                              mode=mode, barrier=barrier)
             for h in HOSTS}
    fk.release(barrier, list(procs.values()))       # the three start their jobs together
    results = []
    for host, proc in procs.items():
        results += fk.finish_host(proc, os.path.join(str(base), f"{host}.out"))
    return results


def _events(targets, per_target):
    # Interleaved so that every target's events are in flight on all hosts at once.
    return [(f"ev-{t}-{n}", t) for n in range(per_target) for t in targets]


def test_three_hosts_remediate_each_target_exactly_once(backend, tmp_path, namespace):
    world = fk.world(str(tmp_path), TARGETS)
    # Each repair holds its lock 0.3 s: one host alone would need 1.5 s for all 20
    # targets, time enough for the others to get the CPU on a loaded machine.
    results = _run_hosts(tmp_path, backend.url, namespace, _events(TARGETS, 6), world, hold=0.3)
    assert len(results) == 6 * len(TARGETS)
    done = fk.actions(world)
    per_target = collections.Counter(a["target"] for a in done)
    assert per_target == collections.Counter({t: 1 for t in TARGETS}), per_target
    statuses = collections.Counter(r["status"] for r in results)
    assert statuses["remediated"] == len(TARGETS), statuses
    # Everything else found the object repaired under the lock: nothing refused or failed.
    assert statuses["noop"] == 5 * len(TARGETS), [(r["status"], r["guard"], r["reason"]) for r in results
                                     if r["status"] not in ("remediated", "noop")][:5]
    assert len({a["host"] for a in done}) >= 2, (     # the work was really spread
        collections.Counter((r["host"], r["status"]) for r in results),
        [(a["host"], a["target"], round(a["at"] - done[0]["at"], 3)) for a in done])


def test_global_cap_exact_across_three_hosts(backend, tmp_path, namespace):
    world = fk.world(str(tmp_path), TARGETS)
    guards = {"global_cap": {"max": 8, "per": 3600.0}}
    results = _run_hosts(tmp_path, backend.url, namespace, _events(TARGETS, 3), world, guards)
    done = fk.actions(world)
    assert len(done) == 8, len(done)
    assert len({a["target"] for a in done}) == 8
    capped = [r for r in results if r["guard"] == "global_cap"]
    assert capped and all(r["status"] == "refused" and "cap 8" in r["reason"] for r in capped)
    # every target not repaired was refused by the cap (never acted on); the
    # cap is reserved before the plan, so repaired ones' later events are refused too
    untouched = set(TARGETS) - {a["target"] for a in done}
    assert len(untouched) == len(TARGETS) - 8 and untouched <= {r["target"] for r in capped}
    # A later event of a repaired target that comes before the cap is full finds nothing to do
    # (noop, which spends no slot); anything else is refused or remediated.
    repaired = {a["target"] for a in done}
    odd = [(r["target"], r["status"], r["guard"], r["reason"]) for r in results
           if r["status"] not in ("remediated", "refused")
           and not (r["status"] == "noop" and r["target"] in repaired)]
    assert not odd, odd


def test_rate_limit_exact_across_three_hosts(backend, tmp_path, namespace):
    targets = {"stuck": {"stubborn": True}}        # the repair never holds
    world = fk.world(str(tmp_path), targets)
    guards = {"rate_limit": {"max": 2, "per": 3600.0}}
    events = [(f"ev-stuck-{n}", "stuck") for n in range(12)]
    results = _run_hosts(tmp_path, backend.url, namespace, events, world, guards, targets=targets)
    assert len(fk.actions(world)) == 2
    limited = [r for r in results if r["guard"] == "rate_limit"]
    assert len(limited) == 10 and all("limit 2" in r["reason"] for r in limited)


def test_a_killed_holder_leaves_no_lock_behind(backend, tmp_path, namespace):
    world = fk.world(str(tmp_path), ["t00"])
    holder_cfg = fk.host_config(str(tmp_path), "host-a", backend.url, world, ["t00"], namespace,
                                hold=120.0)
    out = os.path.join(str(tmp_path), "holder.out")
    holder = fk.start_host([[holder_cfg, "ev-hold", "t00"]], out, workers=1)
    deadline = time.monotonic() + 60
    while not fk.actions(world):
        assert time.monotonic() < deadline and holder.poll() is None, holder.stderr.read()
        time.sleep(0.05)
    os.killpg(holder.pid, signal.SIGKILL)            # the holder's host dies mid-action
    holder.wait(10)
    killed = time.monotonic()
    other = fk.host_config(str(tmp_path), "host-b", backend.url, world, ["t00"], namespace,
                           guards={"lock_timeout": 30.0})
    out = os.path.join(str(tmp_path), "other.out")
    [result] = fk.finish_host(fk.start_host([[other, "ev-next", "t00"]], out, workers=1), out)
    waited = time.monotonic() - killed
    assert result["status"] == "remediated", result
    # lock_ttl is 3 s (Redis, etcd: the lease lapses); MySQL frees it with the session.
    assert waited < 15, waited
    assert [a["host"] for a in fk.actions(world)] == ["host-a", "host-b"]


def test_fleet_cap_over_200_node_hooks(backend, tmp_path, namespace):
    """200 node hooks fall back at once (StackStorm unreachable) through the
    whole handler dispatch: 10 restart their service, 190 escalate naming the
    fleet cap."""
    dead = f"http://127.0.0.1:{_closed_port()}"
    jobs, worlds = [], []
    for i in range(200):
        host = f"node-{i:03d}"
        world = fk.world(os.path.join(str(tmp_path), host), ["nova-compute"])
        worlds.append(world)
        cfg = fk.host_config(str(tmp_path), host, backend.url, world, ["nova-compute"],
                             namespace, scope="node", st2_url=dead,
                             guards={"fleet_cap": {"max": 10, "per": 600.0}})
        jobs.append([cfg, f"ev-{host}", "nova-compute"])
    barrier = os.path.join(str(tmp_path), "barrier")
    os.makedirs(barrier)
    procs = []
    for n in range(3):
        out = os.path.join(str(tmp_path), f"nodes-{n}.out")
        procs.append((fk.start_host(jobs[n::3], out, workers=3, mode="dispatch",
                                    barrier=barrier), out))
    fk.release(barrier, [proc for proc, _ in procs])
    results = []
    for proc, out in procs:
        results += fk.finish_host(proc, out)
    assert len(results) == 200
    acted = [w for w in worlds if fk.actions(w)]
    assert len(acted) == 10, collections.Counter((r["status"], r["guard"], (r["reason"] or "")[:80])
                                                 for r in results)
    remediated = [r for r in results if r["status"] == "remediated"]
    assert len(remediated) == 10 and all(r["exit"] == 0 for r in remediated)
    capped = [r for r in results if r["guard"] == "fleet_cap"]
    assert len(capped) == 190
    for r in capped:
        assert r["exit"] == 1 and "fleet cap" in r["escalation"] and "fleet_cap 10" in r["escalation"]
        assert "StackStorm" not in r["reason"]     # the reason is the cap, not the network


def test_cap_never_exceeded_by_300_reservations_at_once(backend, tmp_path, namespace):
    """300 reservations for 300 different objects from three hosts of four
    workers each, all at once, with nothing between them but the ledger (no
    lock: the objects differ): exactly 25 get a run under a cap of 25, the
    other 275 are refused by the cap (none for a busy or unreachable backend),
    and the shared ledger holds 25 runs."""
    from autoremedy.clients import coordination
    from autoremedy.config import Config
    targets = [f"r{i:03d}" for i in range(300)]
    guards = {"global_cap": {"max": 25, "per": 3600.0}}
    results = _run_hosts(tmp_path, backend.url, namespace, [(f"ev-{t}", t) for t in targets],
                         str(tmp_path), guards=guards, targets=targets, mode="reserve")
    assert len(results) == 300
    reserved = [r for r in results if r["status"] == "reserved"]
    refused = [r for r in results if r["status"] == "refused"]
    assert len(reserved) == 25, collections.Counter((r["status"], r["guard"]) for r in results)
    assert len(refused) == 275 and {r["guard"] for r in refused} == {"global_cap"}, \
        collections.Counter((r["guard"], (r["reason"] or "")[:60]) for r in refused)
    assert all("cap 25" in r["reason"] for r in refused)
    # (Which host got the slots is the race's business: on MariaDB, whose class
    # row serialises reservations, one host may take all 25 before the others
    # are scheduled; every host asked at once, released by the same barrier.)
    assert {r["host"] for r in results} == set(HOSTS)
    config = Config.load(os.path.join(str(tmp_path), "host-a", "autoremedy.yaml"), environ={})
    try:
        runs = coordination.for_config(config).ledger().runs("fleettest")
    finally:
        coordination.close_all()
    assert sorted(r["id"] for r in runs) == sorted(r["id"] for r in reserved)


def _closed_port():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_no_tooz_on_the_checks_and_handlers_import_path(tmp_path):
    """Coordination costs nothing where it is not configured: importing the
    handlers, the guard and the dispatch loads neither tooz nor a backend client."""
    code = ("import sys, autoremedy.pipeline.route, autoremedy.contract.guard, autoremedy.contract.remediation, "
            "autoremedy.handlers.sensu, autoremedy.handlers.hook, autoremedy.handlers.replay;"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tooz', 'redis', 'etcd3gw', 'futurist') or m.startswith('autoremedy.clients.coordination')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=str(tmp_path))          # the installed bundle, not the source tree
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("which", ["redis_backend", "mysql_backend", "etcd_backend"])
def test_coordinator_killed_mid_run(which, request, tmp_path, namespace):
    """The backend dies under three busy hosts and comes back: nothing is done
    twice, every refusal names the unreachable coordinator, and once it is back
    the same events finish the work."""
    import threading
    backend = request.getfixturevalue(which)
    world = fk.world(str(tmp_path), TARGETS)
    outage = {}

    def kill_and_return():
        deadline = time.monotonic() + 120
        while len(fk.actions(world)) < 8 and time.monotonic() < deadline:
            time.sleep(0.02)
        backend.kill()
        outage["down"] = time.monotonic()
        time.sleep(3.0)
        backend.start()
        outage["up"] = time.monotonic()
    chaos = threading.Thread(target=kill_and_return)
    chaos.start()
    try:
        first = _run_hosts(tmp_path / "pass1", backend.url, namespace, _events(TARGETS, 2), world,
                           hold=0.5)
    finally:
        chaos.join()
        backend.start()
    statuses = collections.Counter(r["status"] for r in first)
    refused = [r for r in first if r["status"] == "refused"]
    assert refused, statuses            # the outage was seen
    for r in refused:
        assert r["guard"] == "coordination", r
        assert "unreachable" in r["reason"] and "API-scoped" in r["reason"], r["reason"]
    assert not [r for r in first if r["status"] == "failed"], statuses
    # Recovery: the same kind of events again, with the backend back.
    second = _run_hosts(tmp_path / "pass2", backend.url, namespace,
                        [(f"again-{t}", t) for t in TARGETS], world, hold=0.0)
    assert not [r for r in second if r["status"] in ("refused", "failed")], \
        collections.Counter((r["status"], r["guard"]) for r in second)
    per_target = collections.Counter(a["target"] for a in fk.actions(world))
    assert per_target == collections.Counter({t: 1 for t in TARGETS}), per_target


def test_unreachable_backend_policies(tmp_path, namespace):
    """No backend answers: an API-scoped class refuses at once naming it; a
    node-scoped one refuses by default and acts under this host's guards only
    with ``unreachable: local``."""
    from autoremedy.config import Config
    from autoremedy.contract.remediation import Trigger, perform
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    outcomes = {}
    for name, scope, policy in (("api", "api", "local"), ("node-refuse", "node", "refuse"),
                                ("node-local", "node", "local")):
        world = fk.world(os.path.join(str(tmp_path), name), ["t00"])
        cfg = fk.host_config(str(tmp_path), name, url, world, ["t00"], namespace, scope=scope,
                             coordination={"unreachable": policy, "timeout": 0.5})
        started = time.monotonic()
        outcome = perform(fk.FleetTest(Config.load(cfg, environ={})), "t00",
                          Trigger(event_id=f"ev-{name}", status=2, occurrences=1, history=[2]))
        outcomes[name] = (outcome, time.monotonic() - started, fk.actions(world))
    api, took, done = outcomes["api"]
    assert (api.status, api.guard) == ("refused", "coordination") and not done
    assert f"coordination backend {url} unreachable" in api.reason
    assert "API-scoped" in api.reason and took < 5
    refused, took, done = outcomes["node-refuse"]
    assert (refused.status, refused.guard) == ("refused", "coordination") and not done
    assert "coordination.unreachable is refuse" in refused.reason and took < 5
    local, took, done = outcomes["node-local"]
    assert local.status == "remediated" and len(done) == 1
