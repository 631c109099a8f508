"""Compute-node failure: nova-compute services down, combined with the host's own signs of life.

    $ autoremedy check compute-node
    COMPUTE-NODE CRITICAL: cmp3 dead (service down, unreachable, keepalive failing), 12 instances;
    1 of 10 computes down | 'dead'=1;;0;0 'down'=1;;;0 'instances_on_dead'=12;;;0 'down_share'=10%;;;0;100

API-scoped: run it centrally (Zabbix ExternalScripts, a Sensu proxy check), once
for the whole cloud. One ``os-services`` call finds the down services; only
for those hosts does it probe reachability (ICMP ping, TCP connect: a refused
connection is an answer, so the host is alive), ask the BMC for the power state
(``ipmitool chassis power status``, when configured) and read the host's Sensu
keepalive event. A host is **dead** when its service is down and it is either
powered off, or unreachable with no passing keepalive. A down service on a
host that still answers is a WARNING (restart nova-compute there; do not
evacuate). More computes down than ``openstack.compute.max_down_share`` is
reported as a probable partition: the evacuation refuses it.
"""
from autoremedy.contract.result import CheckError, Metric, Result, Status

MANIFEST = {
    "name": "compute-node",
    "summary": "a failed compute node: fenced evacuation, planned first and approved by a human",
    "check": "autoremedy.checks.compute_node:probe",
    "remediation": "autoremedy.remediations.compute_node",
    "scope": "api",
    "thresholds": (None, "0"),     # -c applies to the number of dead hosts
    "timeout": 30.0,
    "order": 90,
    "sensu": [
        # Target "dead": the first allowlisted compute host the check confirms dead.
        {"name": "autoremedy-compute-node", "args": "", "subscriptions": ["autoremedy-central"], "hooks": [],
         "proxy": "openstack", "target": "dead"},
    ],
    "zabbix": {
        "items": [
            # Dead computes raise their own problem (template.py compute_rule); the
            # check's CRITICAL is a problem of its own only when no compute is dead.
            {"template": "autoremedy compute-node failure", "key": "autoremedy_check[compute-node]",
             "severity": "DISASTER", "kind": "EXTERNAL",
             "description": "nova-compute services down and their hosts unreachable",
             "critical_and": "last(/autoremedy compute-node failure/autoremedy.compute.dead)=0",
             "critical_name": "autoremedy compute-node is CRITICAL without a dead compute "
                              "(probable partition) on {HOST.NAME}"},
        ],
        "no_target": "the check's own status covers every compute: the dead hosts are problems of the "
                     "per-host discovery (target: the host); what is left (a probable partition, a "
                     "compute whose host is alive) has no host to evacuate",
    },
    "stackstorm": {
        "order": 80,
        "description": "A failed compute node: fenced evacuation, planned first and approved by a human.",
        "status": 2,
        "action": {"ref": "autoremedy.evacuate_host",
                   "parameters": {"host": "{{ trigger.body.event.labels.autoremedy_target }}"}},
    },
}
NAME = MANIFEST["name"]

# The reason the remediation writes when it disables a service: a host disabled
# with it has been fenced by us (and the check says so instead of "dead").
DISABLED_REASON_PREFIX = "autoremedy: host failure"

DEAD, ALIVE, FENCED, UP = "dead", "service-down-host-alive", "fenced", "up"
UNREACHABLE_ON, UNCONFIRMED = "unreachable-powered-on", "unconfirmed"


def add_arguments(parser):
    parser.add_argument("--host", action="append", default=[], metavar="HOST",
                        help="only these compute hosts (repeatable; default: all)")
    parser.add_argument("--max-down-share", type=float, metavar="FRACTION",
                        help="more computes down than this is a partition (default from "
                             "openstack.compute.max_down_share, 0.34)")
    parser.add_argument("--no-probe", action="store_true",
                        help="do not probe hosts (report Nova's view only)")


# --- signs of life ----------------------------------------------------------------

def ping(address, timeout, runner):
    """True on an ICMP reply, False on none, None when ping itself failed."""
    from autoremedy.contract import execute
    wait = str(max(1, int(round(timeout))))
    try:
        done = runner(["ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", wait, address],
                      timeout=timeout * 3 + 5)
    except execute.CommandError:
        return None
    return {0: True, 1: False}.get(done.returncode)


def tcp(address, port, timeout, connect=None):
    """True when the host answered (connected, or refused with a RST: its kernel
    is alive), False on a timeout or no route."""
    import socket
    connect = connect or socket.create_connection
    try:
        connect((address, port), timeout=timeout).close()
        return True
    except ConnectionRefusedError:
        return True
    except (socket.timeout, TimeoutError, OSError):
        return False


def reachability(address, probe, runner, connect=None):
    """(reachable: True/False/None, evidence words). Any answer means alive."""
    answers, evidence = [], []
    if probe.get("icmp", True):
        got = ping(address, probe.get("timeout", 2.0), runner)
        answers.append(got)
        evidence.append({True: "ping answers", False: "no ping reply", None: "ping unavailable"}[got])
        if got:
            return True, evidence
    for port in probe.get("tcp_ports") or []:
        got = tcp(address, port, probe.get("timeout", 2.0), connect)
        answers.append(got)
        evidence.append(f"tcp/{port} {'answers' if got else 'silent'}")
        if got:
            return True, evidence
    if not answers or all(a is None for a in answers):
        return None, evidence or ["no probe configured"]
    return False, evidence


def ipmi_argv(ipmi, *command):
    argv = ["ipmitool", "-I", ipmi.get("interface", "lanplus"), "-H", ipmi["address"],
            "-U", ipmi["user"]]
    if ipmi.get("password_file"):
        argv += ["-f", ipmi["password_file"]]     # never -P: argv is visible in ps
    return argv + list(command)


def power_state(ipmi, runner):
    """'on', 'off' or None (BMC unreachable / not configured)."""
    from autoremedy.contract import execute
    if not ipmi.get("configured"):
        return None
    try:
        done = runner(ipmi_argv(ipmi, "chassis", "power", "status"), timeout=ipmi.get("timeout", 15.0))
    except execute.CommandError:
        return None
    if done.returncode != 0:
        return None
    text = done.stdout.lower()
    if "power is off" in text:
        return "off"
    if "power is on" in text:
        return "on"
    return None


def keepalive(sensu, host, session=None):
    """The Sensu Go keepalive status of the host's entity: 0 passing, >0 failing,
    None when not configured or not known (Sensu Go API: GET /api/core/v2/namespaces/<ns>/events/<entity>/keepalive)."""
    if not sensu.get("url") or not sensu.get("api_key_file"):
        return None, None        # not configured: not evidence either way
    import requests
    from urllib.parse import quote
    try:
        with open(sensu["api_key_file"], encoding="utf-8") as handle:
            key = handle.read().strip()
    except OSError as exc:
        return None, f"sensu api_key_file: {exc.strerror}"
    entity = sensu.get("entity", "{host}").replace("{host}", host)
    url = (f"{sensu['url'].rstrip('/')}/api/core/v2/namespaces/{quote(sensu.get('namespace', 'default'), safe='')}"
           f"/events/{quote(entity, safe='')}/keepalive")
    http = session or requests
    try:
        resp = http.get(url, headers={"Authorization": f"Key {key}"}, timeout=sensu.get("timeout", 5.0),
                        verify=sensu.get("verify", True))
    except requests.RequestException as exc:
        return None, f"sensu unreachable: {type(exc).__name__}"
    if resp.status_code == 404:
        return None, "no keepalive event"
    if resp.status_code != 200:
        return None, f"sensu answered {resp.status_code}"
    try:
        status = int(resp.json()["check"]["status"])
    except (ValueError, KeyError, TypeError):
        return None, "sensu keepalive event unreadable"
    return status, "keepalive passing" if status == 0 else "keepalive failing"


# --- assessing hosts ----------------------------------------------------------------

class HostState:
    """What we know about one compute host; ``verdict`` is one of the words above."""

    def __init__(self, host, service):
        self.host = host
        self.service = service
        self.reachable, self.power, self.keepalive = None, None, None
        self.evidence = []
        self.instances = None
        self.verdict = UP

    @property
    def down(self):
        return self.service.state == "down" or bool(self.service.is_forced_down)

    @property
    def fenced(self):
        return (bool(self.service.is_forced_down) and self.service.status == "disabled"
                and (self.service.disabled_reason or "").startswith(DISABLED_REASON_PREFIX))

    def judge(self):
        if not self.down:
            self.verdict = UP
        elif self.fenced:
            # Fenced by us earlier; a host that shows life again is being repaired
            # (or never died): never evacuate it further.
            alive = (self.reachable or self.keepalive == 0) and self.power != "off"
            self.verdict = ALIVE if alive else FENCED
        elif self.power == "off":
            self.verdict = DEAD
        elif self.reachable or self.keepalive == 0:
            self.verdict = ALIVE
        elif self.reachable is False and self.power == "on":
            self.verdict = UNREACHABLE_ON
        elif self.reachable is False:
            self.verdict = DEAD
        else:
            self.verdict = UNCONFIRMED    # no probe could tell: never treated as dead
        return self.verdict

    def to_dict(self):
        return {"host": self.host, "verdict": self.verdict, "service_state": self.service.state,
                "service_status": self.service.status, "forced_down": bool(self.service.is_forced_down),
                "disabled_reason": self.service.disabled_reason, "reachable": self.reachable,
                "power": self.power, "keepalive": self.keepalive, "instances": self.instances,
                "evidence": self.evidence}


def assess(host_state, osconf, runner, connect=None):
    """Probe one down host and set its verdict (thread-safe: no shared state)."""
    from autoremedy.clients.cloud import host_settings
    if not host_state.down:
        return host_state.judge()
    hs = host_settings(osconf, host_state.host)
    host_state.reachable, words = reachability(hs["address"], hs["probe"], runner, connect)
    host_state.evidence.extend(words)
    host_state.power = power_state(hs["ipmi"], runner)
    if hs["ipmi"].get("configured"):
        host_state.evidence.append(f"power {host_state.power or 'unknown (BMC silent)'}")
    host_state.keepalive, word = keepalive(osconf["sensu"], host_state.host)
    if word:
        host_state.evidence.append(word)
    return host_state.judge()


def compute_services(conn, hosts=None):
    """nova-compute services (one API call); every host name once."""
    from autoremedy.clients.cloud import guarded
    with guarded("listing nova-compute services"):
        services = list(conn.compute.services(binary="nova-compute"))
    if hosts:
        wanted = set(hosts)
        services = [s for s in services if s.host in wanted]
    return services


def instances_on(conn, host):
    """Every server Nova places on ``host``, all projects. Filters with
    ``compute_host`` (``host=`` lists nothing: reference trap 1) and refuses a
    result holding another host's server (an unknown filter is silently dropped
    and would list the whole cloud: trap 2)."""
    from autoremedy.clients.cloud import CloudError, guarded
    with guarded(f"listing the instances of {host}"):
        servers = list(conn.compute.servers(details=True, all_projects=True, compute_host=host))
    strangers = [s.id for s in servers if s.compute_host != host]
    if strangers:
        raise CloudError(f"the server list for {host} holds {len(strangers)} server(s) of other "
                         "hosts: refusing to trust it")
    return servers


def survey(conn, osconf, hosts=None, runner=None, probe=True, connect=None):
    """Assess every nova-compute service; return (states, total computes)."""
    from concurrent.futures import ThreadPoolExecutor
    from autoremedy.contract import execute
    runner = runner or execute.run
    services = compute_services(conn, hosts)
    states = [HostState(s.host, s) for s in services]
    down = [st for st in states if st.down]
    if probe and down:
        with ThreadPoolExecutor(max_workers=min(8, len(down))) as pool:
            list(pool.map(lambda st: assess(st, osconf, runner, connect), down))
    else:
        for st in states:
            st.judge()
    for st in states:
        if st.verdict != UP:
            st.instances = len(instances_on(conn, st.host))
    return states, len(compute_services(conn)) if hosts else len(services)


# --- the check ------------------------------------------------------------------------

def probe(config, args, runner=None, conn=None):
    """The check on the seam (autoremedy/contract/checkrun.py): ``config`` is the caller's
    (a Config, or a Deferred one read here on first use)."""
    from autoremedy.clients.cloud import CloudError, connect, settings
    from autoremedy.config import ConfigError
    from autoremedy.lazyconfig import loaded
    try:
        config = loaded(config)
        osconf = settings(config)
        conn = conn or connect(config)
        states, total = survey(conn, osconf, args.host, runner, probe=not args.no_probe)
    except (ConfigError, CloudError) as exc:
        raise CheckError(str(exc)) from None
    if not total:
        raise CheckError("Nova lists no nova-compute service" + (f" for {', '.join(args.host)}" if args.host else ""))
    limit = args.max_down_share if args.max_down_share is not None else osconf["compute"]["max_down_share"]
    return judge(states, total, limit, args)


def check(args, runner=None, conn=None):
    """The check outside the seam (tests, benches): the configuration is
    ``--config``'s or $AUTOREMEDY_CONFIG's."""
    from autoremedy.lazyconfig import Deferred
    return probe(Deferred(getattr(args, "config", None)), args, runner, conn)


def judge(states, total, max_down_share, args):
    dead = [s for s in states if s.verdict in (DEAD, UNREACHABLE_ON)]
    alive = [s for s in states if s.verdict == ALIVE]
    unconfirmed = [s for s in states if s.verdict == UNCONFIRMED]
    fenced = [s for s in states if s.verdict == FENCED]
    down = [s for s in states if s.down]
    share = len(down) / total
    on_dead = sum(s.instances or 0 for s in dead)
    metrics = [Metric("dead", len(dead), "", args.warning, args.critical, min=0),
               Metric("down", len(down), "", min=0),
               Metric("instances_on_dead", on_dead, "", min=0),
               Metric("down_share", round(100 * share, 1), "%", min=0, max=100)]
    status = metrics[0].status
    parts = []
    for st in dead:
        word = "dead" if st.verdict == DEAD else "unreachable but powered on"
        parts.append(f"{st.host} {word} ({', '.join(_why(st))}), {st.instances} instance(s)")
    for st in fenced:
        left = st.instances or 0
        parts.append(f"{st.host} fenced, {left} instance(s) " + ("left to evacuate" if left else "(awaiting repair)"))
        if left:
            status = status.worse(Status.WARNING)
    for st in alive:
        parts.append(f"{st.host} nova-compute down but host alive ({', '.join(_why(st))}): "
                     "restart nova-compute, do not evacuate")
        status = status.worse(Status.WARNING)
    for st in unconfirmed:
        parts.append(f"{st.host} nova-compute down, host state unconfirmed ({', '.join(st.evidence) or 'not probed'})")
        status = status.worse(Status.WARNING)
    partition = share > max_down_share and len(down) > 1
    if partition:
        parts.insert(0, f"probable partition: {len(down)} of {total} computes down "
                        f"(> {max_down_share:.0%}); evacuation will be refused")
        status = status.worse(Status.CRITICAL)
    if not parts:
        summary = f"all {total} nova-compute service(s) up"
    else:
        summary = "; ".join(parts) + f"; {len(down)} of {total} computes down"
    data = {"hosts": [s.to_dict() for s in states if s.verdict != UP], "total": total,
            "down_share": round(share, 3), "partition": partition,
            "dead": [s.host for s in dead]}
    details = [f"{s.host}: {s.verdict}; service {s.service.state}/{s.service.status}"
               f"{' forced-down' if s.service.is_forced_down else ''}; {'; '.join(s.evidence) or 'not probed'}"
               for s in states if s.verdict != UP]
    return Result(NAME, summary, status=status, metrics=metrics, details=details, data=data)


def _why(st):
    words = [f"service {st.service.state}"]
    if st.reachable is False:
        words.append("unreachable")
    elif st.reachable:
        words.append("reachable")
    if st.power:
        words.append(f"power {st.power}")
    if st.keepalive is not None:
        words.append("keepalive " + ("passing" if st.keepalive == 0 else "failing"))
    return words


def discover(config, args):
    """Zabbix LLD: one row per nova-compute service."""
    from autoremedy.clients.cloud import connect
    from autoremedy.lazyconfig import loaded
    conn = connect(loaded(config))
    return [{"{#OS.COMPUTE}": s.host, "{#OS.ZONE}": s.availability_zone or ""}
            for s in compute_services(conn)]
