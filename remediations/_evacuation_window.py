"""compute-node's evacuation window: the instances evacuated with at most
``concurrency`` in flight (a pool of that many workers: a sliding window, each worker
takes the next instance as soon as its own has landed and been given its state
back), each one re-read, locked, evacuated, waited for and given back the state it
had at the start of the incident; the host watched meanwhile (a sign of life stops
new submissions); the reports summarised. Part of ``EvacuateHost``
(remediations/compute_node.py), split out for the reader: no behaviour of its own."""
import threading
import time

from autoremedy import statefile
from autoremedy.contract.remediation import RemediationError

EVACUABLE = ("active", "stopped", "error")
REBUILDING = ("rebuilding", "rebuild_block_device_mapping", "rebuild_spawning")
# The status an instance must end in, by its state at the start of the incident.
LANDS = {"active": "ACTIVE", "stopped": "SHUTOFF", "paused": "PAUSED", "suspended": "SUSPENDED",
         "error": "ERROR"}


class EvacuationWindow:
    """The evacuation step of ``EvacuateHost`` (a mixin: it uses the class's settings,
    connection, incident memory and service calls)."""

    def _evacuate_all(self, host, servers, reserved):
        from concurrent.futures import ThreadPoolExecutor
        from autoremedy.clients.cloud import CloudError, guarded
        # What each instance must be given back, written before anything is reset.
        remembered = self.incident(host)
        self._remember(host, {s.id: {"state": self._intents.get(s.id, s.vm_state),
                                     "touched": bool((remembered.get(s.id) or {}).get("touched"))}
                              for s in servers})
        try:
            with guarded("reading the reserved hosts' room"):
                placer = Placer(self.conn(), reserved) if reserved else None
        except CloudError as exc:
            raise RemediationError(str(exc)) from None
        service = self._host_state.service
        watch = HostWatch(self, host, refresh=lambda: self._disable(service, self._claim_reason()))
        watch.start()
        try:
            with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
                reports = list(pool.map(
                    lambda s: self._evacuate_one(host, s, self._intents.get(s.id, s.vm_state),
                                                 placer, watch), servers))
        finally:
            watch.stop()
        done = all(r["result"] in ("evacuated", "already-moved") for r in reports)
        note = self._release(service, "evacuated" if done else
                             f"run ended, {sum(r['result'] not in ('evacuated', 'already-moved') for r in reports)}"
                             " instance(s) left")
        with statefile.updating(self.state_path(host)) as state:
            state.setdefault("runs", []).append({"ts": time.time(), "run": self._run_id, "reports": reports})
            state["runs"] = state["runs"][-10:]
            if done:
                state.pop("incident", None)      # the incident's run ended: nothing to remember
        self._reports = reports
        if self.audit is not None:
            self.audit.record("evacuation", "ok" if done else "failed", cls=self.name, target=host,
                              run=self._run_id, instances=reports, stopped=watch.reason)
        return summarise(host, reports, "; ".join(w for w in (watch.reason, note) if w))

    def _evacuate_one(self, host, server, original, placer, watch):
        compute = self.conn().compute
        report = {"id": server.id, "name": server.name, "original": original,
                  "lands": self.lands(original), "result": "failed", "from": host, "to": None,
                  "detail": ""}
        if watch.reason:
            report.update(result="not-started", detail=watch.reason)
            return report
        locked_here = False
        call = "re-reading the instance"
        try:
            server = compute.get_server(server.id)          # what Nova says now
            if server.compute_host != host:
                report.update(result="already-moved", to=server.compute_host,
                              detail=f"already on {server.compute_host} (moved by someone else)")
                return report
            if self.opt("lock_instances", True) and not server.is_locked:
                call = "lock"
                compute.lock_server(server)
                locked_here = True
            if server.task_state not in REBUILDING:
                self._touch(host, server.id)
                if server.vm_state not in EVACUABLE or server.task_state is not None:
                    call = "reset-state error"
                    compute.reset_server_state(server, "error")    # Nova requires it (Masakari does the same)
                target = placer.take(server) if placer else None
                if watch.reason:
                    report.update(result="not-started", detail=watch.reason)
                    return report
                call = "evacuate"
                compute.evacuate_server(server, host=target, **self._evacuate_kwargs())
            call = "waiting for it to land"
            landed = self._wait_landed(server.id, host)
            report["to"] = landed.compute_host
            call = "giving its state back"
            report["detail"] = self._give_back(landed, original)
            report["result"] = "evacuated"
        except EvacuationFailed as exc:
            report["detail"] = f"{call}: {exc}"
        except Exception as exc:  # one instance's failure must not stop the others
            from autoremedy.clients.cloud import describe
            report["detail"] = f"{call}: {describe(exc)}"
        finally:
            if locked_here:
                try:
                    compute.unlock_server(server)
                except Exception as exc:
                    from autoremedy.clients.cloud import describe
                    report["detail"] = (report["detail"] + "; " if report["detail"] else "") + \
                        f"unlock: {describe(exc)}"
        return report

    def _evacuate_kwargs(self):
        """Below 2.14 Nova requires onSharedStorage; from 2.14 it must not be sent, and
        ``force`` is never sent (rejected from 2.68; skips the scheduler before)."""
        version = self.osconf()["compute_microversion"]
        major, minor = (int(x) for x in version.split("."))
        if (major, minor) < (2, 14):
            return {"on_shared_storage": bool(self.opt("shared_storage", False))}
        return {}

    def _wait_landed(self, server_id, host):
        compute = self.conn().compute
        deadline = time.monotonic() + float(self.opt("evacuate_timeout", 300.0))
        interval = float(self.opt("poll_interval", 2.0))
        started = time.monotonic()
        # No reading right after the evacuate call: Nova has only just accepted it
        # (the conductor, the scheduler and the destination's rebuild are ahead), and
        # with several in flight every wasted GET is CPU nova-api takes from them.
        time.sleep(self._first_look(interval))
        missed = None       # when a reading last saw it not landed yet
        while True:
            server = compute.get_server(server_id)
            if server.task_state is None:
                if server.compute_host != host and server.vm_state in ("active", "stopped"):
                    # Learn only from an instance seen both before and after it landed: the
                    # midpoint is an honest estimate. One already landed at the first reading
                    # says only "sooner than we looked"; counting that wait fed itself (the
                    # first look grew towards 4 GET times: 0.6 s at a 200 ms double).
                    if missed is not None:
                        self._landings.append((missed + time.monotonic() - started) / 2)
                    return server
                if server.compute_host == host and server.vm_state == "error":
                    fault = (getattr(server, "fault", None) or {}).get("message")
                    raise EvacuationFailed("Nova left it in ERROR on the dead host"
                                           + (f": {fault}" if fault else ""))
            if time.monotonic() >= deadline:
                raise EvacuationFailed(f"still {server.vm_state}/{server.task_state} on "
                                       f"{server.compute_host} after {self.opt('evacuate_timeout', 300.0):g}s")
            missed = time.monotonic() - started
            time.sleep(interval)

    def _first_look(self, interval):
        """When to read an instance first after its evacuate call: once this run's
        earlier evacuations tell how long one takes (those seen both before and after
        they landed: the midpoint), at three quarters of their median
        (never sooner than ``poll_interval``, never later than 30 s), then every
        ``poll_interval``. On a real Nova 34 (2 cores, 3 in flight) each evacuation
        took 2-5 s: reading every 0.3 s from the start was ~10 GETs a second, and
        nova-api's CPU for them (17.8 of 46.5 CPU-s for 30 evacuations, bench_openstack)
        was taken from the conductor and the computes doing the evacuations."""
        landings = sorted(self._landings)
        if not landings:
            return interval
        return min(30.0, max(interval, 0.75 * landings[len(landings) // 2]))

    def _give_back(self, server, original):
        """Put the landed instance in the state it had at the start of the incident
        and wait until Nova shows it there."""
        compute = self.conn().compute
        want = self.lands(original)
        actions = []
        if want in ("ACTIVE", "PAUSED", "SUSPENDED") and server.vm_state == "stopped":
            compute.start_server(server)     # 2.95+: Nova lands evacuated VMs stopped
            actions.append("started")
            server = self._wait_status(server.id, "ACTIVE")
        if want == "SHUTOFF" and server.vm_state == "active":
            compute.stop_server(server)
            actions.append("stopped")
        elif want == "PAUSED":
            compute.pause_server(server)
            actions.append("paused")
        elif want == "SUSPENDED":
            compute.suspend_server(server)
            actions.append("suspended")
        elif want == "ERROR":
            compute.reset_server_state(server, "error")
            actions.append("reset to error")
        if actions or server.status != want or server.task_state is not None:
            final = self._wait_status(server.id, want)
        else:
            final = server       # landed as it was: the reading that saw it land says so
        said = (" and ".join(actions) + " again, " if actions else "") + f"{final.status}"
        if original == "building":
            return f"{said}; it was still building on the dead host (nothing to give back)"
        if original not in LANDS:
            return f"{said}; it was {original} (cannot be given back)"
        if original == "error" and want == "ACTIVE":
            return f"{said} (was ERROR; recover_error)"
        return f"{said}, as it was"

    def _wait_status(self, server_id, status):
        compute = self.conn().compute
        deadline = time.monotonic() + float(self.opt("evacuate_timeout", 300.0))
        while True:
            server = compute.get_server(server_id)
            if server.status == status and server.task_state is None:
                return server
            if time.monotonic() >= deadline:
                raise EvacuationFailed(f"landed on {server.compute_host} but still "
                                       f"{server.status}/{server.task_state}, not {status}")
            time.sleep(float(self.opt("poll_interval", 2.0)))


def report_line(r):
    return f"{r['id']} ({r['name']}): {r['result']}, {r['from']} -> {r['to'] or '-'}, {r['detail']}"


def resources(hypervisor):
    """(vcpus, vcpus_used, memory_mb, memory_mb_used); the SDK marks these fields
    deprecated (gone at 2.88) and warns on every read; we pin 2.53 where they exist."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return (hypervisor.vcpus, hypervisor.vcpus_used, hypervisor.memory_size,
                hypervisor.memory_used)


class EvacuationFailed(Exception):
    pass


class Placer:
    """First-fit placement on reserved hosts, shared by the worker threads."""

    def __init__(self, conn, reserved):
        self.lock = threading.Lock()
        self.free = {}
        hosts = {s.host for s in reserved}
        for hyp in conn.compute.hypervisors(details=True):
            owner = (hyp.service_details or {}).get("host")
            if owner in hosts:
                vcpus, vcpus_used, ram, ram_used = resources(hyp)
                self.free[owner] = [(vcpus or 0) - (vcpus_used or 0), (ram or 0) - (ram_used or 0)]

    def take(self, server):
        cpu = (server.flavor.vcpus if server.flavor else 0) or 0
        ram = (server.flavor.ram if server.flavor else 0) or 0
        with self.lock:
            for host, room in sorted(self.free.items(), key=lambda kv: -kv[1][0]):
                if room[0] >= cpu and room[1] >= ram:
                    room[0] -= cpu
                    room[1] -= ram
                    return host
        raise EvacuationFailed("no reserved host has room for it")


class HostWatch:
    """Re-probes the host while evacuating; a sign of life stops new submissions
    (evacuating a live host would leave two copies of its VMs)."""

    def __init__(self, remediation, host, refresh=None):
        self.remediation = remediation
        self.host = host
        self.refresh = refresh        # renews the run's claim on the host
        self.reason = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self):
        from autoremedy.checks import compute_node as cn
        from autoremedy.clients.cloud import host_settings
        interval = float(self.remediation.opt("watch_interval", 5.0))
        hs = host_settings(self.remediation.osconf(), self.host)
        fenced = self.remediation._host_state is not None and self.remediation._host_state.power == "off"
        every = float(self.remediation.opt("claim_ttl", 60.0)) / 3
        renewed = time.monotonic()
        while not self._stop.wait(interval):
            if self.refresh is not None and time.monotonic() - renewed >= every:
                try:
                    self.refresh()
                    renewed = time.monotonic()
                except Exception:  # a missed renewal only shortens the claim
                    pass
            if fenced:
                power = cn.power_state(hs["ipmi"], self.remediation.runner)
                if power == "on":
                    self.reason = f"{self.host} powered on again mid-way: stopped submitting"
                    return
                continue
            alive, words = cn.reachability(hs["address"], hs["probe"], self.remediation.runner)
            if alive:
                self.reason = f"{self.host} came back mid-way ({', '.join(words)}): stopped submitting"
                return


def summarise(host, reports, stopped=None):
    """One line for the notes; raises RemediationError when anything is left."""
    done = [r for r in reports if r["result"] in ("evacuated", "already-moved")]
    failed = [r for r in reports if r["result"] == "failed"]
    waiting = [r for r in reports if r["result"] == "not-started"]
    line = f"{len(done)}/{len(reports)} instance(s) evacuated from {host}"
    if failed:
        line += f"; {len(failed)} failed: " + "; ".join(f"{r['id']} ({r['detail']})" for r in failed[:10])
        if len(failed) > 10:
            line += f"; and {len(failed) - 10} more (see the audit log)"
    if waiting:
        line += f"; {len(waiting)} not started: " + ", ".join(r["id"] for r in waiting[:10])
    if stopped:
        line += f"; {stopped}"
    if failed or waiting:
        if done:
            line += "; moved: " + ", ".join(f"{r['id']} -> {r['to']}" for r in done)
        raise RemediationError(line)
    return line
