"""Evacuate a dead compute host, in Masakari's order and with its safety; and the way back.

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
        recover_error: false            # let a former ERROR instance land ACTIVE (default: back to ERROR)
        lock_instances: true
        capacity: {check: true, cpu_allocation_ratio: 4.0, ram_allocation_ratio: 1.0}
        claim_ttl: 60s                  # a run's claim on the host, refreshed while it runs
        claim_settle: 2s                # wait after claiming, then check that the claim held
        restart_command: []             # --restore: argv restarting nova-compute on {host}
        restore_timeout: 5m             # --restore: wait for nova-compute to report, then "up"
        guards: {global_cap: {max: 2, per: 1h}}   # at most 2 hosts an hour

The sequence (Masakari's host-failure flow; fence_compute's order):

1. refuse unless the host is confirmed dead: service down and (powered off, or
   unreachable with no passing keepalive); an unreachable host that is still
   powered on is fenced first only when ``fence: true``, else refused;
2. refuse when more than ``openstack.compute.max_down_share`` of the computes
   are down (a partition, not hardware), or when the others lack the vCPU/RAM;
3. force the service down (tells Nova the host is off, no 180 s wait), then
   disable it with a reason that is also this run's **claim** on the host: a
   second handler (another Sensu backend, another state directory) sees a live
   claim and refuses, and two runs that claim at once both read the claim back
   after ``claim_settle``: only the last writer goes on, the other ends ``noop``;
4. list the host's instances with ``compute_host=``, all projects, and refuse a
   list holding another host's server;
5. evacuate each with bounded concurrency at the pinned microversion (2.53: no
   ``force``, no ``onSharedStorage``): re-read it, lock it, reset it to ``error``
   only when Nova requires it (vm_state not active/stopped/error, or a
   task_state set), evacuate, wait until it has landed on another host, give it
   back the state it had **at the start of this incident** (stopped stays
   stopped, paused/suspended are paused/suspended again, ERROR goes back to
   ERROR unless ``recover_error``), unlock;
6. stop submitting when the host shows signs of life mid-way, and report per instance.

The state of each instance at the start of the incident is kept in
``<state_dir>/compute-node/<host>.json`` before anything is reset, so a second run
after a partial failure gives back the right states. It belongs to **one
incident**: it is dropped when a run has moved every instance, when the host is
seen back in service (not forced down), and by ``--restore``; and it is used
only for an instance this incident touched that Nova now shows in ERROR (the
error we or the failed evacuation caused). Whatever else Nova reports now wins.

``--restore`` is the way back after the repair: (run ``restart_command``),
wait until nova-compute reports again and has cleaned up its evacuated
instances (no ``done`` evacuation records left: Nova refuses the un-force
before), un-force, wait until Nova reports the service up, then enable (enabling
earlier leaves the ``COMPUTE_STATUS_DISABLED`` trait on its resource provider).
"""
import fnmatch
import os
import re
import time
import uuid

from autoremedy import config as configmod
from autoremedy import statefile
from autoremedy.contract.guard import Refused
from autoremedy.contract.noharm import Invariant, Reach
from autoremedy.contract.remediation import Noop, Remediation, RemediationError, Step
from autoremedy.contract.result import Result, Status

# The evacuation window and the way back are parts of EvacuateHost in modules of their
# own; their names are re-exported here (EVACUABLE, REBUILDING, Placer, HostWatch, ...).
from autoremedy.remediations._evacuation_restore import WayBack
from autoremedy.remediations._evacuation_window import (  # noqa: F401
    EVACUABLE, LANDS, REBUILDING, EvacuationFailed, EvacuationWindow, HostWatch, Placer, report_line,
    resources, summarise)

DEAD_KEYWORD = "dead"
HOSTNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
CLAIM = re.compile(r"; run (?P<run>[0-9a-f]+) on (?P<node>\S+) since (?P<since>\d+)")


def _iso(ts=None):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def live_claim(reason, ttl, now=None):
    """(run id, node, age s) of a claim in a disabled_reason still within ``ttl``, else None."""
    m = CLAIM.search(reason or "")
    if not m:
        return None
    age = (now or time.time()) - int(m.group("since"))
    return (m.group("run"), m.group("node"), age) if age < ttl else None


class EvacuateHost(EvacuationWindow, WayBack, Remediation):
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
        "recover_error": bool,
        "lock_instances": bool,
        "shared_storage": bool,
        "capacity": {"check": bool, "cpu_allocation_ratio": configmod.Number,
                     "ram_allocation_ratio": configmod.Number},
        "claim_ttl": configmod.Duration,
        "claim_settle": configmod.Duration,
        "restart_command": configmod.List(str),
        "restore_timeout": configmod.Duration,
    }

    def __init__(self, config, runner=None, audit=None, conn=None, connect=None, restore=False):
        from autoremedy.contract import execute
        super().__init__(config, runner or execute.run, audit)
        self._conn = conn
        self._connect = connect
        self.restore = restore
        self._host_state = None
        self._reports = []
        self._planned = []          # the servers the plan moves, with their intent
        self._intents = {}          # id -> state at the start of the incident
        self._landings = []         # seconds from an evacuate call to the reading that saw it land
        self._run_id = uuid.uuid4().hex[:12]
        self._view = _View(self)
        self.osconf()     # validate the openstack: section now (`autoremedy config check`)

    # -- settings ----------------------------------------------------------------------
    def opt(self, key, default):
        value = self.settings.get(key)
        return default if value is None else value

    @property
    def concurrency(self):
        return max(1, int(self.opt("concurrency", 3)))

    def osconf(self):
        from autoremedy.clients.cloud import settings
        return settings(self.config)

    def conn(self):
        if self._conn is None:
            from autoremedy.clients.cloud import connect
            self._conn = (self._connect or connect)(self.config, concurrency=self.concurrency)
        return self._conn

    def listed(self, name):
        return bool(name and HOSTNAME.match(name)) and (
            name in (self.settings.get("targets") or {})
            or any(fnmatch.fnmatchcase(name, p) for p in self.settings.get("host_patterns") or []))

    def resolve(self, name):
        if name == DEAD_KEYWORD and not self.restore:
            return self._first_dead()
        if not name or not HOSTNAME.match(name):
            raise Refused("allowlist", f"{name!r} is not a compute host name")
        if self.listed(name):
            return name
        raise Refused("allowlist", f"{name!r} is not in remediations.compute-node.targets "
                      "or host_patterns")

    def _first_dead(self):
        """``dead``: the first allowlisted host the check confirms dead, for triggers
        that cannot name the host (a cloud-wide Sensu proxy check). Each run takes one
        host through every guard; the next event takes the next."""
        from autoremedy.checks import compute_node as cn
        from autoremedy.clients.cloud import CloudError
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
        parser.add_argument("--restore", action="store_true",
                            help="the way back after the repair: wait for nova-compute to report, "
                                 "un-force, wait until up, enable")

    def target_from_args(self, args):
        self.restore = bool(getattr(args, "restore", False))
        return args.target

    # -- the incident's memory -------------------------------------------------------------
    def state_path(self, host):
        return os.path.join(self.config.state_dir, "compute-node", f"{host}.json")

    def incident(self, host):
        """{id: {"state", "touched"}} remembered for the host's current incident."""
        data = statefile.load(self.state_path(host), {}) or {}
        return dict((data.get("incident") or {}).get("originals") or {})

    def close_incident(self, host, why):
        path = self.state_path(host)
        if not os.path.exists(path):
            return
        with statefile.updating(path) as state:
            if state.pop("incident", None) is not None:
                state.setdefault("closed", []).append({"ts": time.time(), "why": why})
                state["closed"] = state["closed"][-10:]

    def _remember(self, host, originals):
        with statefile.updating(self.state_path(host)) as state:
            inc = state.setdefault("incident", {"opened": time.time(), "originals": {}})
            inc["originals"].update(originals)
            inc["run"] = self._run_id

    def _touch(self, host, server_id):
        with statefile.updating(self.state_path(host)) as state:
            rec = state.setdefault("incident", {"opened": time.time(), "originals": {}}) \
                .setdefault("originals", {}).setdefault(server_id, {})
            rec["touched"] = True

    @staticmethod
    def original_of(server, remembered):
        """The state to give the instance back: what Nova reports now, except an
        ERROR (or an evacuation in flight) this incident caused by touching it."""
        rec = remembered.get(server.id) or {}
        caused = server.vm_state == "error" or server.task_state in REBUILDING
        if rec.get("touched") and rec.get("state") and caused:
            return rec["state"]
        if server.task_state in REBUILDING:
            return "active"
        return server.vm_state

    def lands(self, original):
        """The status the instance must end in elsewhere."""
        if original == "error" and self.opt("recover_error", False):
            return "ACTIVE"
        return LANDS.get(original, "ACTIVE")

    # -- plan ------------------------------------------------------------------------------
    def plan(self, host):
        if self.restore:
            return self._plan_restore(host)
        from autoremedy.checks import compute_node as cn
        conn = self.conn()
        osconf = self.osconf()
        services = cn.compute_services(conn)
        mine = [s for s in services if s.host == host]
        if not mine:
            raise Refused("precondition", f"Nova has no nova-compute service on {host}")
        state = cn.HostState(host, mine[0])
        if not mine[0].is_forced_down:
            # Back in service since any earlier incident: what was remembered then
            # is not this incident's (the stale-state defect of issue 10).
            self.close_incident(host, "host seen in service (not forced down)")
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
        service = state.service
        claim = live_claim(service.disabled_reason, float(self.opt("claim_ttl", 60.0)))
        if claim:
            raise Refused("claim", f"another autoremedy run ({claim[0]} on {claim[1]}) is evacuating "
                          f"{host} (claim refreshed {claim[2]:.0f}s ago): not acting twice")
        if state.verdict == cn.UNREACHABLE_ON:
            if not self.opt("fence", False):
                raise Refused("fencing", f"{host} is unreachable but powered on: set fence: true "
                              "to power it off first, or a human decides")
            steps.append(self._fence_step(host, osconf))
        if not service.is_forced_down:
            steps.append(Step(f"force nova-compute on {host} down",
                              action=lambda: self._force_down(service)))
        servers = cn.instances_on(conn, host)
        if self.opt("skip_error", False):
            servers = [s for s in servers if s.vm_state != "error"]
        fenced = (service.status == "disabled"
                  and (service.disabled_reason or "").startswith(cn.DISABLED_REASON_PREFIX))
        if servers:
            steps.append(Step(f"disable nova-compute on {host}, the reason claiming it for this run",
                              action=lambda: self._claim(service)))
        elif not fenced:
            steps.append(Step(f"disable nova-compute on {host} with a reason",
                              action=lambda: self._release(service, "fenced, no instance to evacuate")
                              or "disabled"))
        if servers:
            reserved = self._reserved(services, host)
            self._check_capacity(conn, servers, services, host, reserved)
            for svc in reserved:
                if svc.status != "enabled":
                    steps.append(Step(f"enable reserved host {svc.host}",
                                      action=lambda svc=svc: self._enable(svc)))
            remembered = self.incident(host)
            self._planned = servers
            self._intents = {s.id: self.original_of(s, remembered) for s in servers}
            details = [f"{s.id} {s.name}: {s.vm_state}/{s.task_state or '-'} -> "
                       f"{self._intent(s, self._intents[s.id])}" for s in servers]
            steps.append(Step(f"evacuate {len(servers)} instance(s) from {host}, "
                              f"{self.concurrency} at a time", details=details,
                              action=lambda: self._evacuate_all(host, servers, reserved)))
        return steps

    def _intent(self, server, original):
        words = []
        if server.task_state in REBUILDING:
            words.append("wait for the evacuation in progress")
        else:
            if server.vm_state not in EVACUABLE or server.task_state is not None:
                words.append("reset-state error")
            words.append("evacuate")
        want = self.lands(original)
        if original == "building":
            words.append("lands ACTIVE (it never finished building: nothing to give back)")
        elif original == "error" and want == "ACTIVE":
            words.append("lands ACTIVE (recover_error)")
        elif original not in LANDS:
            words.append(f"lands ACTIVE ({original} cannot be given back)")
        elif original != "active":
            words.append({"stopped": "keep stopped", "error": "reset to error",
                          "paused": "pause again", "suspended": "suspend again"}[original])
        if original != server.vm_state:
            words.append(f"was {original} at the start of this incident")
        return ", ".join(words)

    def _fence_step(self, host, osconf):
        from autoremedy.checks import compute_node as cn
        from autoremedy.clients.cloud import host_settings
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
        from autoremedy.clients.cloud import guarded
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
    def _force_down(self, service, forced=True):
        from autoremedy.clients.cloud import guarded
        with guarded(f"{'forcing' if forced else 'un-forcing'} {service.host} "
                     f"{'down' if forced else '(forced_down=false)'}"):
            self.conn().compute.update_service_forced_down(service, service.host, "nova-compute", forced)
        return "forced down" if forced else "no longer forced down"

    def _disable(self, service, reason):
        from autoremedy.clients.cloud import guarded
        # By id, not the Service object: the SDK sends only the attributes that
        # differ from the object's, and Nova answers 400 to a disabled_reason
        # sent without status=disabled (a renewed claim would be refused).
        with guarded(f"disabling {service.host}"):
            self.conn().compute.disable_service(service.id, service.host, "nova-compute",
                                                disabled_reason=reason)

    def _claim_reason(self):
        from autoremedy.checks.compute_node import DISABLED_REASON_PREFIX
        return (f"{DISABLED_REASON_PREFIX}; run {self._run_id} on {self.config.hostname[:60]} "
                f"since {int(time.time())}")

    def _service_now(self, host):
        from autoremedy.checks import compute_node as cn
        mine = [s for s in cn.compute_services(self.conn()) if s.host == host]
        if not mine:
            raise RemediationError(f"Nova no longer lists nova-compute on {host}")
        return mine[0]

    def _claim(self, service):
        """Disable with a reason naming this run, then read it back after a settle
        time: of two runs that claimed at once only the last writer goes on."""
        ttl = float(self.opt("claim_ttl", 60.0))
        now = self._service_now(service.host)
        other = live_claim(now.disabled_reason, ttl)
        if other and other[0] != self._run_id:
            raise Noop(f"another autoremedy run ({other[0]} on {other[1]}) is evacuating "
                       f"{service.host}: nothing left for this one to do")
        self._disable(service, self._claim_reason())
        time.sleep(float(self.opt("claim_settle", 2.0)))
        now = self._service_now(service.host)
        held = CLAIM.search(now.disabled_reason or "")
        if not held or held.group("run") != self._run_id:
            raise Noop(f"another autoremedy run claimed {service.host} at the same time "
                       f"({now.disabled_reason!r}): it evacuates, this one does nothing more")
        return f"disabled, claimed by run {self._run_id}"

    def _release(self, service, words):
        """Replace the claim with a record of how the run ended (no longer a claim);
        None when written, else why not."""
        from autoremedy.checks.compute_node import DISABLED_REASON_PREFIX
        try:
            self._disable(service, f"{DISABLED_REASON_PREFIX}; {words} by autoremedy run "
                                   f"{self._run_id} at {_iso()}"[:255])
        except Exception as exc:  # the claim then expires after claim_ttl
            return f"claim not released ({exc}); it expires after {self.opt('claim_ttl', 60.0):g}s"
        return None

    def _enable(self, service):
        from autoremedy.clients.cloud import guarded
        with guarded(f"enabling {service.host}"):
            self.conn().compute.enable_service(service, service.host, "nova-compute")
        return "enabled"

    def run(self, host, plan):
        self._reports = []
        notes = []
        try:
            for step in plan:
                notes.append(self.run_step(step))
        except Noop:
            raise
        except Exception as exc:
            # Partial failure is visible: every step already done, with the failure.
            done = "; ".join(notes) if notes else "none"
            raise RemediationError(f"{exc} [steps done before: {done}]") from None
        if self.restore:
            self.close_incident(host, "restored")
        return notes + [report_line(r) for r in self._reports]

    # -- verify ----------------------------------------------------------------------------
    def verify(self, host):
        if self.restore:
            service = self._service_now(host)
            if service.state == "up" and service.status == "enabled" and not service.is_forced_down:
                return Result(self.name, f"{host} back in service (up, enabled)", status=Status.OK)
            return Result(self.name, f"{host} not back: {service.state}/{service.status}, "
                          f"forced_down={service.is_forced_down}", status=Status.CRITICAL)
        from autoremedy.checks import compute_node as cn
        conn = self.conn()
        servers = cn.instances_on(conn, host)
        if self.opt("skip_error", False):
            servers = [s for s in servers if s.vm_state != "error"]
        service = self._service_now(host)
        problems = []
        if servers:
            problems.append(f"{len(servers)} instance(s) still on {host}")
        if not service.is_forced_down or service.status != "disabled":
            problems.append(f"service not fenced ({service.status}, forced_down={service.is_forced_down})")
        if problems:
            return Result(self.name, "; ".join(problems), status=Status.CRITICAL)
        return Result(self.name, f"{host} fenced and empty", status=Status.OK)

    # -- no harm ---------------------------------------------------------------------------
    def reach(self, host, plan):
        """Instances: the ones the plan moves, each held to landing elsewhere in
        its state at the start of this incident; every other instance of the cloud
        must keep its host, status and power state. Services: the host's (forced
        down, disabled) and the reserved hosts the plan enables."""
        names = [s.id for s in self._planned] if not self.restore else []
        expect = {}
        for s in ([] if self.restore else self._planned):
            want = self.lands(self._intents.get(s.id, s.vm_state))
            expect[s.id] = (lambda before, after, want=want:
                            after is not None and after["host"] not in (host, None)
                            and after["status"] == want and after["task_state"] is None)
        services = [host] + [s.description.split()[-1] for s in plan
                             if s.description.startswith("enable reserved host ")]
        return [Reach("instance", names, read=self._view.instances, expect=expect,
                      how="GET /servers/detail?all_tenants=True (one listing): host, status, "
                          "vm_state, task_state, power_state"),
                Reach("service", services, read=self._view.services,
                      how="GET /os-services?binary=nova-compute: status, forced_down")]

    def invariants(self, host, plan):
        return [Invariant.not_fewer("instances in the cloud", "the same server listing",
                                    lambda: len(self._view.instances(fresh=False))),
                Invariant.not_fewer(f"nova-compute services up, {host} aside",
                                    "the same services listing",
                                    lambda: sum(1 for h, s in self._view.services(fresh=False, state=True).items()
                                                if h != host and s["state"] == "up"))]


class _View:
    """One listing per reading: the reach reads fresh, the invariants right after
    reuse it (perform reads every reach, then every invariant)."""

    def __init__(self, remediation):
        self.remediation = remediation
        self._servers = self._services = None

    def instances(self, fresh=True):
        if fresh or self._servers is None:
            from autoremedy.clients.cloud import guarded
            with guarded("listing every instance"):
                rows = list(self.remediation.conn().compute.servers(details=True, all_projects=True))
            self._servers = {s.id: {"host": s.compute_host, "status": s.status, "vm_state": s.vm_state,
                                    "task_state": s.task_state, "power_state": s.power_state}
                             for s in rows}
        return self._servers

    def services(self, fresh=True, state=False):
        if fresh or self._services is None:
            from autoremedy.checks import compute_node as cn
            self._services = {s.host: {"status": s.status, "forced_down": bool(s.is_forced_down),
                                       "state": s.state}
                              for s in cn.compute_services(self.remediation.conn())}
        if state:
            return self._services
        return {h: {"status": v["status"], "forced_down": v["forced_down"]} for h, v in self._services.items()}


REMEDIATION = EvacuateHost
