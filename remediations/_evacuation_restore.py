"""compute-node's way back (``--restore``): after the host is repaired, (run
``restart_command``), wait until nova-compute reports again and has removed its
evacuated instances, un-force, wait until Nova reports it up, then enable — in the
order real Nova needs (enabling before "up" leaves the ``COMPUTE_STATUS_DISABLED``
trait). Part of ``EvacuateHost`` (remediations/compute_node.py), split out for the
reader: no behaviour of its own."""
import time

from autoremedy.contract.guard import Refused
from autoremedy.contract.remediation import RemediationError, Step


class WayBack:
    """The ``--restore`` plan of ``EvacuateHost`` (a mixin)."""

    def _plan_restore(self, host):
        from autoremedy.checks import compute_node as cn
        from autoremedy.clients.cloud import host_settings
        from autoremedy.remediations.compute_node import live_claim
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
        from autoremedy.clients.cloud import guarded
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
