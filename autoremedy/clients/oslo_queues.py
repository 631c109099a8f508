"""The queues oslo.messaging makes, told apart by their shapes.

OpenStack services talk over RabbitMQ through oslo.messaging's rabbit driver,
which declares (oslo.messaging ``impl_rabbit``; seen on a real 18.3 here):

=================  =====================================  ===============================
kind               name                                   notes
=================  =====================================  ===============================
``topic``          ``<topic>`` (``compute``)              every RPC server of the topic
                                                          consumes it
``server``         ``<topic>.<server>`` (``compute.n1``)  one RPC server (a host); casts
                                                          and calls aimed at it wait here
``fanout``         ``<topic>_fanout_<id>``                one per server process,
                                                          ``x-expires`` (30 min default)
``reply``          ``reply_<id>``                         one per RPC client process,
                                                          ``x-expires``
``notification``   ``<topic>.<priority>``                 ``notifications.info``,
                   (``versioned_notifications.error``)    consumed by ceilometer & co,
                                                          or by nobody
=================  =====================================  ===============================

A topic is known by its fanout queues (every RPC server declares
``<topic>``, ``<topic>.<server>`` and ``<topic>_fanout_<id>`` together), so a
server queue is ``<topic>.<rest>`` (host names may contain dots) for such a
topic, and ``billing.events.overflow`` next to ``billing.events`` is not taken
for one. When every server of a topic has been gone longer than the fanout
queues' ``x-expires``, its queues are ordinary queues again. Everything else is
an ordinary queue (``None``).

``ConsumerHistory`` remembers, per topic and server queue, when it last had a
consumer and since when it has none: the check names a server that is gone
(and for how long), the queue remediation protects RPC queues that had a
consumer within its window.
"""
import time

PRIORITIES = frozenset(("audit", "debug", "info", "warn", "warning", "error", "critical", "sample"))
RPC_KINDS = ("topic", "server", "fanout", "reply")

# The usual topics of OpenStack services, for a human-readable guess; any
# other topic is named as it is.
SERVICES = {"compute": "nova-compute", "conductor": "nova-conductor", "scheduler": "nova-scheduler",
            "consoleauth": "nova-consoleauth", "l3_agent": "neutron-l3-agent",
            "dhcp_agent": "neutron-dhcp-agent", "q-plugin": "neutron-server",
            "q-reports-plugin": "neutron-server", "engine": "heat-engine",
            "metering_agent": "neutron-metering-agent"}


def classify(names):
    """{name: kind or None} for every queue name of ONE vhost, plus
    {name: topic} for the server and fanout queues."""
    present = set(names)
    kinds, topics = {}, {}
    for name in present:
        if name.startswith("reply_") and len(name) > 6:
            kinds[name] = "reply"
        elif "_fanout_" in name:
            kinds[name] = "fanout"
            topics[name] = name.split("_fanout_", 1)[0]
    rpc_topics = set(topics.values())
    for name in present:
        if name in kinds:
            continue
        topic = _topic_of(name, rpc_topics)
        if topic is not None:
            kinds[name] = "server"
            topics[name] = topic
    for name in present:
        if name in kinds:
            continue
        if name in rpc_topics:
            kinds[name] = "topic"
        elif "." in name and name.rsplit(".", 1)[1] in PRIORITIES:
            kinds[name] = "notification"
        else:
            kinds[name] = None
    return kinds, topics


def classify_rows(rows):
    """({(vhost, name): kind}, {(vhost, name): topic}) for rows of any vhosts."""
    by_vhost = {}
    for row in rows:
        by_vhost.setdefault(row["vhost"], []).append(row["name"])
    kinds, topics = {}, {}
    for vhost, names in by_vhost.items():
        k, t = classify(names)
        kinds.update(((vhost, n), v) for n, v in k.items())
        topics.update(((vhost, n), v) for n, v in t.items())
    return kinds, topics


def _topic_of(name, rpc_topics):
    """The shortest ``<topic>`` of ``rpc_topics`` such that ``name`` is
    ``<topic>.<server>``; None otherwise (and for ``<x>.<priority>``)."""
    start = 0
    while True:
        dot = name.find(".", start)
        if dot <= 0:
            return None
        topic, server = name[:dot], name[dot + 1:]
        if topic in rpc_topics and server and server not in PRIORITIES:
            return topic
        start = dot + 1


def server_label(topic, server):
    """'nova-compute on node1' (a guess from the topic; said with a '?')."""
    return f"{SERVICES.get(topic, topic)} on {server}"


class ConsumerHistory:
    """Per RPC queue (topic, server, fanout, reply): ``seen`` (last time it had a
    consumer) and ``lost`` (since when it has had none), in one small state file shared by
    the check and the remediation (``<state_dir>/rabbitmq/rpc-consumers.json``).
    Entries not updated for ``forget`` seconds are dropped, so the file tracks
    the queues that exist, whatever the selection of the run that updates it."""

    def __init__(self, path, forget=86400.0):
        self.path = path
        self.forget = forget

    def update(self, rows, kinds, now=None):
        """Record ``rows`` ({vhost, name, consumers}); return {key: entry} for
        them. A row whose consumer count is unknown (None) changes nothing."""
        from autoremedy import statefile
        now = time.time() if now is None else now
        out = {}
        with statefile.updating(self.path, lock_timeout=2) as state:
            queues = state.setdefault("queues", {})
            for row in rows:
                if kinds.get((row["vhost"], row["name"])) not in RPC_KINDS:
                    continue
                key = row["vhost"] + "\0" + row["name"]
                entry = dict(queues.get(key) or {})
                consumers = row.get("consumers")
                if consumers is None:
                    if entry:
                        out[key] = entry
                    continue
                if consumers > 0:
                    entry["seen"] = now
                    entry.pop("lost", None)
                elif entry.get("lost") is None:
                    entry["lost"] = now
                entry["at"] = now
                queues[key] = entry
                out[key] = entry
            for key in [k for k, e in queues.items() if now - e.get("at", 0) > self.forget]:
                del queues[key]
        return out

    def read(self):
        from autoremedy import statefile
        return (statefile.load(self.path, None) or {}).get("queues", {})


def history_path(state_dir):
    import os
    return os.path.join(state_dir, "rabbitmq", "rpc-consumers.json")
