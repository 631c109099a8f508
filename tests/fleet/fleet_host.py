"""One "host" of the fleet tests: ``fleet_host.py JOBS.json OUT.json``.

Runs each job [config path, event id, target] in a pool of worker processes
through the real guarded path: ``perform()`` (mode "perform", what every
handler's local fallback ends in), the whole handler dispatch (mode
"dispatch": spool, forward to StackStorm, fall back, escalate) or the ledger's
reservation alone (mode "reserve": the atomic step the caps rest on, as fast
as a worker can ask). Writes one result per job."""
import json
import multiprocessing
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

_configs = {}


def _config(path):
    from autoremedy.config import Config
    if path not in _configs:
        _configs[path] = Config.load(path, environ={})
    return _configs[path]


_real_load = None


def _load(kind, name):
    """The CLI's class loader, knowing the test class too."""
    import fleetkit
    if kind == "remediations" and name == "fleettest":
        return fleetkit
    return _real_load(kind, name)


def job(spec):
    path, event_id, target, mode = spec
    config = _config(path)
    if mode == "dispatch":
        return _dispatch(config, event_id, target)
    if mode == "reserve":
        return _reserve(config, event_id, target)
    import fleetkit
    from autoremedy.contract.remediation import Trigger, perform
    remediation = fleetkit.FleetTest(config)
    outcome = perform(remediation, target, Trigger(source="sensu", event_id=event_id, status=2,
                                                   occurrences=3, history=[2, 2, 2],
                                                   host=config.hostname))
    return {"event": event_id, "target": target, "host": config.hostname, "pid": os.getpid(),
            "status": outcome.status, "guard": outcome.guard, "reason": outcome.reason}


def _reserve(config, event_id, target):
    from autoremedy.contract.guard import Guard, Refused, fleet_for
    guard = Guard(config.state_dir, "fleettest", config.guards("fleettest"),
                  hostname=config.hostname, scope="api", fleet=fleet_for(config))
    result = {"event": event_id, "target": target, "host": config.hostname, "pid": os.getpid(),
              "status": "reserved", "guard": None, "reason": None}
    try:
        entry = guard.reserve(target, event_id)
    except Refused as exc:
        return {**result, "status": "refused", "guard": exc.guard, "reason": exc.reason}
    result["id"] = entry["id"]
    return result


def _dispatch(config, event_id, target):
    from autoremedy.contract import registry
    from autoremedy.pipeline import route
    from autoremedy.contract.result import Result, Status
    from autoremedy.pipeline.sources.hook import from_check
    global _real_load
    if _real_load is None:
        _real_load, registry.load = registry.load, _load
    result = Result("fleettest", f"{target} broken", Status.CRITICAL)
    event = from_check(result, "fleettest", config.hostname, "FLEETTEST CRITICAL",
                       started=1.0, occurrences=3, labels={"autoremedy_class": "fleettest",
                                                           "autoremedy_target": target})
    decision = route.dispatch(config, event, route.NODE, cls="fleettest", target=target,
                              audit=None)
    outcome = decision.outcome
    # A node hook is a process of its own: its coordinator (and the backend's
    # sessions) ends with it, not held by this worker across the next nodes'
    # jobs (200 nodes' MariaDB sessions would pass the server's max_connections).
    from autoremedy.clients import coordination
    coordination.close_all()
    return {"event": event.id, "target": target, "host": config.hostname, "pid": os.getpid(),
            "status": outcome.status if outcome else None,
            "guard": outcome.guard if outcome else None,
            "reason": outcome.reason if outcome else None,
            "escalation": decision.escalation, "exit": decision.exit_code,
            "delivered": bool(decision.delivery and decision.delivery.ok)}


def _wait_for_the_others(barrier, name, timeout=180):
    """Say this host is ready, then wait until the test says go: the hosts of a
    test start their jobs together, not one host done before another has even
    started (a host's start takes seconds on a loaded machine)."""
    import time
    open(os.path.join(barrier, f"{name}.ready"), "w").close()
    deadline = time.monotonic() + timeout
    while not os.path.exists(os.path.join(barrier, "go")):
        if time.monotonic() > deadline:
            raise SystemExit(f"no go in {barrier} after {timeout}s")
        time.sleep(0.01)


def main(spec_path, out_path):
    with open(spec_path) as handle:
        spec = json.load(handle)
    jobs = [(c, e, t, spec.get("mode", "perform")) for c, e, t in spec["jobs"]]
    if spec.get("barrier"):
        # What every worker needs, imported once here: the forked workers inherit it.
        import fleetkit  # noqa: F401
        from autoremedy.clients import coordination  # noqa: F401
        from autoremedy.contract import remediation  # noqa: F401
        _wait_for_the_others(spec["barrier"], os.path.basename(out_path))
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(spec["workers"]) as pool:
        results = pool.map(job, jobs, chunksize=1)
    with open(out_path + ".part", "w") as handle:
        json.dump(results, handle)
    os.replace(out_path + ".part", out_path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
