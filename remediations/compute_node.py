"""Evacuate a dead compute host, in Masakari's order and with its safety.

Configuration (only allowlisted hosts are ever touched)::

    remediations:
      compute-node:
        enabled: true
        targets: {cmp1: {}, cmp2: {}}   # hosts by name ...
        host_patterns: ["cmp-*"]        # ... or by shell pattern
        concurrency: 3                  # evacuations in flight (Masakari: 3)
        evacuate_timeout: 5m            # per instance, until it has landed elsewhere
        poll_interval: 2s
        watch_interval: 5s              # re-probe the host while evacuating
        fence: false                    # power an unreachable-but-on host off via IPMI first
        reserved_hosts: []              # evacuate only to these (enabled first if disabled)
        skip_error: false               # leave instances in ERROR where they are
        lock_instances: true
        capacity: {check: true, cpu_allocation_ratio: 4.0, ram_allocation_ratio: 1.0}
        guards: {global_cap: {max: 2, per: 1h}}   # at most 2 hosts an hour

The sequence (reference/openstack.md §3; fence_compute's order):

1. refuse unless the host is confirmed dead: service down and (powered off, or
   unreachable with no passing keepalive); an unreachable host that is still
   powered on is fenced first only when ``fence: true``, else refused;
2. refuse when more than ``openstack.compute.max_down_share`` of the computes
   are down (a partition, not hardware), or when the others lack the vCPU/RAM;
3. force the service down (tells Nova the host is off, no 180 s wait), then
   disable it with a reason (after force-down Nova skips the RPC to the dead host);
4. list the host's instances with ``compute_host=``, all projects, and refuse a
   list holding another host's server;
5. evacuate each with bounded concurrency at the pinned microversion (2.53: no
   ``force``, no ``onSharedStorage``): lock it, reset it to ``error`` only when
   Nova requires it (vm_state not active/stopped/error, or a task_state set),
   evacuate, wait until it has landed on another host, give it back its
   state (stopped stays stopped, active stays active, error back to error), unlock;
6. stop submitting when the host shows signs of life mid-way, and report per instance.

The original state of each instance is kept in ``<state_dir>/compute-node/<host>.json``
before anything is reset, so a second run after a partial failure continues
with the right targets (an instance already landed is no longer on the host).
"""
import fnmatch
import os
import re
import threading
import time

from autoremedy import config as configmod
from autoremedy import statefile
from autoremedy.guard import Refused
from autoremedy.remediation import Remediation, RemediationError, Step
from autoremedy.result import Result, Status

DEAD_KEYWORD = "dead"
HOSTNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
EVACUABLE = ("active", "stopped", "error")
REBUILDING = ("rebuilding", "rebuild_block_device_mapping", "rebuild_spawning")


class EvacuateHost(Remediation):
    name = "compute-node"
    scope = "api"
    schema = {
        "targets": configmod.Map(configmod.Any),
        "host_patterns": configmod.List(str),
        "concurrency": int,
        "evacuate_timeout": configmod.Duration,
        "poll_interval": configmod.Duration,
        "watch_interval": configmod.Duration,
        "fence": bool,
        "reserved_hosts": configmod.List(str),
        "skip_error": bool,
        "lock_instances": bool,
        "shared_storage": bool,
        "capacity": {"check": bool, "cpu_allocation_ratio": configmod.Number,
                     "ram_allocation_ratio": configmod.Number},
    }

    def __init__(self, config, runner=None, audit=None, conn=None, connect=None):
        from autoremedy import execute
        super().__init__(config, runner or execute.run, audit)
        self._conn = conn
        self._connect = connect
        self._host_state = None
        self._reports = []
        self.osconf()     # validate the openstack: section now (`autoremedy config check`)

    # -- settings ----------------------------------------------------------------------
    def opt(self, key, default):
        value = self.settings.get(key)
        return default if value is None else value

    @property
    def concurrency(self):
        return max(1, int(self.opt("concurrency", 3)))

    def osconf(self):
        from autoremedy.cloud import settings
        return settings(self.config)

    def conn(self):
        if self._conn is None:
            from autoremedy.cloud import connect
            self._conn = (self._connect or connect)(self.config, concurrency=self.concurrency)
        return self._conn

    def resolve(self, name):
        if name == DEAD_KEYWORD:
            return self._first_dead()
        if not name or not HOSTNAME.match(name):
            raise Refused("allowlist", f"{name!r} is not a compute host name")
        if name in (self.settings.get("targets") or {}):
            return name
        if any(fnmatch.fnmatchcase(name, p) for p in self.settings.get("host_patterns") or []):
            return name
        raise Refused("allowlist", f"{name!r} is not in remediations.compute-node.targets "
                      "or host_patterns")

    def _first_dead(self):
        """``dead``: the first allowlisted host the check confirms dead, for triggers
        that cannot name the host (a cloud-wide Sensu proxy check). Each run takes one
        host through every guard; the next event takes the next."""
        from autoremedy.checks import compute_node as cn
        from autoremedy.cloud import CloudError
        try:
            states, _ = cn.survey(self.conn(), self.osconf(), runner=self.runner)
        except CloudError as exc:
            raise Refused("precondition", f"cannot list the compute services: {exc}") from None
        dead = sorted(st.host for st in states if st.verdict in (cn.DEAD, cn.UNREACHABLE_ON)
                      and (st.instances or not st.service.is_forced_down))
        for host in dead:
            try:
                return self.resolve(host)
            except Refused:
                continue
        raise Refused("precondition", "no allowlisted compute host is confirmed dead"
                      + (f" (dead but not allowlisted: {', '.join(dead)})" if dead else ""))

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("target", help="the dead compute host (allowlisted), or 'dead' for the "
                                           "first allowlisted host the check confirms dead")

    # -- state kept across runs ----------------------------------------------------------
    def state_path(self, host):
        return os.path.join(self.config.state_dir, "compute-node", f"{host}.json")

    def originals(self, host):
        return (statefile.load(self.state_path(host), {}) or {}).get("originals", {})

    # -- plan ------------------------------------------------------------------------------
    def plan(self, host):
        from autoremedy.checks import compute_node as cn
        conn = self.conn()
        osconf = self.osconf()
        services = cn.compute_services(conn)
        mine = [s for s in services if s.host == host]
        if not mine:
            raise Refused("precondition", f"Nova has no nova-compute service on {host}")
        state = cn.HostState(host, mine[0])
        cn.assess(state, osconf, self.runner)
        self._host_state = state
        down = [s for s in services if s.state == "down" or s.is_forced_down]
        limit = osconf["compute"]["max_down_share"]
        if len(down) > 1 and len(down) / len(services) > limit:
            raise Refused("partition", f"{len(down)} of {len(services)} computes are down "
                          f"(more than {limit:.0%}): a partition or a control-plane fault, not hardware")
        steps = []
        if state.verdict == cn.UP:
            raise Refused("precondition", f"nova-compute on {host} is up: the host is not down "
                          "(Nova would refuse: ComputeServiceInUse)")
        if state.verdict == cn.ALIVE:
            raise Refused("precondition", f"{host} is alive ({', '.join(state.evidence)}): restart "
                          "nova-compute there; evacuating a live host duplicates its VMs")
        if state.verdict == cn.UNCONFIRMED:
            raise Refused("precondition", f"cannot confirm {host} is down ({', '.join(state.evidence)})")
        if state.verdict == cn.UNREACHABLE_ON:
            if not self.opt("fence", False):
                raise Refused("fencing", f"{host} is unreachable but powered on: set fence: true "
                              "to power it off first, or a human decides")
            steps.append(self._fence_step(host, osconf))
        service = state.service
        if not service.is_forced_down:
            steps.append(Step(f"force nova-compute on {host} down",
                              action=lambda: self._force_down(service)))
        if not (service.status == "disabled"
                and (service.disabled_reason or "").startswith(cn.DISABLED_REASON_PREFIX)):
            steps.append(Step(f"disable nova-compute on {host} with a reason",
                              action=lambda: self._disable(service)))
        servers = cn.instances_on(conn, host)
        if self.opt("skip_error", False):
            servers = [s for s in servers if s.vm_state != "error"]
        if servers:
            reserved = self._reserved(services, host)
            self._check_capacity(conn, servers, services, host, reserved)
            for svc in reserved:
                if svc.status != "enabled":
                    steps.append(Step(f"enable reserved host {svc.host}",
                                      action=lambda svc=svc: self._enable(svc)))
            originals = self.originals(host)
            details = [f"{s.id} {s.name}: {s.vm_state}/{s.task_state or '-'} -> "
                       f"{self._intent(s, originals.get(s.id))}" for s in servers]
            steps.append(Step(f"evacuate {len(servers)} instance(s) from {host}, "
                              f"{self.concurrency} at a time", details=details,
                              action=lambda: self._evacuate_all(host, servers, reserved)))
        return steps

    def _intent(self, server, original):
        original = original or server.vm_state
        words = []
        if server.task_state in REBUILDING:
            words.append("wait for the evacuation in progress")
        else:
            if server.vm_state not in EVACUABLE or server.task_state is not None:
                words.append("reset-state error")
            words.append("evacuate")
        if original == "stopped":
            words.append("keep stopped")
        elif original == "error":
            words.append("reset to error")
        return ", ".join(words)

    def _fence_step(self, host, osconf):
        from autoremedy.checks import compute_node as cn
        from autoremedy.cloud import host_settings
        ipmi = host_settings(osconf, host)["ipmi"]
        argv = cn.ipmi_argv(ipmi, "chassis", "power", "off")

        def fence():
            done = self.runner(argv, timeout=ipmi.get("timeout", 15.0))
            if done.returncode != 0:
                raise RemediationError(f"IPMI power off of {host} failed: {done.brief()}")
            deadline = time.monotonic() + 60
            while cn.power_state(ipmi, self.runner) != "off":
                if time.monotonic() > deadline:
                    raise RemediationError(f"{host} still not powered off 60s after IPMI power off")
                time.sleep(2)
            self._host_state.power = "off"
            return "powered off (confirmed by the BMC)"
        return Step(f"fence {host}: IPMI power off, then confirm", argv=argv, action=fence)

    def _reserved(self, services, host):
        names = [h for h in self.opt("reserved_hosts", []) if h != host]
        by_host = {s.host: s for s in services}
        missing = [h for h in names if h not in by_host]
        if missing:
            raise Refused("precondition", f"reserved host(s) {', '.join(missing)} have no nova-compute service")
        dead = [h for h in names if by_host[h].state != "up"]
        if dead:
            raise Refused("capacity", f"reserved host(s) {', '.join(dead)} are down")
        return [by_host[h] for h in names]

    def _check_capacity(self, conn, servers, services, host, reserved):
        cap = self.opt("capacity", {})
        if not cap.get("check", True):
            return
        from autoremedy.cloud import guarded
        up = {s.host for s in services if s.state == "up" and s.status == "enabled" and s.host != host}
        wanted = {s.host for s in reserved} if reserved else up
        with guarded("reading hypervisor capacity"):
            hypervisors = list(conn.compute.hypervisors(details=True))
        cpu_ratio = float(cap.get("cpu_allocation_ratio", 4.0))
        ram_ratio = float(cap.get("ram_allocation_ratio", 1.0))
        free_cpu = free_ram = 0.0
        for hyp in hypervisors:
            owner = (hyp.service_details or {}).get("host")
            if owner not in wanted:
                continue
            vcpus, vcpus_used, ram, ram_used = resources(hyp)
            if vcpus is None or ram is None:
                return   # Nova >= 2.88 hides these; placement would know (not checked)
            free_cpu += max(0.0, vcpus * cpu_ratio - (vcpus_used or 0))
            free_ram += max(0.0, ram * ram_ratio - (ram_used or 0))
        need_cpu = sum((s.flavor.vcpus if s.flavor else 0) or 0 for s in servers)
        need_ram = sum((s.flavor.ram if s.flavor else 0) or 0 for s in servers)
        if need_cpu > free_cpu or need_ram > free_ram:
            raise Refused("capacity", f"not enough room for {len(servers)} instance(s) "
                          f"({need_cpu} vCPU, {need_ram} MiB) on {len(wanted)} host(s): "
                          f"{free_cpu:.0f} vCPU, {free_ram:.0f} MiB free")

    # -- the steps -----------------------------------------------------------------------
    def _force_down(self, service):
        from autoremedy.cloud import guarded
        with guarded(f"forcing {service.host} down"):
            self.conn().compute.update_service_forced_down(service, service.host, "nova-compute", True)
        return "forced down"

    def _disable(self, service):
        from autoremedy.checks.compute_node import DISABLED_REASON_PREFIX
        from autoremedy.cloud import guarded
        reason = f"{DISABLED_REASON_PREFIX}, evacuated by autoremedy at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"
        with guarded(f"disabling {service.host}"):
            self.conn().compute.disable_service(service, service.host, "nova-compute", disabled_reason=reason)
        return "disabled"

    def _enable(self, service):
        from autoremedy.cloud import guarded
        with guarded(f"enabling {service.host}"):
            self.conn().compute.enable_service(service, service.host, "nova-compute")
        return "enabled"

    def _evacuate_all(self, host, servers, reserved):
        from concurrent.futures import ThreadPoolExecutor
        path = self.state_path(host)
        with statefile.updating(path) as state:      # first seen state wins across runs
            originals = state.setdefault("originals", {})
            for s in servers:
                originals.setdefault(s.id, s.vm_state if s.task_state not in REBUILDING else "active")
            originals = dict(originals)
        from autoremedy.cloud import CloudError, guarded
        try:
            with guarded("reading the reserved hosts' room"):
                placer = Placer(self.conn(), reserved) if reserved else None
        except CloudError as exc:
            raise RemediationError(str(exc)) from None
        watch = HostWatch(self, host)
        watch.start()
        try:
            with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
                reports = list(pool.map(
                    lambda s: self._evacuate_one(host, s, originals.get(s.id, s.vm_state), placer, watch),
                    servers))
        finally:
            watch.stop()
        with statefile.updating(path) as state:
            state.setdefault("runs", []).append({"ts": time.time(), "reports": reports})
            state["runs"] = state["runs"][-10:]
        self._reports = reports
        if self.audit is not None:
            self.audit.record("evacuation", "ok" if all(r["result"] == "evacuated" for r in reports)
                              else "failed", cls=self.name, target=host, instances=reports)
        return summarise(host, reports, watch.reason)

    def run(self, host, plan):
        self._reports = []
        notes = super().run(host, plan)
        for r in self._reports:
            notes.append(f"{r['id']} ({r['name']}): {r['result']}, {r['from']} -> {r['to'] or '-'}, "
                         f"{r['detail']}")
        return notes

    def _evacuate_one(self, host, server, original, placer, watch):
        compute = self.conn().compute
        report = {"id": server.id, "name": server.name, "original": original, "result": "failed",
                  "from": host, "to": None, "detail": ""}
        if watch.reason:
            report.update(result="not-started", detail=watch.reason)
            return report
        locked_here = False
        try:
            if self.opt("lock_instances", True) and not server.is_locked:
                compute.lock_server(server)
                locked_here = True
            if server.task_state not in REBUILDING:
                if server.vm_state not in EVACUABLE or server.task_state is not None:
                    compute.reset_server_state(server, "error")    # Nova requires it (Masakari does the same)
                target = placer.take(server) if placer else None
                if watch.reason:
                    report.update(result="not-started", detail=watch.reason)
                    return report
                compute.evacuate_server(server, host=target, **self._evacuate_kwargs())
            landed = self._wait_landed(server.id, host)
            report["to"] = landed.compute_host
            report["detail"] = self._restore(landed, original)
            report["result"] = "evacuated"
        except EvacuationFailed as exc:
            report["detail"] = str(exc)
        except Exception as exc:  # one instance's failure must not stop the others
            from autoremedy.cloud import describe
            report["detail"] = describe(exc)
        finally:
            if locked_here:
                try:
                    compute.unlock_server(server)
                except Exception as exc:
                    report["detail"] = (report["detail"] + "; " if report["detail"] else "") + \
                        f"unlock failed: {type(exc).__name__}"
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
        while True:
            server = compute.get_server(server_id)
            if server.task_state is None:
                if server.compute_host != host and server.vm_state in ("active", "stopped"):
                    return server
                if server.compute_host == host and server.vm_state == "error":
                    raise EvacuationFailed("evacuation failed: the instance is in ERROR on the dead host")
            if time.monotonic() >= deadline:
                raise EvacuationFailed(f"still {server.vm_state}/{server.task_state} on "
                                       f"{server.compute_host} after {self.opt('evacuate_timeout', 300.0):g}s")
            time.sleep(interval)

    def _restore(self, server, original):
        compute = self.conn().compute
        if original == "stopped" and server.vm_state == "active":
            compute.stop_server(server)
            return "stopped again, as it was"
        if original == "active" and server.vm_state == "stopped":
            compute.start_server(server)     # 2.95+: Nova lands evacuated VMs stopped
            return "started again, as it was"
        if original == "error" and server.vm_state != "error":
            compute.reset_server_state(server, "error")
            return "reset to error, as it was"
        return f"{server.vm_state}, as it was"

    # -- verify ----------------------------------------------------------------------------
    def verify(self, host):
        from autoremedy.checks import compute_node as cn
        conn = self.conn()
        servers = cn.instances_on(conn, host)
        if self.opt("skip_error", False):
            servers = [s for s in servers if s.vm_state != "error"]
        service = [s for s in cn.compute_services(conn) if s.host == host][0]
        problems = []
        if servers:
            problems.append(f"{len(servers)} instance(s) still on {host}")
        if not service.is_forced_down or service.status != "disabled":
            problems.append(f"service not fenced ({service.status}, forced_down={service.is_forced_down})")
        if problems:
            return Result(self.name, "; ".join(problems), status=Status.CRITICAL)
        return Result(self.name, f"{host} fenced and empty", status=Status.OK)

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

    def __init__(self, remediation, host):
        self.remediation = remediation
        self.host = host
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
        from autoremedy.cloud import host_settings
        interval = float(self.remediation.opt("watch_interval", 5.0))
        hs = host_settings(self.remediation.osconf(), self.host)
        fenced = self.remediation._host_state is not None and self.remediation._host_state.power == "off"
        while not self._stop.wait(interval):
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
    done = [r for r in reports if r["result"] == "evacuated"]
    failed = [r for r in reports if r["result"] == "failed"]
    waiting = [r for r in reports if r["result"] == "not-started"]
    line = f"{len(done)}/{len(reports)} instance(s) evacuated from {host}"
    if failed:
        line += f"; {len(failed)} failed: " + "; ".join(f"{r['id']} ({r['detail']})" for r in failed[:5])
    if waiting:
        line += f"; {len(waiting)} not started"
    if stopped:
        line += f"; {stopped}"
    if failed or waiting:
        raise RemediationError(line)
    return line


REMEDIATION = EvacuateHost
