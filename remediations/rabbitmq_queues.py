"""Overflowed queues, by policy: cap with a RabbitMQ policy, move to an overflow queue, or purge.

Strictly opt-in per queue pattern. A target is a policy named in
``rabbitmq.queue_policies``; it acts only on the queues of its vhost whose name
matches its pattern and that are over its ``messages`` threshold (and, with
``no_consumers``, have no consumer). Nothing else is ever touched::

    rabbitmq:
      queue_policies:
        notifications:                     # autoremedy remediate rabbitmq-queues notifications
          vhost: /
          pattern: '^(versioned_)?notifications\\.(info|warn|error)$'
          messages: 10000                  # act above this depth (default 1000)
          no_consumers: true               # only orphaned queues
          action: cap                      # preferred: reversible (--revert deletes the policy)
          max_length: 10000
          message_ttl: 1h
        parking:
          pattern: '^billing\\.events$'
          action: move                     # into '{name}.overflow'; nothing lost (confirms)
          move_via: auto                   # shovel when the plugin is there, else AMQP
        replies:
          pattern: '^reply_[0-9a-f]{32}$'
          action: purge
          disposable: true                 # required: purge deletes messages
    remediations:
      rabbitmq-queues: {enabled: true}

cap
    Applies RabbitMQ policy ``autoremedy-<target>`` with the policy's pattern
    (it must read the same in Python and in RabbitMQ's PCRE). Without ``overflow``
    it is an *operator* policy, which RabbitMQ merges with the user policies
    already there (an OpenStack ``ha-all`` stays in force). ``overflow`` is not
    allowed in operator policies (3.10 answers 400), so then it is a user policy
    that copies the definition of the one user policy the queues are under and
    outranks every matching one; queues under different user policies are refused.
move
    Declares the durable overflow queue, then a dynamic shovel with
    ``src-delete-after: queue-length`` and ``ack-mode: on-confirm`` (it moves
    what is there and deletes itself), or, without the shovel plugin, basic.get
    → publish with publisher confirms and ``mandatory`` → ack, one message at a time.
purge
    ``DELETE /api/queues/<vhost>/<name>/contents``, only when ``disposable: true``.

A queue deleted between the listing and the action is reported and skipped,
never re-created. The verification re-reads depth (and growth) through the API
until it holds or ``verify_timeout`` expires: the API's statistics lag by up to
~5 s, so one read right after the action proves nothing.
"""
import re
import time

from autoremedy import rabbitmq
from autoremedy.guard import Refused
from autoremedy.remediation import Remediation, RemediationError, Step
from autoremedy.result import Result, Status

NAME = "rabbitmq-queues"
OPERATOR_KEYS = {"max-length", "max-length-bytes", "message-ttl"}   # 3.10 operator-policy keys
COLUMNS = ["name", "vhost", "messages", "messages_ready", "consumers", "policy", "operator_policy"]


class QueuePolicies(Remediation):
    name = NAME
    scope = "api"
    schema = {}                       # the policies live in rabbitmq.queue_policies

    def __init__(self, config, runner=None, audit=None, api=None):
        kwargs = {"audit": audit} if runner is None else {"audit": audit, "runner": runner}
        super().__init__(config, **kwargs)
        self.rmq = rabbitmq.settings(config)
        self._api = api
        self.only_queue = None
        self.revert = False
        self.acted = []               # (vhost, queue, depth) the run acts on, for verify

    @property
    def api(self):
        if self._api is None:
            self._api = self.rmq.api()
        return self._api

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("target", help="a policy named in rabbitmq.queue_policies")
        parser.add_argument("--queue", metavar="NAME",
                            help="act on this queue only (it must match the policy)")
        parser.add_argument("--revert", action="store_true",
                            help="cap policies: delete the RabbitMQ policy this target applied")

    def target_from_args(self, args):
        self.only_queue = args.queue
        self.revert = args.revert
        return args.target

    def allowlist(self):
        return self.rmq.queue_policies

    def policy(self, target):
        entry = dict(self.allowlist()[target])
        entry.setdefault("vhost", "/")
        entry.setdefault("messages", 1000)
        entry.setdefault("no_consumers", entry["action"] == "purge")
        entry.setdefault("max_queues", 20)
        entry.setdefault("overflow_queue", "{name}.overflow")
        entry.setdefault("move_via", "auto")
        entry.setdefault("move_timeout", 120.0)
        return entry

    def resolve(self, name):
        if not name:
            raise Refused("allowlist", "no target given")
        if name not in self.allowlist():
            raise Refused("allowlist", f"{name!r} is not in rabbitmq.queue_policies "
                          f"(known: {', '.join(sorted(self.allowlist())) or 'none'})")
        target = name
        policy = self.policy(target)
        if self.revert and policy["action"] != "cap":
            raise Refused("revert", f"only cap policies can be reverted ({target} is a {policy['action']})")
        if self.only_queue is not None and not re.search(policy["pattern"], self.only_queue):
            raise Refused("allowlist", f"queue {self.only_queue!r} does not match "
                          f"rabbitmq.queue_policies.{target}.pattern")
        return target

    # -- plan --------------------------------------------------------------------------
    def candidates(self, policy):
        """Queues of the policy's vhost matching its pattern, from one listing."""
        try:
            rows = self.api.queues(policy["vhost"], COLUMNS)
        except rabbitmq.NotFound:
            raise Refused("target", f"vhost {policy['vhost']!r} does not exist") from None
        regex = re.compile(policy["pattern"])
        return [r for r in rows if isinstance(r, dict) and regex.search(r.get("name", ""))
                and (self.only_queue is None or r["name"] == self.only_queue)]

    def over(self, policy, rows):
        # consumers == 0 exactly: a queue whose count the API has not collected yet
        # (None) may well have consumers, and is left alone.
        return [r for r in rows if int(r.get("messages") or 0) > policy["messages"]
                and (not policy["no_consumers"] or r.get("consumers") == 0)]

    def plan(self, target):
        policy = self.policy(target)
        if self.revert:
            return self._plan_revert(target, policy)
        rows = self.over(policy, self.candidates(policy))
        if not rows:
            return []
        if len(rows) > policy["max_queues"]:
            raise Refused("blast_radius", f"{len(rows)} queues match {target} "
                          f"(max_queues {policy['max_queues']}): a human decides")
        self.acted = [(policy["vhost"], r["name"], int(r.get("messages") or 0)) for r in rows]
        names = [f"{r['name']} ({r.get('messages', 0)} msgs)" for r in rows]
        if policy["action"] == "cap":
            return [self._plan_cap(target, policy, rows, names)]
        if policy["action"] == "purge":
            return [Step(f"purge {r['name']} in vhost {policy['vhost']} ({r.get('messages', 0)} msgs)",
                         action=self._purger(policy["vhost"], r["name"]), details=[r["name"]])
                    for r in rows]
        steps = []
        for r in rows:
            dest = policy["overflow_queue"].format(name=r["name"])
            if re.search(policy["pattern"], dest):
                raise Refused("config", f"overflow queue {dest!r} matches the pattern of {target}: "
                              "it would be moved again")
            steps.append(Step(f"move {r['name']} ({r.get('messages', 0)} msgs) to {dest} "
                              f"in vhost {policy['vhost']}",
                              action=self._mover(policy, r["name"], dest), details=[r["name"], dest]))
        return steps

    def _definition(self, policy):
        out = {}
        if "max_length" in policy:
            out["max-length"] = policy["max_length"]
        if "max_length_bytes" in policy:
            out["max-length-bytes"] = policy["max_length_bytes"]
        if "message_ttl" in policy:
            out["message-ttl"] = int(policy["message_ttl"] * 1000)     # milliseconds
        if policy.get("overflow"):
            out["overflow"] = policy["overflow"]
        return out

    def _plan_cap(self, target, policy, rows, names):
        name = f"autoremedy-{target}"
        vhost = policy["vhost"]
        definition = self._definition(policy)
        body = {"pattern": policy["pattern"], "apply-to": "queues", "definition": definition,
                "priority": policy.get("priority", 0)}
        if set(definition) <= OPERATOR_KEYS:
            kind, where = "operator policy", f"operator-policies/{rabbitmq.path(vhost, name)}"
        else:
            kind, where = "policy", f"policies/{rabbitmq.path(vhost, name)}"
            base, outrank = self._policy_in_force(vhost, name, rows)
            if base is not None:
                body["definition"] = {**(base.get("definition") or {}), **definition}
            body["priority"] = max(body["priority"], outrank + 1)
        text = ", ".join(f"{k}={v}" for k, v in sorted(definition.items()))
        return Step(f"apply {kind} {name} ({text}) to /{policy['pattern']}/ in vhost {vhost}",
                    action=lambda: self.api.put(where, body) or f"applied, {len(rows)} queue(s) over "
                    f"{policy['messages']}", details=names)

    def _policy_in_force(self, vhost, ours, rows):
        """The user policy that governs these queues now, and the highest priority
        of every user policy matching any of them. Worked out from /api/policies
        (RabbitMQ's rule: the matching policy of highest priority wins), not from
        the queue listing's ``policy`` column, which trails changes by seconds."""
        policies = self.api.get(f"policies/{rabbitmq.path(vhost)}") or []
        in_force, outrank = {}, -1
        for row in rows:
            best = None
            for pol in policies:
                if pol.get("name") == ours or pol.get("apply-to", "all") not in ("all", "queues"):
                    continue
                try:
                    hit = re.search(pol.get("pattern", ""), row["name"])
                except re.error:
                    raise Refused("policy", f"cannot tell whether user policy {pol.get('name')!r} "
                                  f"(pattern {pol.get('pattern')!r}) applies to {row['name']}") from None
                if hit:
                    outrank = max(outrank, int(pol.get("priority") or 0))
                    if best is None or int(pol.get("priority") or 0) > int(best.get("priority") or 0):
                        best = pol
            in_force[row["name"]] = best
        names = {p["name"] for p in in_force.values() if p is not None}
        if len(names) > 1 or (names and None in in_force.values()):
            raise Refused("policy", "the queues are under different user policies ("
                          + ", ".join(sorted(names | ({"none"} if None in in_force.values() else set())))
                          + "): one overflow setting would replace them; set it per policy by hand")
        base = next((p for p in in_force.values() if p is not None), None)
        return base, outrank

    def _plan_revert(self, target, policy):
        name = f"autoremedy-{target}"
        steps = []
        for kind in ("operator-policies", "policies"):
            where = f"{kind}/{rabbitmq.path(policy['vhost'], name)}"
            try:
                self.api.get(where)
            except rabbitmq.NotFound:
                continue
            steps.append(Step(f"delete {kind[:-3]}y {name} in vhost {policy['vhost']}",
                              action=lambda w=where: self.api.delete(w) or "deleted"))
        return steps

    # -- actions -----------------------------------------------------------------------
    def _exists(self, vhost, queue):
        try:
            self.api.queue(vhost, queue, ["name"])
            return True
        except rabbitmq.NotFound:
            return False

    def _purger(self, vhost, queue):
        def purge():
            try:
                self.api.delete(f"queues/{rabbitmq.path(vhost, queue, 'contents')}")
            except rabbitmq.NotFound:
                return f"queue {queue} vanished before the purge: nothing to do"
            return "purged"
        return purge

    def _mover(self, policy, queue, dest):
        vhost = policy["vhost"]

        def move():
            # A shovel on a missing source would declare it: check first, never re-create.
            if not self._exists(vhost, queue):
                return f"queue {queue} vanished before the move: nothing to do"
            self.api.put(f"queues/{rabbitmq.path(vhost, dest)}", {"durable": True, "auto_delete": False})
            via = policy["move_via"]
            if via in ("auto", "shovel"):
                try:
                    return shovel(self.api, vhost, queue, dest, policy["move_timeout"])
                except ShovelUnavailable as exc:
                    if via == "shovel":
                        raise RemediationError(str(exc)) from None
            moved = republish(self.rmq, vhost, queue, dest)
            return f"moved {moved} message(s) with publisher confirms (AMQP)"
        return move

    # -- verify ------------------------------------------------------------------------
    def verify(self, target):
        policy = self.policy(target)
        timeout = self.settings.get("verify_timeout", 30.0)
        deadline = time.monotonic() + timeout
        first = None
        while True:
            result, depths = self._judge(target, policy)
            first = first or (time.monotonic(), depths)
            if result.status is Status.OK or time.monotonic() >= deadline:
                break
            time.sleep(1.0)
        elapsed = time.monotonic() - first[0]
        if elapsed >= 1 and depths:
            growth = {q: (d - first[1].get(q, d)) / elapsed for q, d in depths.items()}
            result.data["growth"] = {q: round(g, 2) for q, g in growth.items()}
        return result

    def _judge(self, target, policy):
        if self.revert:
            left = self._plan_revert(target, policy)
            status = Status.OK if not left else Status.CRITICAL
            return Result(NAME, f"policy autoremedy-{target} {'removed' if not left else 'still there'}",
                          status=status), {}
        rows = {r["name"]: r for r in self.candidates(policy)}
        bad, depths, texts = [], {}, []
        for vhost, queue, _ in self.acted:
            row = rows.get(queue)
            if row is None:
                texts.append(f"{queue} gone")
                continue
            depth = int(row.get("messages") or 0)
            depths[queue] = depth
            if policy["action"] == "cap" and "max_length" in policy:
                ok = int(row.get("messages_ready") or 0) <= policy["max_length"]
                limit = f"max-length {policy['max_length']}"
            elif policy["action"] == "cap":
                ok = row.get("operator_policy") == f"autoremedy-{target}" or \
                    row.get("policy") == f"autoremedy-{target}"
                limit = f"policy autoremedy-{target} in force"
            else:
                ok = depth <= policy["messages"]
                limit = f"<= {policy['messages']}"
            texts.append(f"{queue} {depth} msgs ({'ok' if ok else 'not yet'}: {limit})")
            if not ok:
                bad.append(queue)
        status = Status.CRITICAL if bad else Status.OK
        return Result(NAME, "; ".join(texts) or "nothing acted on", status=status,
                      data={"depths": depths}), depths


# --- moving messages ----------------------------------------------------------------------------

class ShovelUnavailable(Exception):
    pass


def shovel(api, vhost, queue, dest, timeout):
    """A dynamic shovel that moves the queue's current length and deletes itself."""
    import hashlib
    name = "autoremedy-move-" + hashlib.sha256(f"{vhost}\0{queue}".encode()).hexdigest()[:12]
    uri = "amqp:///" + rabbitmq.path(vhost)            # direct connection to this node, no password
    where = f"parameters/shovel/{rabbitmq.path(vhost, name)}"
    body = {"value": {"src-protocol": "amqp091", "src-uri": uri, "src-queue": queue,
                      "dest-protocol": "amqp091", "dest-uri": uri, "dest-queue": dest,
                      "src-delete-after": "queue-length", "ack-mode": "on-confirm"}}
    try:
        api.put(where, body)
    except rabbitmq.ApiError as exc:
        # 3.10 without rabbitmq_shovel: 400 "Validation failed ... component shovel not found"
        if exc.status == 400 and "component shovel not found" in str(exc):
            raise ShovelUnavailable(f"shovel plugin unavailable: {exc}") from None
        raise
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            api.get(where)
        except rabbitmq.NotFound:
            return f"moved by shovel {name} (it deleted itself when done)"
    try:
        api.delete(where)
    except rabbitmq.NotFound:
        pass
    raise RemediationError(f"shovel {name} still running after {timeout:g}s: stopped; the messages "
                           f"it moved are in {dest}, the rest are still in {queue}")


def republish(settings, vhost, queue, dest, limit=None):
    """basic.get -> publish (confirm, mandatory) -> ack: a message is acked on the
    source only once the broker confirmed it on the destination. Moves at most the
    depth seen at the start (a queue that is still being fed cannot be chased)."""
    import pika
    conn = rabbitmq.amqp_connection(settings, vhost)
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        try:
            depth = channel.queue_declare(queue, passive=True).method.message_count
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                return 0
            raise
        limit = depth if limit is None else min(limit, depth)
        moved = 0
        while moved < limit:
            method, props, body = channel.basic_get(queue, auto_ack=False)
            if method is None:
                break
            try:
                channel.basic_publish("", dest, body, props, mandatory=True)
            except (pika.exceptions.NackError, pika.exceptions.UnroutableError) as exc:
                channel.basic_nack(method.delivery_tag, requeue=True)
                raise RemediationError(f"{dest} refused a message ({type(exc).__name__}); "
                                       f"{moved} moved, the rest stay in {queue}") from None
            channel.basic_ack(method.delivery_tag)
            moved += 1
        return moved
    except pika.exceptions.AMQPError as exc:
        raise RemediationError(f"AMQP move from {queue}: {rabbitmq.amqp_error(exc)}") from None
    finally:
        try:
            conn.close()
        except Exception:
            pass


REMEDIATION = QueuePolicies
