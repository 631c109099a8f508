"""OpenStack's database against reality on this compute node.

    $ autoremedy check openstack-consistency
    OPENSTACK-CONSISTENCY CRITICAL: 1 orphan domain (escalate); 1 instance ACTIVE in Nova but
    shut off here (auto: stop); 1 dead agent (auto: restart) | 'escalate'=1;;0;0 'auto'=2;0;;0 ...

Compares Nova's view of this host (its instances and their states, through the
API, ``compute_host=`` all projects) with libvirt's (``virsh -r list --all`` and
``--uuid``, read-only, through the subprocess boundary), and finds instances
stuck in a task state, instances in ERROR (with Nova's fault), Neutron agents
of this host that are not alive, ports DOWN for ACTIVE instances, and volumes
stuck ``detaching``. Every finding has a severity (docs/openstack.md states
each finding's rule):

- ``auto`` (WARNING): safe to repair, and proven so now;
- ``wait`` (WARNING): it looks wrong but an operation may still be in progress, or
  the host's nova-compute cannot receive a repair: "waiting on <host>'s compute",
  nothing is done;
- ``escalate`` (CRITICAL): only a human may resolve it (an instance running here
  while Nova places it elsewhere, a domain Nova does not know, a missing domain, a
  stuck task whose only reset is ERROR, an instance in ERROR, a stuck volume).

"Stuck" is proven, never assumed from age (checks/_openstack_inflight.py): the
host's nova-compute up and consuming its queue, the instance's last action
older than its task state's threshold with no event running, no migration in
progress. When the host's nova-compute is down the check is UNKNOWN: Nova's
record of its instances cannot be reconciled until it is back, and the
compute-node check owns that incident.

The host is this node's, from the configuration (``openstack.consistency.host``,
else the node's hostname, which is nova-compute's own default ``host``);
``--host`` may name it only where the configuration does not.

Configuration (``openstack.consistency``)::

    openstack:
      consistency:
        host: cmp1.example.com         # Nova's name for this host (default: hostname)
        stuck_after: 30m               # a task state older than this may be stuck ...
        thresholds: {image_uploading: 2h}   # ... per task state (built-in table below)
        virsh: [virsh, -r, -c, "qemu:///system"]
        network: true                  # survey Neutron agents and ports
        volumes: true                  # survey Cinder volumes stuck detaching
        rpc:                           # where nova-compute's queue compute.<host> is read
          api_url: http://rabbit1:15672
          user: autoremedy
          password_file: /etc/autoremedy/rabbitmq-monitor.pw
          vhost: /
        agent_units: {neutron-openvswitch-agent: neutron-openvswitch-agent}
        compute_unit: nova-compute
        restart_compute: []            # argv restarting nova-compute (default: systemctl restart <unit>)
"""
import re
import time

from autoremedy.contract.result import CheckError, Metric, Result, Status

MANIFEST = {
    "name": "openstack-consistency",
    "summary": "Nova's view against libvirt: the safe fixes on the compute node",
    "check": "autoremedy.checks.openstack_consistency:probe",
    "remediation": "autoremedy.remediations.openstack_consistency",
    "scope": "node",
    "thresholds": ("0", "0"),      # -w on automatable and waiting findings, -c on those to escalate
    "timeout": 60.0,
    "order": 40,
    "sensu": [
        # Node side of the OpenStack drift check; its target is this node's Nova host
        # name, which the handler's routes supply (hooks get no entity tokens).
        {"name": "autoremedy-openstack-consistency", "args": "", "subscriptions": ["compute"],
         "hooks": ["warning", "critical"]},
    ],
    "zabbix": {
        "items": [
            {"template": "autoremedy OpenStack consistency", "key": "autoremedy.openstack.consistency",
             "severity": "AVERAGE", "kind": "ZABBIX_PASSIVE",
             "description": "Nova's view of this host against libvirt, stuck tasks, dead agents"},
        ],
        "no_target": "the target is the node's own openstack.consistency.host (else its hostname), "
                     "from the node's configuration: the template does not guess it",
        "userparameters": [
            ("autoremedy.openstack.consistency",
             "/usr/bin/autoremedy check openstack-consistency --format zabbix --timeout 2.5"),
        ],
    },
    "stackstorm": {
        "order": 40,
        "description": "Nova vs libvirt drift: the safe fixes on the compute node, verify, notify or escalate.",
        "status": [1, 2],
        "check_args": "",
    },
}
NAME = MANIFEST["name"]

AUTO, WAIT, ESCALATE = "auto", "wait", "escalate"
RUNNING, SHUTOFF = ("running", "idle", "blocked", "in shutdown"), ("shut off", "crashed", "pmsuspended")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
RPC_DEFAULTS = {"api_url": None, "user": "guest", "password_file": None, "vhost": "/",
                "queue": "compute.{host}", "verify": True, "timeout": 5.0}


def add_arguments(parser):
    parser.add_argument("--host", help="Nova's name for this compute host, where "
                                       "openstack.consistency.host is not set (default: the hostname)")
    parser.add_argument("--stuck-after", metavar="DURATION",
                        help="a task state older than this may be stuck (default 30m; "
                             "openstack.consistency.thresholds per task state win)")
    parser.add_argument("--no-network", action="store_true", help="skip Neutron agents and ports")
    parser.add_argument("--no-volumes", action="store_true", help="skip Cinder volumes")


def settings(config):
    """The validated ``openstack.consistency:`` section over the defaults, with the
    RPC password read and ``host`` this node's name unless configured."""
    from autoremedy import config as configmod
    schema = {"host": str, "stuck_after": configmod.Duration, "virsh": configmod.List(str),
              "thresholds": configmod.Map(configmod.Duration),
              "network": bool, "volumes": bool,
              "rpc": {"api_url": str, "user": str, "password_file": str, "vhost": str,
                      "queue": str, "verify": (bool, str), "timeout": configmod.Duration},
              "agent_units": configmod.Map(str), "compute_unit": str,
              "restart_compute": configmod.List(str)}
    defaults = {"stuck_after": 1800.0, "virsh": ["virsh", "-r", "-c", "qemu:///system"],
                "thresholds": {}, "network": True, "volumes": True, "rpc": RPC_DEFAULTS,
                "agent_units": {}, "compute_unit": "nova-compute"}   # no host: see below
    out = configmod.section(config, "openstack.consistency", schema, defaults)
    out["rpc"]["password"] = _password(out["rpc"], config)
    out["host_configured"] = "host" in out
    out.setdefault("host", config.hostname)
    return out


def _password(rpc, config):
    """The management API password: its file, else "guest" for the guest user only."""
    from autoremedy import config as configmod
    if rpc.get("password_file"):
        try:
            with open(rpc["password_file"], encoding="utf-8") as handle:
                return handle.read().strip()
        except OSError as exc:
            raise configmod.ConfigError(f"{configmod.origin(config)}: openstack.consistency."
                                        f"rpc.password_file {rpc['password_file']}: "
                                        f"{exc.strerror}") from None
    return "guest" if rpc["user"] == "guest" else ""


class Finding:
    def __init__(self, kind, severity, subject, detail, action=None, evidence=None):
        self.kind, self.severity, self.subject = kind, severity, subject
        self.detail, self.action = detail, action
        self.evidence = evidence or {}

    def to_dict(self):
        return {"kind": self.kind, "severity": self.severity, "subject": self.subject,
                "detail": self.detail, "action": self.action, "evidence": self.evidence}


# --- libvirt's side ------------------------------------------------------------------

def domains(virsh, runner):
    """{uuid: {"name", "state"}} of every domain, from two read-only list calls (virsh
    accepts only one of --table/--name/--uuid) and ``domuuid`` for names not paired."""
    from autoremedy.contract import execute
    try:
        table = runner(virsh + ["list", "--all"], timeout=20)
        uuids = runner(virsh + ["list", "--all", "--uuid"], timeout=20)
    except execute.CommandError as exc:
        raise CheckError(f"cannot ask libvirt: {exc}") from None
    for done in (table, uuids):
        if done.returncode != 0:
            raise CheckError(f"virsh list: {done.brief() or 'exit ' + str(done.returncode)}")
    states = parse_table(table.stdout)
    known_uuids = [u.strip() for u in uuids.stdout.split() if UUID.match(u.strip())]
    return states, known_uuids


def parse_table(text):
    """{name: state} from ``virsh list --all``'s table (state may be two words)."""
    out = {}
    for line in text.splitlines():
        parts = line.split(None, 2)
        if len(parts) < 3 or parts[0] == "Id" or set(line.strip()) <= {"-"}:
            continue
        out[parts[1]] = parts[2].strip()
    return out


def domain_uuid(virsh, name, runner):
    from autoremedy.contract import execute
    try:
        done = runner(virsh + ["domuuid", name], timeout=10)
    except execute.CommandError as exc:
        raise CheckError(f"cannot ask libvirt: {exc}") from None
    text = done.stdout.strip() if done.returncode == 0 else ""
    return text if UUID.match(text) else None


# --- comparing ---------------------------------------------------------------------------

def _age(stamp, now):
    if not stamp:
        return None
    from datetime import datetime
    try:
        when = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        from datetime import timezone
        when = when.replace(tzinfo=timezone.utc)
    return now - when.timestamp()


def _unless_absent(read, notes, note):
    """``read()``, or [] and a note when the service is not in the catalog (a cloud
    without Cinder is not an UNKNOWN)."""
    from keystoneauth1 import exceptions as ksexc
    from openstack import exceptions as sdkexc
    try:
        return read()
    except (ksexc.EndpointNotFound, sdkexc.ServiceDisabledException):
        notes.append(note)
        return []


class Survey:
    """One reading of the host: findings, Nova's servers of the host, notes, the
    host's nova-compute (inflight.Compute) and its migrations in progress."""

    def __init__(self, found, servers, notes, compute, moving):
        self.found, self.servers, self.notes = found, servers, notes
        self.compute, self.moving = compute, moving


def survey(conn, conf, runner, network=True, volumes=True, now=None):
    """A Survey of ``conf['host']``."""
    from autoremedy.checks import _openstack_inflight as inflight
    from autoremedy.checks.compute_node import instances_on
    from autoremedy.clients.cloud import guarded
    now = time.time() if now is None else now
    host = conf["host"]
    compute = inflight.compute_service(conn, host)
    servers = instances_on(conn, host)
    by_id = {s.id: s for s in servers}
    by_name = {s.instance_name: s for s in servers if s.instance_name}
    states, uuids = domains(conf["virsh"], runner)
    found = []
    domain_by_uuid = {}
    for name, state in states.items():
        server = by_name.get(name)
        uuid = server.id if server is not None and server.id in uuids else domain_uuid(conf["virsh"], name, runner)
        if uuid:
            domain_by_uuid[uuid] = {"name": name, "state": state}
    moving = inflight.migrations(conn, host) if any(s.task_state for s in servers) else {}
    proof = _Proof(conn, compute, conf, moving, now)
    for server in servers:
        found.extend(_compare(server, domain_by_uuid.get(server.id), conf, now, proof))
    for uuid, dom in domain_by_uuid.items():
        if uuid in by_id:
            continue
        found.append(_stranger(conn, uuid, dom, host))
    if compute.state == "deaf":
        found.append(Finding("compute-deaf", ESCALATE, host, compute.why,
                             evidence={"compute": compute.to_dict()}))
    notes = []
    if network and conf.get("network", True):
        with guarded("listing network agents and DOWN ports"):
            found.extend(_unless_absent(lambda: _network(conn, host, servers), notes,
                                        "no network service in the catalog: agents and ports not checked"))
    else:
        notes.append("Neutron not surveyed (openstack.consistency.network: false or --no-network)")
    if volumes and conf.get("volumes", True):
        with guarded("listing detaching volumes"):
            stuck = _unless_absent(
                lambda: list(conn.block_storage.volumes(details=True, all_projects=True, status="detaching")),
                notes, "no block-storage service in the catalog: volumes not checked")
        for vol in stuck:
            mine = [a for a in (vol.attachments or []) if a.get("server_id") in by_id
                    or a.get("host_name") == host]
            age = _age(vol.updated_at, now)
            if mine and (age is None or age >= conf["stuck_after"]):
                found.append(Finding("volume-detaching", ESCALATE, vol.id,
                                     f"volume {vol.id} stuck detaching from {mine[0].get('server_id')}"
                                     f"{_for(age)}: a status reset while the backend still exports it "
                                     "lets a second VM attach it (force-detach is a human decision)",
                                     evidence={"attachments": mine}))
    else:
        notes.append("Cinder not surveyed (openstack.consistency.volumes: false or --no-volumes)")
    return Survey(found, servers, notes, compute, moving)


def _for(age):
    return f" for {age / 60:.0f} min" if age is not None else ""


class _Proof:
    """Whether a repair could reach the host's nova-compute, read once and only when a
    finding needs it (the RabbitMQ queue is one call)."""

    def __init__(self, conn, compute, conf, moving, now):
        self.conn, self.compute, self.conf, self.moving, self.now = conn, compute, conf, moving, now
        self._queue_read = False

    def compute_ready(self, queue_empty=True):
        """None when the host's nova-compute is up, consuming and (``queue_empty``) has
        nothing queued, else why not. A frozen or busy compute keeps its consumer while casts pile up
        behind it: a repair cast now would not be processed until they are (found on
        real Nova: an os-stop sent to a SIGSTOPped compute left the instance in
        powering-off)."""
        from autoremedy.checks import _openstack_inflight as inflight
        if not self._queue_read:
            inflight.read_queue(self.compute, self.conf["rpc"])
            self._queue_read = True
        if not self.compute.consuming:
            return self.compute.why
        if queue_empty and self.compute.messages:
            return f"{self.compute.messages} message(s) still queued for it"
        return None

    def last_action(self, server_id):
        from autoremedy.checks import _openstack_inflight as inflight
        return inflight.last_action(self.conn, server_id)


def _waiting(server, host, why, evidence, what):
    return Finding(what, WAIT, server.id, f"{server.name} ({server.id}) {evidence.pop('_looks')}: "
                   f"waiting on {host}'s compute ({why})", evidence=evidence)


def _compare(server, dom, conf, now, proof):
    from autoremedy.checks import _openstack_inflight as inflight
    sid, vm, task = server.id, server.vm_state, server.task_state
    host = conf["host"]
    evidence = {"nova": {"vm_state": vm, "task_state": task, "power_state": server.power_state,
                         "host": server.compute_host, "instance_name": server.instance_name,
                         "updated_at": server.updated_at},
                "libvirt": dom}
    if vm == "error":
        return [_error(server, evidence)]
    if task:
        return _task(server, dom, conf, now, proof, evidence, inflight)
    # Building, deleted, shelved instances may rightly have no domain.
    if vm in ("building", "deleted", "soft-delete", "shelved_offloaded"):
        return []
    if dom is None:
        return [Finding("missing-domain", ESCALATE, sid,
                        f"{server.name} ({sid}) is {vm} in Nova on this host but libvirt has no domain",
                        evidence=evidence)]
    if vm == "active" and dom["state"] in SHUTOFF:
        not_ready = proof.compute_ready()
        evidence["compute"] = proof.compute.to_dict()
        if not_ready:
            evidence["_looks"] = f"is ACTIVE in Nova but {dom['state']} here"
            return [_waiting(server, host, not_ready + "; an os-stop would not be processed now",
                             evidence, "power-mismatch")]
        return [Finding("power-mismatch", AUTO, sid,
                        f"{server.name} ({sid}) ACTIVE in Nova but {dom['state']} here", "stop", evidence)]
    if vm == "stopped" and dom["state"] in RUNNING:
        return [Finding("power-mismatch", ESCALATE, sid,
                        f"{server.name} ({sid}) SHUTOFF in Nova but {dom['state']} here (starting it "
                        "would hard-reboot it; Nova's own sync would stop it: a human decides)",
                        evidence=evidence)]
    return []


def _error(server, evidence):
    """An instance in ERROR: reported with Nova's fault, never repaired here."""
    fault = server.fault or {}
    evidence["fault"] = {k: fault.get(k) for k in ("code", "message", "created")} if fault else None
    said = (f"fault {fault.get('code')}: {fault.get('message')}" if fault
            else "no fault recorded")
    return Finding("error-state", ESCALATE, server.id,
                   f"{server.name} ({server.id}) is in ERROR ({said}): a human decides", evidence=evidence)


def _task(server, dom, conf, now, proof, evidence, inflight):
    """A task state: nothing while it is young; "waiting" until stuck is proven; then
    the one repair that cannot lose an operation or land in ERROR, or escalate."""
    sid, vm, task, host = server.id, server.vm_state, server.task_state, conf["host"]
    threshold = inflight.threshold_for(task, conf)
    evidence["threshold_s"] = threshold
    touched = _age(server.updated_at, now)
    if touched is not None and touched < threshold:
        return []                      # touched recently: not even a candidate
    looks = f"is {vm}/{task}{_for(touched)}"
    # The queue is looked at last: a migration or a running event says more.
    not_ready = proof.compute_ready(queue_empty=False)
    evidence["compute"] = proof.compute.to_dict()
    if not_ready:
        evidence["_looks"] = looks
        return [_waiting(server, host, not_ready, evidence, "stuck-task")]
    if sid in proof.moving:
        evidence["_looks"] = looks
        return [_waiting(server, host, proof.moving[sid] + " in progress", evidence, "stuck-task")]
    last = proof.last_action(sid)
    evidence["last_action"] = last.to_dict() if last else None
    if last is not None and last.running:
        evidence["_looks"] = looks
        return [_waiting(server, host, f"event {last.running} of its last action {last.action} "
                                       "is still running", evidence, "stuck-task")]
    age = _age(last.when, now) if last is not None else touched
    if age is not None and age < threshold:
        return []                      # its last action is recent: still in progress
    not_ready = proof.compute_ready()
    if not_ready:
        evidence["_looks"] = looks
        return [_waiting(server, host, not_ready, evidence, "stuck-task")]
    what = (f"{server.name} ({sid}) stuck in {vm}/{task}: last action "
            f"{last.action if last else '(none recorded)'}{_for(age)}, over its {threshold / 60:.0f} min "
            f"threshold; {host}'s compute up and consuming, nothing queued, no migration")
    if task == "deleting":
        return [Finding("stuck-task", AUTO, sid, what, "restart-compute", evidence)]
    if vm == "active" and dom and dom["state"] in RUNNING:
        return [Finding("stuck-task", AUTO, sid, what, "reset-active", evidence)]
    where = f"its domain is {dom['state']}" if dom else "it has no domain here"
    return [Finding("stuck-task", ESCALATE, sid,
                    f"{what}; {where}, so the only reset is to ERROR: not a repair, a human decides",
                    evidence=evidence)]


def _stranger(conn, uuid, dom, host):
    from openstack import exceptions as sdkexc
    from autoremedy.clients.cloud import guarded
    with guarded(f"looking up domain {uuid}"):
        try:
            server = conn.compute.get_server(uuid)
        except sdkexc.NotFoundException:
            server = None
    if server is None:
        return Finding("orphan-domain", ESCALATE, uuid,
                       f"domain {dom['name']} ({uuid}, {dom['state']}) is unknown to Nova",
                       evidence={"libvirt": dom})
    evidence = {"libvirt": dom, "nova": {"host": server.compute_host, "vm_state": server.vm_state}}
    if server.compute_host != host:
        copies = "two copies may be running" if dom["state"] in RUNNING else "a stale copy"
        return Finding("elsewhere", ESCALATE, uuid,
                       f"{server.name} ({uuid}) is {dom['state']} here but Nova places it on "
                       f"{server.compute_host}: {copies} (after an evacuation, restarting nova-compute "
                       "here cleans it; otherwise a human picks the copy to keep)", evidence=evidence)
    return Finding("unlisted", ESCALATE, uuid, f"{uuid} on this host is missing from Nova's host listing",
                   evidence=evidence)


def _network(conn, host, servers):
    out = []
    agents = list(conn.network.agents(host=host))
    for agent in agents:
        if agent.is_alive is False and agent.is_admin_state_up is not False:
            out.append(Finding("dead-agent", AUTO, agent.id,
                               f"{agent.binary} ({agent.agent_type}) on {host} is not alive "
                               f"(last heartbeat {agent.last_heartbeat_at})", "restart-agent",
                               {"binary": agent.binary}))
    active = {s.id for s in servers if s.vm_state == "active"}
    ports = list(conn.network.ports(status="DOWN", **{"binding:host_id": host}))
    for port in ports:
        if port.device_id in active and (port.device_owner or "").startswith("compute:"):
            out.append(Finding("port-down", ESCALATE, port.id,
                               f"port {port.id} of ACTIVE instance {port.device_id} is DOWN",
                               evidence={"device_id": port.device_id, "vif_type": port.binding_vif_type}))
    return out


# --- the check -------------------------------------------------------------------------------

def probe(config, args, runner=None, conn=None):
    """The check on the seam (autoremedy/contract/checkrun.py): ``config`` is the caller's
    (a Config, or a Deferred one read here on first use)."""
    from autoremedy.contract import execute
    from autoremedy.contract import units
    from autoremedy.clients.cloud import CloudError, connect
    from autoremedy.config import ConfigError
    from autoremedy.lazyconfig import loaded
    try:
        config = loaded(config)
        conf = settings(config)
        if args.host and args.host != conf["host"]:
            if conf["host_configured"]:
                raise CheckError(f"--host {args.host} is not this node's Nova host {conf['host']} "
                                 "(openstack.consistency.host): libvirt here shows this node only")
            conf["host"] = args.host
        if args.stuck_after:
            conf["stuck_after"] = units.duration(args.stuck_after)
        conn = conn or connect(config)
        seen = survey(conn, conf, runner or execute.run, network=not args.no_network,
                      volumes=not args.no_volumes)
    except (ConfigError, CloudError, ValueError) as exc:
        raise CheckError(str(exc)) from None
    return judge(seen, conf["host"], args)


def check(args, runner=None, conn=None):
    """The check outside the seam (tests, benches): the configuration is
    ``--config``'s or $AUTOREMEDY_CONFIG's."""
    from autoremedy.lazyconfig import Deferred
    return probe(Deferred(getattr(args, "config", None)), args, runner, conn)


def judge(seen, host, args):
    found, servers, notes = seen.found, seen.servers, seen.notes
    auto = [f for f in found if f.severity == AUTO]
    wait = [f for f in found if f.severity == WAIT]
    human = [f for f in found if f.severity == ESCALATE]
    metrics = [Metric("escalate", len(human), "", None, args.critical, min=0),
               Metric("auto", len(auto), "", args.warning, None, min=0),
               Metric("waiting", len(wait), "", args.warning, None, min=0),
               Metric("error", sum(1 for f in found if f.kind == "error-state"), "", min=0),
               Metric("instances", len(servers), "", min=0)]
    kinds = sorted({f.kind for f in found})
    for kind in kinds:
        metrics.append(Metric(kind, sum(1 for f in found if f.kind == kind), "", min=0))
    shown = human + auto + wait
    tags = {AUTO: lambda f: f" (auto: {f.action})", WAIT: lambda f: " (wait)",
            ESCALATE: lambda f: " (escalate)"}
    details = [f"{f.severity}: {f.kind}: {f.detail}" for f in shown] + list(notes)
    data = {"host": host, "compute": seen.compute.to_dict(),
            "findings": [f.to_dict() for f in found]}
    if seen.compute.down:
        # Nova's record of a host whose compute is down cannot be reconciled: nothing it
        # is sent would be received. The compute-node check owns this incident.
        summary = (f"{seen.compute.why}: {len(servers)} instance(s) cannot be reconciled until it "
                   "is back (the compute-node check owns this incident); nothing is repaired here")
        return Result(NAME, summary, status=Status.UNKNOWN, metrics=metrics, details=details, data=data)
    if not found:
        summary = f"{host}: Nova and libvirt agree on {len(servers)} instance(s)"
    else:
        summary = "; ".join(f.detail + tags[f.severity](f) for f in shown)
    return Result(NAME, summary, metrics=metrics, details=details, data=data)
