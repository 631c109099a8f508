"""OpenStack's database against reality on this compute node.

    $ autoremedy check openstack-consistency --host cmp1
    OPENSTACK-CONSISTENCY CRITICAL: 1 orphan domain (escalate); 1 instance ACTIVE in Nova but
    shut off here (auto: stop); 1 dead agent (auto: restart) | 'escalate'=1;;0;0 'auto'=2;0;;0 ...

Compares Nova's view of this host (its instances and their states, through the
API, ``compute_host=`` all projects) with libvirt's (``virsh -r list --all`` and
``--uuid``, read-only, through the subprocess boundary), and finds instances
stuck in a task state longer than ``--stuck-after``, Neutron agents of this
host that are not alive, ports DOWN for ACTIVE instances, and volumes stuck
``detaching``. Every finding says whether it is safe to automate
(reference/openstack.md §4): ``auto`` findings are WARNING, findings only a
human may resolve (an instance running here while Nova places it elsewhere, a
domain Nova does not know, a domain missing, a stuck volume) are CRITICAL.

Configuration (``openstack.consistency``)::

    openstack:
      consistency:
        host: cmp1.example.com         # Nova's name for this host (default: hostname)
        stuck_after: 30m
        virsh: [virsh, -r, -c, "qemu:///system"]
        agent_units: {neutron-openvswitch-agent: neutron-openvswitch-agent}
        compute_unit: nova-compute
"""
import re
import time

from autoremedy.result import CheckError, Metric, Result

NAME = "openstack-consistency"
THRESHOLDS = ("0", "0")      # -w on automatable findings, -c on those to escalate
TIMEOUT = 60.0

AUTO, ESCALATE = "auto", "escalate"
RUNNING, SHUTOFF = ("running", "idle", "blocked", "in shutdown"), ("shut off", "crashed", "pmsuspended")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

def add_arguments(parser):
    parser.add_argument("--host", help="Nova's name for this compute host (default: "
                                       "openstack.consistency.host, else the hostname)")
    parser.add_argument("--stuck-after", metavar="DURATION",
                        help="a task state older than this is stuck (default 30m)")
    parser.add_argument("--no-network", action="store_true", help="skip Neutron agents and ports")
    parser.add_argument("--no-volumes", action="store_true", help="skip Cinder volumes")


def settings(config):
    from autoremedy import config as configmod
    schema = {"host": str, "stuck_after": configmod.Duration, "virsh": configmod.List(str),
              "agent_units": configmod.Map(str), "compute_unit": str,
              "restart_compute": configmod.List(str)}
    section = (config.get("openstack") or {}).get("consistency") or {}
    try:
        own = configmod.validate(section, schema, "openstack.consistency")
    except configmod.ConfigError as exc:
        raise configmod.ConfigError(f"{config.path or 'configuration'}: {exc}") from None
    out = {"stuck_after": 1800.0, "virsh": ["virsh", "-r", "-c", "qemu:///system"],
           "agent_units": {}, "compute_unit": "nova-compute"}
    out.update(own)
    out.setdefault("host", config.hostname)
    return out


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
    from autoremedy import execute
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
    from autoremedy import execute
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


def survey(conn, conf, runner, network=True, volumes=True, now=None):
    """(findings, Nova's servers of the host, notes) for ``conf['host']``."""
    from autoremedy.checks.compute_node import instances_on
    from autoremedy.cloud import guarded
    now = time.time() if now is None else now
    host = conf["host"]
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
    for server in servers:
        found.extend(_compare(server, domain_by_uuid.get(server.id), conf, now))
    for uuid, dom in domain_by_uuid.items():
        if uuid in by_id:
            continue
        found.append(_stranger(conn, uuid, dom, host))
    notes = []
    if network:
        with guarded("listing network agents and DOWN ports"):
            found.extend(_unless_absent(lambda: _network(conn, host, servers), notes,
                                        "no network service in the catalog: agents and ports not checked"))
    if volumes:
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
    return found, servers, notes


def _for(age):
    return f" for {age / 60:.0f} min" if age is not None else ""


def _compare(server, dom, conf, now):
    out = []
    sid, vm, task = server.id, server.vm_state, server.task_state
    age = _age(server.updated_at, now)
    evidence = {"nova": {"vm_state": vm, "task_state": task, "power_state": server.power_state,
                         "host": server.compute_host, "instance_name": server.instance_name},
                "libvirt": dom}
    if task and (age is None or age >= conf["stuck_after"]):
        if task == "deleting":
            action = "restart-compute"
        elif vm == "building":
            action = "reset-error"
        else:
            action = "reset-active" if dom and dom["state"] in RUNNING else "reset-error"
        out.append(Finding("stuck-task", AUTO, sid, f"{server.name} ({sid}) stuck in {vm}/{task}{_for(age)}",
                           action, evidence))
        return out
    # Building, deleted, shelved or failed instances may rightly have no domain.
    if task or vm in ("building", "deleted", "soft-delete", "shelved_offloaded", "error"):
        return out
    if dom is None:
        out.append(Finding("missing-domain", ESCALATE, sid,
                           f"{server.name} ({sid}) is {vm} in Nova on this host but libvirt has no domain",
                           evidence=evidence))
    elif vm == "active" and dom["state"] in SHUTOFF:
        out.append(Finding("power-mismatch", AUTO, sid,
                           f"{server.name} ({sid}) ACTIVE in Nova but {dom['state']} here", "stop", evidence))
    elif vm == "stopped" and dom["state"] in RUNNING:
        out.append(Finding("power-mismatch", ESCALATE, sid,
                           f"{server.name} ({sid}) SHUTOFF in Nova but {dom['state']} here (starting it "
                           "would hard-reboot it; Nova's own sync would stop it: a human decides)",
                           evidence=evidence))
    return out


def _stranger(conn, uuid, dom, host):
    from openstack import exceptions as sdkexc
    from autoremedy.cloud import guarded
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

def check(args, runner=None, conn=None):
    from autoremedy import execute
    from autoremedy import units
    from autoremedy.cloud import CloudError, connect
    from autoremedy.config import Config, ConfigError
    try:
        config = Config.load(args.config)
        conf = settings(config)
        if args.host:
            conf["host"] = args.host
        if args.stuck_after:
            conf["stuck_after"] = units.duration(args.stuck_after)
        conn = conn or connect(config)
        found, servers, notes = survey(conn, conf, runner or execute.run, network=not args.no_network,
                                       volumes=not args.no_volumes)
    except (ConfigError, CloudError, ValueError) as exc:
        raise CheckError(str(exc)) from None
    return judge(found, servers, conf["host"], args, notes)


def judge(found, servers, host, args, notes=()):
    auto = [f for f in found if f.severity == AUTO]
    human = [f for f in found if f.severity == ESCALATE]
    metrics = [Metric("escalate", len(human), "", None, args.critical, min=0),
               Metric("auto", len(auto), "", args.warning, None, min=0),
               Metric("instances", len(servers), "", min=0)]
    kinds = sorted({f.kind for f in found})
    for kind in kinds:
        metrics.append(Metric(kind, sum(1 for f in found if f.kind == kind), "", min=0))
    if not found:
        summary = f"{host}: Nova and libvirt agree on {len(servers)} instance(s)"
    else:
        summary = "; ".join(f.detail + (f" (auto: {f.action})" if f.severity == AUTO else " (escalate)")
                            for f in human + auto)
    details = [f"{f.severity}: {f.kind}: {f.detail}" for f in human + auto] + list(notes)
    data = {"host": host, "findings": [f.to_dict() for f in found]}
    return Result(NAME, summary, metrics=metrics, details=details, data=data)
