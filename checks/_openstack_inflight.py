"""Is anything still in progress for a host's instances? The evidence a repair needs
before it may call a task "stuck" (openstack-consistency, issue 25).

A task state that is merely old is not stuck: a reboot cast may sit in the
compute's queue behind a long operation, a compute may be working on it, a
migration may own the instance. Resetting it then loses the user's operation
(nova-compute later fails with ``UnexpectedTaskStateError``). So "stuck" needs,
read now:

- the host's **nova-compute up and consuming**: its service ``up`` and not forced
  down (``GET /os-services?binary=nova-compute``), and its RPC queue
  ``compute.<host>`` with a consumer (RabbitMQ management API, one call); a
  message still queued there means an operation is waiting for it;
- the instance's **last action** (``GET /servers/{id}/os-instance-actions``, then
  that action with its events) older than the task state's threshold, with no
  event still running (an event without ``finish_time``);
- **no migration in progress** for it (``GET /os-migrations?host=<host>``, one call).

The queue is read only when a finding needs the proof: a node with nothing to
repair needs no RabbitMQ access.
"""
from autoremedy.contract.result import CheckError

# Migration statuses after which nothing is in progress (nova/objects/migration.py and
# the compute manager's status strings; "finished" is a resize waiting to be confirmed).
ENDED = ("done", "completed", "confirmed", "reverted", "error", "failed", "cancelled",
         "finished")

# How old a task state may be before it can be stuck, by task state (the default is
# ``stuck_after``). Snapshots upload whole images and live migrations copy whole
# memories: hours are normal there; a power action takes seconds.
THRESHOLDS = {
    "powering-on": 600.0, "powering-off": 600.0, "pausing": 600.0, "unpausing": 600.0,
    "suspending": 600.0, "resuming": 600.0,
    "image_snapshot": 7200.0, "image_snapshot_pending": 7200.0,
    "image_pending_upload": 7200.0, "image_uploading": 7200.0, "image_backup": 7200.0,
    "shelving_image_uploading": 7200.0, "shelving_image_pending_upload": 7200.0,
    "migrating": 7200.0, "resize_migrating": 7200.0, "rebuild_spawning": 3600.0,
}


def threshold_for(task_state, conf):
    """Seconds a ``task_state`` may last: ``thresholds[task]``, the built-in table,
    else ``stuck_after``."""
    own = conf.get("thresholds") or {}
    if task_state in own:
        return float(own[task_state])
    return float(THRESHOLDS.get(task_state, conf["stuck_after"]))


class Compute:
    """What is known now about one host's nova-compute.

    state   "up" (service up; queue not read), "consuming" (up and its queue has a
            consumer), "down" (service down, forced down or absent), "deaf" (up
            but nothing consumes its queue), "unproven" (the queue cannot be read)
    """

    def __init__(self, host, state, why, consumers=None, messages=None):
        self.host, self.state, self.why = host, state, why
        self.consumers, self.messages = consumers, messages

    @property
    def down(self):
        return self.state == "down"

    @property
    def consuming(self):
        return self.state == "consuming"

    def to_dict(self):
        return {"host": self.host, "state": self.state, "why": self.why,
                "consumers": self.consumers, "messages": self.messages}


def compute_service(conn, host):
    """The host's nova-compute as Nova reports it now: a Compute "up" or "down"."""
    from autoremedy.checks.compute_node import compute_services
    rows = compute_services(conn, [host])
    if not rows:
        return Compute(host, "down", f"Nova has no nova-compute service for {host}")
    svc = rows[0]
    if svc.is_forced_down:
        return Compute(host, "down", f"{host}'s nova-compute is forced down")
    if svc.state != "up":
        return Compute(host, "down", f"{host}'s nova-compute is {svc.state} "
                                     f"(last report {svc.updated_at})")
    return Compute(host, "up", f"{host}'s nova-compute is up")


def read_queue(compute, rpc):
    """Add the RPC queue's evidence to an "up" Compute (in place) and return it."""
    if compute.state != "up":
        return compute
    from autoremedy.clients import rabbitmq
    queue = rpc["queue"].format(host=compute.host)
    if not rpc.get("api_url"):
        compute.state = "unproven"
        compute.why = (f"cannot tell whether {compute.host}'s nova-compute consumes {queue}: "
                       "openstack.consistency.rpc.api_url is not set")
        return compute
    api = rabbitmq.Api(rpc["api_url"], rpc["user"], rpc["password"], verify=rpc["verify"],
                       timeout=rpc["timeout"])
    try:
        row = api.queue(rpc["vhost"], queue, columns=["consumers", "messages"])
    except rabbitmq.NotFound:
        compute.state, compute.consumers = "deaf", 0
        compute.why = (f"{compute.host}'s nova-compute reports up but its queue {queue} does not "
                       f"exist in vhost {rpc['vhost']!r}: nothing receives its casts")
        return compute
    except (rabbitmq.ApiError, CheckError) as exc:
        compute.state = "unproven"
        compute.why = f"cannot tell whether {compute.host}'s nova-compute consumes {queue}: {exc}"
        return compute
    finally:
        api.close()
    compute.consumers = int(row.get("consumers") or 0)
    compute.messages = int(row.get("messages") or 0)
    if compute.consumers == 0:
        compute.state = "deaf"
        compute.why = (f"{compute.host}'s nova-compute reports up but nothing consumes {queue} "
                       f"({compute.messages} message(s) waiting): casts to it are not delivered")
    else:
        compute.state = "consuming"
        compute.why = (f"{compute.host}'s nova-compute is up and consumes {queue} "
                       f"({compute.consumers} consumer(s), {compute.messages} message(s) queued)")
    return compute


def migrations(conn, host):
    """{instance id: "migration <id> (<type>, <status>)"} of every migration in progress
    from or to ``host`` (one call)."""
    from autoremedy.clients.cloud import guarded
    with guarded(f"listing the migrations of {host}"):
        rows = list(conn.compute.migrations(host=host))
    out = {}
    for m in rows:
        if (m.status or "").lower() in ENDED:
            continue
        if not m.source_compute and not m.dest_compute:
            # Nova filtered by host, then blanked both hosts: the caller lacks the policy
            # os_compute_api:os-migrations:index:host (nova/api/openstack/compute/migrations.py).
            # Fail closed: the migration is this host's as far as anyone can tell.
            out[m.server_id] = (f"migration {m.id} ({m.migration_type or 'migration'}, {m.status}, "
                                "hosts hidden: policy os_compute_api:os-migrations:index:host "
                                "not granted)")
            continue
        if host not in (m.source_compute, m.dest_compute):
            continue     # an unknown filter is dropped silently: trust only what names the host
        out[m.server_id] = (f"migration {m.id} ({m.migration_type or 'migration'}, "
                            f"{m.status}, {m.source_compute} -> {m.dest_compute or '?'})")
    return out


class LastAction:
    def __init__(self, action, request_id, when, running):
        self.action, self.request_id, self.when, self.running = action, request_id, when, running

    def to_dict(self):
        return {"action": self.action, "request_id": self.request_id, "time": self.when,
                "running": self.running}


def last_action(conn, server_id):
    """The instance's newest action: its latest time (the action's start or any of its
    events' start or finish) and the name of an event still running (no finish
    time), or None. Two calls; None when Nova recorded no action."""
    from autoremedy.clients.cloud import guarded
    with guarded(f"listing the actions of {server_id}"):
        actions = list(conn.compute.server_actions(server_id))
        if not actions:
            return None
        newest = max(actions, key=lambda a: str(a.start_time or ""))
        action = conn.compute.get_server_action(newest.request_id, server_id)
    times = [str(action.start_time)] if action.start_time else []
    running = None
    for event in action.events or []:
        get = event.get if isinstance(event, dict) else (lambda k, e=event: getattr(e, k, None))
        for key in ("start_time", "finish_time"):
            if get(key):
                times.append(str(get(key)))
        if get("start_time") and not get("finish_time"):
            running = get("event")
    return LastAction(action.action, action.request_id, max(times) if times else None, running)
