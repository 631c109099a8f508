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
import threading
import time
import uuid

from autoremedy import config as configmod
from autoremedy import statefile
from autoremedy.guard import Refused
from autoremedy.noharm import Invariant, Reach
from autoremedy.remediation import Noop, Remediation, RemediationError, Step
from autoremedy.result import Result, Status

DEAD_KEYWORD = "dead"
HOSTNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
EVACUABLE = ("active", "stopped", "error")
REBUILDING = ("rebuilding", "rebuild_block_device_mapping", "rebuild_spawning")
# The status an instance must end in, by its state at the start of the incident.
LANDS = {"active": "ACTIVE", "stopped": "SHUTOFF", "paused": "PAUSED", "suspended": "SUSPENDED",
         "error": "ERROR"}
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
        from autoremedy import execute
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
        from autoremedy.cloud import settings
        return settings(self.config)

    def conn(self):
        if self._conn is None:
            from autoremedy.cloud import connect
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
    def _force_down(self, service, forced=True):
        from autoremedy.cloud import guarded
        with guarded(f"{'forcing' if forced else 'un-forcing'} {service.host} "
                     f"{'down' if forced else '(forced_down=false)'}"):
            self.conn().compute.update_service_forced_down(service, service.host, "nova-compute", forced)
        return "forced down" if forced else "no longer forced down"

    def _disable(self, service, reason):
        from autoremedy.cloud import guarded
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
        from autoremedy.cloud import guarded
        with guarded(f"enabling {service.host}"):
            self.conn().compute.enable_service(service, service.host, "nova-compute")
        return "enabled"

    def _evacuate_all(self, host, servers, reserved):
        from concurrent.futures import ThreadPoolExecutor
        from autoremedy.cloud import CloudError, guarded
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
        return notes + [_report_line(r) for r in self._reports]

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
            from autoremedy.cloud import describe
            report["detail"] = f"{call}: {describe(exc)}"
        finally:
            if locked_here:
                try:
                    compute.unlock_server(server)
                except Exception as exc:
                    from autoremedy.cloud import describe
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
        while True:
            server = compute.get_server(server_id)
            if server.task_state is None:
                if server.compute_host != host and server.vm_state in ("active", "stopped"):
                    self._landings.append(time.monotonic() - started)
                    return server
                if server.compute_host == host and server.vm_state == "error":
                    fault = (getattr(server, "fault", None) or {}).get("message")
                    raise EvacuationFailed("Nova left it in ERROR on the dead host"
                                           + (f": {fault}" if fault else ""))
            if time.monotonic() >= deadline:
                raise EvacuationFailed(f"still {server.vm_state}/{server.task_state} on "
                                       f"{server.compute_host} after {self.opt('evacuate_timeout', 300.0):g}s")
            time.sleep(interval)

    def _first_look(self, interval):
        """When to read an instance first after its evacuate call: once this run's
        earlier evacuations tell how long one takes, at three quarters of their median
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

    # -- the way back --------------------------------------------------------------------
    def _plan_restore(self, host):
        from autoremedy.checks import compute_node as cn
        from autoremedy.cloud import host_settings
        services = cn.compute_services(self.conn())
        mine = [s for s in services if s.host == host]
        if not mine:
            raise Refused("precondition", f"Nova has no nova-compute service on {host}")
        service = mine[0]
        ours = (service.disabled_reason or "").startswith(cn.DISABLED_REASON_PREFIX)
        if not service.is_forced_down and service.status == "enabled":
            self.close_incident(host, "host seen in service (not forced down)")
            return []
        if service.status == "disabled" and not ours:
            raise Refused("precondition", f"nova-compute on {host} was disabled by someone else "
                          f"({service.disabled_reason or 'no reason'}): not ours to enable")
        claim = live_claim(service.disabled_reason, float(self.opt("claim_ttl", 60.0)))
        if claim:
            raise Refused("claim", f"autoremedy run {claim[0]} on {claim[1]} is still evacuating {host}")
        hs = host_settings(self.osconf(), host)
        alive, words = cn.reachability(hs["address"], hs["probe"], self.runner)
        if alive is False:
            raise Refused("precondition", f"{host} does not answer ({', '.join(words)}): repair it first")
        self._host_state = cn.HostState(host, service)
        baseline = service.updated_at
        steps = []
        command = [a.replace("{host}", host) for a in self.opt("restart_command", [])]
        if command:
            steps.append(Step(f"restart nova-compute on {host}", argv=command, timeout=120))
        steps.append(Step(f"wait until nova-compute on {host} reports again and has removed its "
                          "evacuated instances (no 'done' evacuation records left)",
                          action=lambda: self._wait_reporting(host, baseline)))
        if service.is_forced_down:
            steps.append(Step(f"un-force nova-compute on {host}",
                              action=lambda: self._force_down(service, forced=False)))
        steps.append(Step(f"wait until Nova reports nova-compute on {host} up",
                          action=lambda: self._wait_up(host)))
        if service.status == "disabled":
            steps.append(Step(f"enable nova-compute on {host}", action=lambda: self._enable(service)))
        return steps

    def _restore_deadline(self):
        return time.monotonic() + float(self.opt("restore_timeout", 300.0))

    def _wait_reporting(self, host, baseline):
        from autoremedy.cloud import guarded
        deadline = self._restore_deadline()
        while True:
            service = self._service_now(host)
            with guarded(f"listing the evacuation records of {host}"):
                left = [m for m in self.conn().compute.migrations(source_compute=host,
                                                                   migration_type="evacuation")
                        if m.source_compute == host and m.status == "done"]
            if service.updated_at != baseline and not left:
                return f"reporting (last report {service.updated_at}), no evacuation left to clean up"
            if time.monotonic() > deadline:
                raise RemediationError(
                    f"nova-compute on {host} " + ("has not reported since " + str(baseline)
                                                  if service.updated_at == baseline else
                                                  f"still has {len(left)} 'done' evacuation record(s)")
                    + f" after {self.opt('restore_timeout', 300.0):g}s: is it running?")
            time.sleep(float(self.opt("poll_interval", 2.0)))

    def _wait_up(self, host):
        deadline = self._restore_deadline()
        while True:
            service = self._service_now(host)
            if service.state == "up":
                return "up"
            if time.monotonic() > deadline:
                raise RemediationError(f"Nova still reports nova-compute on {host} {service.state}")
            time.sleep(float(self.opt("poll_interval", 2.0)))

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
            from autoremedy.cloud import guarded
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


def _report_line(r):
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
        from autoremedy.cloud import host_settings
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


REMEDIATION = EvacuateHost
