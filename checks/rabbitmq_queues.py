"""Overflowed RabbitMQ queues: depth, no consumers, growth and drain time, in one API request.

    $ autoremedy check rabbitmq-queues --vhost / -w 1000 -c 10000
    RABBITMQ-QUEUES CRITICAL: 2 of 153 queues: notifications.info 52000 msgs (crit >10000), no consumers;
    reply_4f1e 1200 msgs (warn >1000) | 'notifications.info'=52000;1000;10000;0 ... 'queues'=153 ...

One ``GET /api/queues[/<vhost>]?columns=...`` whatever the number of queues and
the selection (the cheaper ``disable_stats`` listing when no consumer count is
needed; ``--include``/``--exclude`` are applied here, except an ``--include`` of
exact names, which the API filters in one page: measured 0.12 s against 0.9 s
for 10,000 queues).

oslo.messaging's queues are told apart by shape (autoremedy.clients.oslo_queues): an
RPC server queue (``<topic>.<host>``) or topic queue with no consumer is its own
finding ("RPC server gone 3m (nova-compute on node1?)": WARNING, then
``--rpc-server-gone`` after ``--rpc-grace``), an orphaned fanout or reply queue
with ``x-expires`` is reported as "orphaned, expires in N min" without a depth
alarm (``--orphaned`` to alarm), notifications keep the plain verdicts. When
consumers went away is kept in ``<state_dir>/rabbitmq/rpc-consumers.json``.
Thresholds: ``-w/-c`` on a queue's messages (ready + unacked), ``--ready-*`` and
``--unacked-*`` on each part, ``--no-consumers`` for messages waiting with nobody
consuming, ``--stuck-consumers`` for consumers that hold unacked messages and
ack nothing, ``--growth-*`` (msg/s) and ``--drain-*`` (time to empty) from a
small state file of earlier readings (``<state_dir>/checks/rabbitmq-queues-*.json``).
The summary names the worst queues first; perfdata covers the ``--top`` deepest.

When the management API does not answer (plugin disabled, port closed) the check
falls back to AMQP passive declares of the queues listed in
``rabbitmq.fallback_queues`` (or ``--fallback-queue``) and says so.
"""
import hashlib
import math
import os
import re
import time

from autoremedy.contract import units
from autoremedy.contract.ranges import Range
from autoremedy.contract.result import CheckError, Metric, Result, Status

MANIFEST = {
    "name": "rabbitmq-queues",
    "summary": "an overflowing RabbitMQ queue: the configured policy through the API",
    "check": "autoremedy.checks.rabbitmq_queues:probe",
    "remediation": "autoremedy.remediations.rabbitmq_queues",
    "scope": "api",
    "thresholds": ("1000", "10000"),
    "timeout": 15.0,
    "order": 70,
    "sensu": [
        # oslo.messaging-aware by default: a lost RPC server is CRITICAL after --rpc-grace,
        # orphaned fanout/reply queues (x-expires) are reported without an alarm.
        {"name": "autoremedy-rabbitmq-queues", "args": "--exclude ^amq\\. --rpc-grace 1m",
         "subscriptions": ["autoremedy-central"], "hooks": [], "proxy": "rabbitmq"},
    ],
    "zabbix": {
        "items": [
            # The same selection as the docs' UserParameter and the Sensu check above:
            # RabbitMQ's own amq.* queues left out, an RPC server gone for longer than
            # a minute CRITICAL.
            {"template": "autoremedy RabbitMQ", "key": "autoremedy_check[rabbitmq-queues,--exclude,^amq\\.,--rpc-grace,1m]",
             "severity": "HIGH", "kind": "EXTERNAL",
             "description": "RabbitMQ queues: depth, consumers, growth (one management API request)"},
        ],
        "no_target": "the target is a key of rabbitmq.queue_policies, which only the operator's routes know",
    },
    "stackstorm": {
        "order": 50,
        "description": "An overflowing RabbitMQ queue: the configured policy through the API, verify, notify or "
                       "escalate.",
        "status": [1, 2],
        "check_args": "",
    },
}
NAME = MANIFEST["name"]

LEVELS = {"off": None, "warning": Status.WARNING, "critical": Status.CRITICAL}
RANK = {Status.CRITICAL: 0, Status.UNKNOWN: 1, Status.WARNING: 2, Status.OK: 3}
BASE_COLUMNS = ("name", "vhost", "messages", "messages_ready", "messages_unacknowledged")


def add_arguments(parser):
    sel = parser.add_argument_group("selection")
    sel.add_argument("--vhost", action="append", default=[], help="only this vhost (repeatable)")
    sel.add_argument("--exclude-vhost", action="append", default=[], metavar="VHOST",
                     help="skip this vhost (repeatable)")
    sel.add_argument("--include", action="append", default=[], metavar="REGEX",
                     help="only queues whose name matches (searched; repeatable)")
    sel.add_argument("--exclude", action="append", default=[], metavar="REGEX",
                     help="skip queues whose name matches (repeatable)")
    thr = parser.add_argument_group("thresholds (-w/-c apply to messages = ready + unacked)")
    for part in ("ready", "unacked"):
        thr.add_argument(f"--{part}-warning", metavar="RANGE", help=f"messages {part} warning range")
        thr.add_argument(f"--{part}-critical", metavar="RANGE", help=f"messages {part} critical range")
    thr.add_argument("--no-consumers", choices=tuple(LEVELS), default="warning",
                     help="state for a queue with messages and no consumer (default warning)")
    thr.add_argument("--no-consumers-min", type=int, default=1, metavar="N",
                     help="messages waiting that make a consumer-less queue count (default 1)")
    thr.add_argument("--rpc-server-gone", choices=tuple(LEVELS), default="critical",
                     help="state for an oslo.messaging RPC server or topic queue without consumer "
                          "after --rpc-grace (default critical; WARNING before)")
    thr.add_argument("--rpc-grace", type=units.duration, default=units.duration("1m"),
                     metavar="DURATION", help="how long an RPC queue may lack its consumer "
                     "before --rpc-server-gone applies (default 1m: a service restart)")
    thr.add_argument("--orphaned", choices=("report",) + tuple(LEVELS)[1:], default="report",
                     help="orphaned fanout/reply queues with x-expires: report (default, no alarm) "
                          "or alarm at this level, depth thresholds included")
    thr.add_argument("--stuck-consumers", choices=tuple(LEVELS), default="off",
                     help="state for consumers holding unacked messages and acking nothing")
    thr.add_argument("--growth-warning", type=float, metavar="MSG/S", help="growth rate warning")
    thr.add_argument("--growth-critical", type=float, metavar="MSG/S", help="growth rate critical")
    thr.add_argument("--drain-warning", type=units.duration, metavar="DURATION",
                     help="WARNING when a backlog needs longer than this to drain (or never drains)")
    thr.add_argument("--drain-critical", type=units.duration, metavar="DURATION",
                     help="CRITICAL likewise")
    thr.add_argument("--drain-min", type=int, default=100, metavar="N",
                     help="backlog (messages) from which the drain time is judged (default 100)")
    thr.add_argument("--window", type=units.duration, default=units.duration("10m"),
                     metavar="DURATION", help="smoothing window of the growth rate (default 10m)")
    out = parser.add_argument_group("source and output")
    out.add_argument("--top", type=int, default=5, metavar="N",
                     help="perfdata for the N deepest queues (default 5)")
    out.add_argument("--api-url", metavar="URL", help="management API (default rabbitmq.api_url)")
    out.add_argument("--via", choices=("auto", "api", "amqp"), default="auto",
                     help="auto: API, AMQP passive declares if the API is unavailable")
    out.add_argument("--fallback-queue", action="append", default=[], metavar="NAME",
                     help="queue for the AMQP fallback (in the first --vhost, default /)")


# --- select ------------------------------------------------------------------------

class Selection:
    def __init__(self, args):
        self.vhosts = set(args.vhost)
        self.skip_vhosts = set(args.exclude_vhost)
        self.include = [_regex(p, "--include") for p in args.include]
        self.exclude = [_regex(p, "--exclude") for p in args.exclude]

    def wants(self, vhost, name):
        if self.vhosts and vhost not in self.vhosts:
            return False
        if vhost in self.skip_vhosts:
            return False
        if self.include and not any(r.search(name) for r in self.include):
            return False
        return not any(r.search(name) for r in self.exclude)

    def key(self):
        text = repr((sorted(self.vhosts), sorted(self.skip_vhosts),
                     [r.pattern for r in self.include], [r.pattern for r in self.exclude]))
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _regex(pattern, option):
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise CheckError(f"invalid {option} regex {pattern!r}: {exc}") from None


# --- acquire -----------------------------------------------------------------------

def needs_consumers(args):
    return (args.no_consumers != "off" or args.stuck_consumers != "off"
            or getattr(args, "rpc_server_gone", "off") != "off")


EXACT_PAGE = 500     # Api.queues pages by 500: at most this many exact names is one request


def from_api(api, args, selection):
    """Rows from ONE request, whatever the selection."""
    columns = list(BASE_COLUMNS)
    consumers = needs_consumers(args)
    if consumers:
        columns += ["consumers", "arguments"]         # arguments: x-expires of RPC queues
    if args.stuck_consumers != "off":
        columns.append("message_stats")
    vhost = next(iter(selection.vhosts)) if len(selection.vhosts) == 1 else None
    # Only an include of exact names is filtered by the API: it reads the same
    # in both regex dialects and cannot match more than one page.
    from autoremedy.clients import queue_patterns
    exact = queue_patterns.exact_names(args.include[0]) if len(args.include) == 1 else None
    name_regex = args.include[0] if exact is not None and len(exact) <= EXACT_PAGE else None
    from autoremedy.clients.rabbitmq import NotFound
    try:
        rows = api.queues(vhost, columns, totals_only=not consumers, name_regex=name_regex)
    except NotFound:
        raise CheckError(f"vhost {vhost!r} does not exist (404)") from None
    return [_row(r) for r in rows]


def _row(raw):
    if not isinstance(raw, dict) or "name" not in raw:
        raise CheckError(f"management API: unexpected queue row {str(raw)[:80]!r}")
    stats = raw.get("message_stats") or {}
    return {
        "vhost": raw.get("vhost", "/"), "name": raw["name"],
        "messages": int(raw.get("messages") or 0),
        "ready": int(raw.get("messages_ready") or 0),
        "unacked": int(raw.get("messages_unacknowledged") or 0),
        "consumers": raw.get("consumers"),
        "ack_rate": _rate(stats, "ack_details") + _rate(stats, "deliver_no_ack_details"),
        "deliver_rate": _rate(stats, "deliver_get_details"),
        "expires": _expires(raw.get("arguments")),
    }


def _expires(arguments):
    try:
        value = (arguments or {}).get("x-expires")
        return None if value is None else int(value) / 1000.0
    except (AttributeError, TypeError, ValueError):
        return None


def _rate(stats, key):
    try:
        return float((stats.get(key) or {}).get("rate") or 0.0)
    except (TypeError, ValueError, AttributeError):
        return 0.0


def from_amqp(settings, args, reason):
    """Passive declares of the configured fallback queues: exact and immediate,
    but only for named queues, and without the ready/unacked split."""
    wanted = [(q.get("vhost", "/"), q["name"]) for q in settings.fallback_queues]
    vhost = args.vhost[0] if args.vhost else "/"
    wanted += [(vhost, name) for name in args.fallback_queue]
    if not wanted:
        raise CheckError(f"{reason}; no rabbitmq.fallback_queues (or --fallback-queue) "
                         "for the AMQP fallback")
    from autoremedy.clients.rabbitmq import amqp_connection, amqp_error
    import pika
    rows = []
    for vh in sorted({v for v, _ in wanted}):
        try:
            conn = amqp_connection(settings, vh)
        except Exception as exc:
            raise CheckError(f"{reason}; AMQP fallback to vhost {vh!r} failed too: "
                             f"{amqp_error(exc)}") from None
        try:
            channel = conn.channel()
            for _, name in [w for w in wanted if w[0] == vh]:
                try:
                    ok = channel.queue_declare(name, passive=True).method
                except pika.exceptions.ChannelClosedByBroker as exc:
                    if exc.reply_code != 404:
                        raise
                    rows.append({"vhost": vh, "name": name, "missing": True})
                    channel = conn.channel()
                    continue
                rows.append({"vhost": vh, "name": name, "messages": ok.message_count,
                             "ready": ok.message_count, "unacked": 0,
                             "consumers": ok.consumer_count, "ack_rate": 0.0, "deliver_rate": 0.0})
        finally:
            try:
                conn.close()
            except Exception:
                pass
    return rows


# --- growth and drain, from our own readings --------------------------------------------

def update_rates(path, rows, window, now):
    """Exponentially smoothed growth rate per queue (msg/s), like a load average:
    one small record per queue, whatever the history. Returns {key: rate or None}."""
    from autoremedy import statefile
    rates = {}
    try:
        with statefile.updating(path, lock_timeout=2) as state:
            old = state.get("queues", {})
            new = {}
            for row in rows:
                key = row["vhost"] + "\0" + row["name"]
                prev = old.get(key)
                depth = row["messages"]
                if prev is None:
                    new[key] = [now, depth, None]
                    rates[key] = None
                    continue
                then, before, rate = prev
                dt = now - then
                if dt < 1.0:          # two runs within a second: keep the record as it is
                    new[key] = prev
                    rates[key] = rate
                    continue
                instant = (depth - before) / dt
                alpha = 1.0 - math.exp(-dt / window) if window > 0 else 1.0
                rate = instant if rate is None else rate + alpha * (instant - rate)
                new[key] = [now, depth, round(rate, 6)]
                rates[key] = rate
            state["queues"] = new     # queues that vanished are forgotten
    except (OSError, TimeoutError) as exc:
        raise CheckError(f"growth state {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return rates


# --- judge -------------------------------------------------------------------------

class Rules:
    def __init__(self, args):
        self.messages = (args.warning, args.critical)
        self.ready = (Range.parse(args.ready_warning), Range.parse(args.ready_critical))
        self.unacked = (Range.parse(args.unacked_warning), Range.parse(args.unacked_critical))
        self.no_consumers = LEVELS[args.no_consumers]
        self.no_consumers_min = args.no_consumers_min
        self.stuck = LEVELS[args.stuck_consumers]
        self.growth = (_floor(args.growth_warning), _floor(args.growth_critical))
        self.drain = (args.drain_warning, args.drain_critical)
        self.drain_min = args.drain_min
        self.rpc_gone = LEVELS[getattr(args, "rpc_server_gone", "off")]
        self.rpc_grace = getattr(args, "rpc_grace", 60.0)
        orphaned = getattr(args, "orphaned", "report")
        self.orphaned = None if orphaned == "report" else LEVELS[orphaned]

    @property
    def rates_wanted(self):
        return any(self.growth) or any(self.drain)


def _floor(value):
    return None if value is None else Range(-math.inf, value)


def _level(value, pair):
    warn, crit = pair
    if crit is not None and crit.alerts(value):
        return Status.CRITICAL, crit
    if warn is not None and warn.alerts(value):
        return Status.WARNING, warn
    return Status.OK, None


def orphaned(row, oslo):
    """An oslo.messaging fanout/reply queue nobody consumes that RabbitMQ will
    delete by itself (x-expires): its process died, its successor has its own."""
    return ((oslo or {}).get("kind") in ("fanout", "reply") and row.get("consumers") == 0
            and row.get("expires") is not None)


def orphan_text(oslo, row=None):
    left = (oslo or {}).get("expires_in")
    if left is not None:
        return f"orphaned, expires in {units.human_duration(left)}"
    if row is not None and row.get("expires") is not None:
        return f"orphaned, expires within {units.human_duration(row['expires'])}"
    return "orphaned, expires by itself"


def judge(row, rules, rate=None, oslo=None):
    """(status, [reasons]) for one queue. ``oslo``: {kind, label, lost_for,
    expires_in} from the queue's oslo.messaging shape (see check())."""
    if row.get("missing"):
        return Status.WARNING, ["does not exist"]
    status, reasons = Status.OK, []
    kind = (oslo or {}).get("kind")
    if orphaned(row, oslo):
        if rules.orphaned is None:
            return Status.OK, []          # reported apart (summarise), no depth alarm
        status = rules.orphaned
        reasons.append(orphan_text(oslo, row))
    for value, pair, what in ((row["messages"], rules.messages, "msgs"),
                              (row["ready"], rules.ready, "ready"),
                              (row["unacked"], rules.unacked, "unacked")):
        level, rng = _level(value, pair)
        if level is not Status.OK:
            status = status.worse(level)
            word = "crit" if level is Status.CRITICAL else "warn"
            reasons.append(f"{value} {what} ({word} {rng.describe()})")
    consumers = row.get("consumers")
    if rules.rpc_gone and kind in ("server", "topic") and consumers == 0:
        lost = oslo.get("lost_for")
        level = rules.rpc_gone if lost is not None and lost >= rules.rpc_grace else Status.WARNING
        status = status.worse(level)
        since = "" if lost is None else f" {units.human_duration(lost)}"
        reasons.insert(0, f"RPC server gone{since} ({oslo.get('label')}?)" if kind == "server"
                       else f"no RPC server consumes this topic{since}")
    elif (rules.no_consumers and consumers == 0 and row["messages"] >= rules.no_consumers_min
          and not orphaned(row, oslo)):        # "orphaned" says it already
        status = status.worse(rules.no_consumers)
        reasons.append("no consumers" if reasons else f"{row['messages']} msgs, no consumers")
    if (rules.stuck and consumers and row["unacked"] > 0 and row["ready"] > 0
            and row["ack_rate"] == 0 and row["deliver_rate"] == 0):
        status = status.worse(rules.stuck)
        reasons.append(f"{consumers} consumer(s) stuck: {row['unacked']} unacked, no acks")
    if rate is not None:
        level, _ = _level(rate, rules.growth)
        if level is not Status.OK:
            status = status.worse(level)
            reasons.append(f"growing {rate:+.1f} msg/s")
        eta = drain_time(row["messages"], rate)
        if row["messages"] >= rules.drain_min and any(rules.drain):
            warn, crit = rules.drain
            level = (Status.CRITICAL if crit is not None and eta > crit else
                     Status.WARNING if warn is not None and eta > warn else Status.OK)
            if level is not Status.OK:
                status = status.worse(level)
                limit = crit if level is Status.CRITICAL else warn
                text = "never drains" if math.isinf(eta) else f"drains in {units.human_duration(eta)}"
                reasons.append(f"{text} (> {units.human_duration(limit)})")
    return status, reasons


def drain_time(messages, rate):
    """Seconds until empty at the current net rate; inf when not draining."""
    if messages <= 0:
        return 0.0
    if rate is None or rate >= 0:
        return math.inf
    return messages / -rate


def queue_id(row):
    return row["name"] if row["vhost"] == "/" else f"{row['vhost']}/{row['name']}"


# --- the check -----------------------------------------------------------------------

def probe(config, args, settings=None, clock=time.time):
    """The seam (autoremedy/contract/checkrun.py); ``settings``: the rabbitmq section
    validated already, else read from ``config``."""
    from autoremedy.clients import rabbitmq
    from autoremedy.lazyconfig import loaded
    settings = settings or rabbitmq.settings(loaded(config))
    selection = Selection(args)
    rules = Rules(args)
    via, note = "api", None
    if args.via == "amqp":
        rows, via = from_amqp(settings, args, "AMQP requested"), "amqp"
        note = "via AMQP passive declares (--via amqp)"
    else:
        api = settings.api(args.api_url)
        try:
            rows = from_api(api, args, selection)
        except rabbitmq.ApiUnavailable as exc:
            if args.via == "api":
                raise
            rows, via = from_amqp(settings, args, str(exc)), "amqp"
            note = f"via AMQP passive declares: {exc}"
    now = clock()
    # The shapes are read from every queue listed (a server queue is known by
    # its topic queue), before the selection narrows the rows.
    oslo, history_note = oslo_view(rows, rules, settings, now) if via == "api" else ({}, None)
    rows = [r for r in rows if selection.wants(r["vhost"], r["name"])]
    rates = {}
    if rules.rates_wanted and via == "api":
        path = os.path.join(settings.state_dir, "checks", f"rabbitmq-queues-{selection.key()}.json")
        rates = update_rates(path, rows, args.window, now)
    result = summarise(rows, rules, rates, args.top, via, note, oslo)
    if history_note:
        result.details.append(history_note)
    return result


def oslo_view(rows, rules, settings, now):
    """{(vhost, name): {kind, label, lost_for, expires_in}} for oslo.messaging
    queues, and a note when the consumer history could not be kept."""
    from autoremedy.clients import oslo_queues
    kinds, topics = oslo_queues.classify_rows(rows)
    seen, note = {}, None
    if any(k is not None and k != "notification" for k in kinds.values()):
        history = oslo_queues.ConsumerHistory(oslo_queues.history_path(settings.state_dir))
        try:
            seen = history.update(rows, kinds, now)
        except (OSError, TimeoutError) as exc:
            note = (f"RPC consumer history {history.path}: {getattr(exc, 'strerror', None) or exc}: "
                    "how long an RPC server has been gone is unknown")
    out = {}
    for row in rows:
        key = (row["vhost"], row["name"])
        kind = kinds.get(key)
        if kind is None or kind == "notification":
            continue
        info = {"kind": kind}
        if kind == "server":
            topic = topics[key]
            info["label"] = oslo_queues.server_label(topic, row["name"][len(topic) + 1:])
        entry = seen.get(row["vhost"] + "\0" + row["name"]) or {}
        if entry.get("lost") is not None:
            info["lost_for"] = max(0.0, now - entry["lost"])
        if row.get("expires") is not None and info.get("lost_for") is not None:
            # x-expires counts from the last use (consumer, get, declare): the
            # consumer was gone at least since our first run that saw it without.
            info["expires_in"] = max(0.0, row["expires"] - info["lost_for"])
        out[key] = info
    return out, note


def summarise(rows, rules, rates, top, via, note=None, oslo=None):
    oslo = oslo or {}
    judged, orphans = [], []
    for row in rows:
        rate = rates.get(row["vhost"] + "\0" + row["name"])
        info = oslo.get((row["vhost"], row["name"]))
        status, reasons = judge(row, rules, rate, info)
        if rules.orphaned is None and orphaned(row, info):
            orphans.append(f"{queue_id(row)} {orphan_text(info, row)}")
        judged.append((RANK[status], -row.get("messages", 0), row, status, reasons, rate, info))
    judged.sort(key=lambda j: (j[0], j[1]))
    bad = [j for j in judged if j[3] is not Status.OK]
    worst = Status.OK
    for j in bad:
        worst = worst.worse(j[3])
    total = sum(r.get("messages", 0) for r in rows)
    if not rows:
        summary = "no queue matches the selection"
    elif bad:
        shown = "; ".join(f"{queue_id(j[2])} " + ", ".join(j[4]) for j in bad[:5])
        more = f"; {len(bad) - 5} more" if len(bad) > 5 else ""
        summary = f"{len(bad)} of {len(rows)} queues: {shown}{more}"
    else:
        deepest = max(rows, key=lambda r: r.get("messages", 0))
        summary = (f"{len(rows)} queues OK, {total} msgs, deepest {queue_id(deepest)} "
                   f"{deepest.get('messages', 0)}")
        if orphans:
            summary += (f"; {len(orphans)} orphaned RPC queue(s), no alarm: "
                        + "; ".join(orphans[:3]) + ("; ..." if len(orphans) > 3 else ""))
    if note:
        summary += f" ({note})"
    metrics = [Metric(queue_id(r), r.get("messages", 0), "", rules.messages[0], rules.messages[1], 0)
               for r in sorted((j[2] for j in judged if "messages" in j[2]),
                               key=lambda r: -r["messages"])[:max(top, 0)]]
    metrics += [Metric("queues", len(rows), "", min=0), Metric("messages", total, "", min=0),
                Metric("alerting", len(bad), "", min=0)]
    details = [f"{Status(j[3]).name}: {queue_id(j[2])} " + ", ".join(j[4]) for j in bad[5:50]]
    details += [f"OK: {text} (x-expires: RabbitMQ deletes it; --orphaned to alarm)"
                for text in orphans[:50]]
    # A new queue's consumer count can trail its depth in the API's statistics.
    uncounted = sum(1 for r in rows if r.get("consumers") is None and rules.no_consumers
                    and r.get("messages", 0) >= rules.no_consumers_min and via == "api")
    if uncounted:
        details.append(f"{uncounted} queue(s) with messages have no consumer count yet "
                       "(statistics not collected): not judged for consumers this run")
    data = {"via": via, "queues": [_data_row(j) for j in judged]}
    return Result(NAME, summary, status=worst, metrics=metrics, details=details, data=data)


def _data_row(judged):
    _, _, row, status, reasons, rate, info = judged
    out = {"id": queue_id(row), "vhost": row["vhost"], "name": row["name"], "status": int(status),
           "reasons": reasons}
    if info:
        out["kind"] = info["kind"]
        for key in ("lost_for", "expires_in"):
            if info.get(key) is not None:
                out[key] = round(info[key], 1)
    for key in ("messages", "ready", "unacked", "consumers"):
        if key in row:
            out[key] = row[key]
    if rate is not None:
        out["growth"] = round(rate, 3)
    return out


def discover(config, args):
    """Zabbix LLD: one row per selected queue (same selection options as the check)."""
    from autoremedy.clients import rabbitmq
    from autoremedy.lazyconfig import loaded
    settings = rabbitmq.settings(loaded(config))
    selection = Selection(args)
    vhost = next(iter(selection.vhosts)) if len(selection.vhosts) == 1 else None
    rows = settings.api(args.api_url).queues(vhost, ["name", "vhost"], totals_only=True)
    return [{"{#VHOST}": r.get("vhost", "/"), "{#QUEUE}": r["name"],
             "{#QUEUE.ID}": queue_id({"vhost": r.get("vhost", "/"), "name": r["name"]})}
            for r in rows if isinstance(r, dict) and "name" in r
            and selection.wants(r.get("vhost", "/"), r["name"])]
