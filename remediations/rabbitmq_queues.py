"""Overflowed queues, by policy: cap with a RabbitMQ policy, move to an overflow queue, or purge.

Strictly opt-in per queue pattern. A target is a policy named in
``rabbitmq.queue_policies``; it plans the queues of its vhost whose name
matches its pattern and that are over its ``messages`` threshold (and, with
``no_consumers``, have no consumer). **What the run changes is exactly what it
plans**: the policy RabbitMQ gets names the planned queues and nothing else::

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
        metering:
          pattern: '^metering\\.sample$'
          action: purge
          disposable: true                 # required: purge deletes messages
    remediations:
      rabbitmq-queues: {enabled: true}

cap
    Applies RabbitMQ policy ``autoremedy-<target>`` whose pattern is the
    anchored, escaped list of the governed queues (``^(?:a|b)$``:
    autoremedy.clients.queue_patterns), never the operator's pattern, so the regex
    dialect does not matter and a new queue that happens to match is not
    capped. Each run re-plans: queues newly over the threshold join, queues
    already governed stay (while they exist and still match), queues that no
    longer match, or are now protected, are released; an empty plan applies
    nothing. Without ``overflow`` it is an *operator* policy, which RabbitMQ
    merges with the user policies already there (an OpenStack ``ha-all`` stays
    in force). ``overflow`` is not allowed in operator policies (3.10 answers
    400), so then it is a user policy that copies the definition of the one
    user policy the queues are under and outranks every matching one; queues
    under different user policies are refused.
move
    Declares the durable overflow queue, then a dynamic shovel with
    ``src-delete-after: queue-length`` and ``ack-mode: on-confirm`` (it moves
    what is there and deletes itself), or, without the shovel plugin, basic.get
    → publish with publisher confirms and ``mandatory`` → ack, one message at a time.
purge
    ``DELETE /api/queues/<vhost>/<name>/contents``, only when ``disposable: true``.

**RPC queues are protected** (autoremedy.clients.oslo_queues): oslo.messaging's reply
and fanout queues, and topic / server queues that have a consumer or had one
within ``rabbitmq.rpc_window`` (the consumer history the check and this class
keep), are never capped or moved unless the policy says ``rpc_queues: allow``,
and never purged. They are left out of the plan with the reason; a plan of
nothing but protected queues is refused naming them.

**No harm** (autoremedy.contract.noharm): the reach is the planned queues, read as
every queue of the vhost with its ``policy``, ``operator_policy`` and
``effective_policy_definition`` (one listing before, one after); the
invariants are the message counts of every consumer-less queue outside the
plan (not fewer), the queues that cannot vanish by themselves (none deleted)
and the queues outside the plan under ``autoremedy-<target>`` (none new).

A queue deleted between the listing and the action is reported and skipped,
never re-created. The verification re-reads depth and policy through the API
until they hold or ``verify_timeout`` expires: the API's statistics lag by up
to ~5 s (a policy change shows in the listing ~4-5 s later, for every queue of
the vhost in the same statistics round), so one read right after the action
proves nothing — and the no-harm reading after the verification sees the
policy columns of every queue as of after the change.
"""
import time

from autoremedy.clients import oslo_queues, queue_patterns, rabbitmq
from autoremedy.contract.guard import Refused
from autoremedy.contract.noharm import Invariant, Reach
from autoremedy.contract.remediation import Noop, Remediation, RemediationError, Step
from autoremedy.contract.result import Result, Status

NAME = "rabbitmq-queues"
OPERATOR_KEYS = {"max-length", "max-length-bytes", "message-ttl"}   # 3.10 operator-policy keys
COLUMNS = ["name", "vhost", "messages", "messages_ready", "consumers", "policy", "operator_policy",
           "effective_policy_definition", "auto_delete", "exclusive", "arguments"]
KINDS = ("operator-policies", "policies")


class Planned:
    """What one plan changes, for the steps, the reach and the verification."""

    def __init__(self, vhost):
        self.vhost = vhost
        self.rows = {}            # the plan's listing: {name: row}
        self.names = []           # the queues the run changes (the reach)
        self.expect = {}          # {name: (before, after) -> bool}
        self.final = []           # cap: the queues governed after the run
        self.released = []        # cap: the queues it stops governing
        self.acted = []           # (vhost, queue, depth) the verification judges
        self.unchanged = None     # cap: why nothing changes (run raises Noop)


class QueuePolicies(Remediation):
    name = NAME
    scope = "api"
    schema = {}                       # the policies live in rabbitmq.queue_policies

    def __init__(self, config, runner=None, audit=None, api=None, clock=time.time):
        kwargs = {"audit": audit} if runner is None else {"audit": audit, "runner": runner}
        super().__init__(config, **kwargs)
        self.rmq = rabbitmq.settings(config)
        self._api = api
        self.clock = clock
        self.only_queue = None
        self.revert = False
        self.planned = None
        self._world = None            # the latest listing of the vhost, shared by one reading
        self._world_used = {}
        self._exact = None            # exact counts of the watched queues, once per reading
        self._watched = []

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
        entry.setdefault("rpc_queues", "protect")
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
        if self.only_queue is not None and not queue_patterns.compile(policy["pattern"]).search(
                self.only_queue):
            raise Refused("allowlist", f"queue {self.only_queue!r} does not match "
                          f"rabbitmq.queue_policies.{target}.pattern")
        return target

    # -- reading ---------------------------------------------------------------------
    def listing(self, policy):
        """Every queue of the policy's vhost, in one request: {name: row}."""
        try:
            rows = self.api.queues(policy["vhost"], COLUMNS)
        except rabbitmq.NotFound:
            raise Refused("target", f"vhost {policy['vhost']!r} does not exist") from None
        return {r["name"]: r for r in rows if isinstance(r, dict) and isinstance(r.get("name"), str)}

    def candidates(self, policy, rows=None):
        """Queues of the policy's vhost matching its pattern (and --queue)."""
        rows = self.listing(policy) if rows is None else rows
        regex = queue_patterns.compile(policy["pattern"])
        return [r for r in rows.values() if regex.search(r["name"])
                and (self.only_queue is None or r["name"] == self.only_queue)]

    def over(self, policy, rows):
        # consumers == 0 exactly: a queue whose count the API has not collected yet
        # (None) may well have consumers, and is left alone.
        return [r for r in rows if int(r.get("messages") or 0) > policy["messages"]
                and (not policy["no_consumers"] or r.get("consumers") == 0)]

    # -- RPC protection ----------------------------------------------------------------
    def protections(self, policy, rows):
        """{name: reason} for every queue of ``rows`` (the vhost) the policy may not act on."""
        vhost = policy["vhost"]
        kinds, topics = oslo_queues.classify(list(rows))
        history = oslo_queues.ConsumerHistory(oslo_queues.history_path(self.config.state_dir))
        now = self.clock()
        try:
            seen = history.update([{"vhost": vhost, "name": n, "consumers": r.get("consumers")}
                                   for n, r in rows.items()],
                                  {(vhost, n): k for n, k in kinds.items()}, now)
        except (OSError, TimeoutError) as exc:
            seen = None                # no history: every topic/server queue counts as live
            history_error = getattr(exc, "strerror", None) or str(exc)
        window = self.rmq.rpc_window
        out = {}
        for name, kind in kinds.items():
            if kind not in oslo_queues.RPC_KINDS:
                continue
            row = rows[name]
            if kind in ("reply", "fanout"):
                why = f"an oslo.messaging {kind} queue"
            else:
                what = (f"the RPC server queue of {oslo_queues.server_label(topics[name], name[len(topics[name]) + 1:])}"
                        if kind == "server" else f"the RPC topic queue {name}")
                consumers = row.get("consumers")
                entry = None if seen is None else seen.get(vhost + "\0" + name)
                if consumers:
                    why = f"{what}, {consumers} consumer(s)"
                elif seen is None:
                    why = f"{what}, consumer history unreadable ({history_error})"
                elif consumers is None:
                    why = f"{what}, consumers not counted yet"
                elif entry and entry.get("lost") is not None and now - entry["lost"] > window:
                    continue           # consumer-less for the whole window: an ordinary queue
                elif entry and entry.get("seen"):
                    why = f"{what}, last consumer {_ago(now - entry['seen'])} ago (rpc_window {_ago(window)})"
                else:
                    why = f"{what}, no consumer seen but watched for less than rpc_window ({_ago(window)})"
            if policy["action"] == "purge":
                out[name] = f"{why}: RPC queues are never purged"
            elif policy["rpc_queues"] != "allow":
                out[name] = f"{why}: protected (rpc_queues: allow to {policy['action']} it)"
        return out

    # -- plan --------------------------------------------------------------------------
    def plan(self, target):
        policy = self.policy(target)
        planned = self.planned = Planned(policy["vhost"])
        rows = planned.rows = self.listing(policy)
        self._world = rows                        # the "before" reading, taken with the plan
        if self.revert:
            return self._plan_revert(target, policy, planned)
        protected = self.protections(policy, rows)
        over = self.over(policy, self.candidates(policy, rows))
        skipped = [r["name"] for r in over if r["name"] in protected]
        over = [r for r in over if r["name"] not in protected]
        notes = [f"{n}: left alone: {protected[n]}" for n in skipped]
        if policy["action"] == "cap":
            steps = self._plan_cap(target, policy, planned, over, protected)
        else:
            steps = self._plan_each(target, policy, planned, over)
        if not steps and skipped:
            raise Refused("rpc", "every queue this policy would act on is an RPC queue: "
                          + "; ".join(notes))
        if steps and notes:
            steps[0].details.extend(notes)
        return steps

    def _plan_each(self, target, policy, planned, over):
        if not over:
            return []
        if len(over) > policy["max_queues"]:
            raise Refused("blast_radius", f"{len(over)} queues match {target} "
                          f"(max_queues {policy['max_queues']}): a human decides")
        vhost = policy["vhost"]
        planned.acted = [(vhost, r["name"], int(r.get("messages") or 0)) for r in over]
        planned.names = [r["name"] for r in over]
        if policy["action"] == "purge":
            return [Step(f"purge {r['name']} in vhost {vhost} ({r.get('messages', 0)} msgs)",
                         action=self._purger(vhost, r["name"]), details=[r["name"]]) for r in over]
        steps = []
        regex = queue_patterns.compile(policy["pattern"])
        for r in over:
            dest = policy["overflow_queue"].format(name=r["name"])
            if regex.search(dest):
                raise Refused("config", f"overflow queue {dest!r} matches the pattern of {target}: "
                              "it would be moved again")
            planned.names.append(dest)
            steps.append(Step(f"move {r['name']} ({r.get('messages', 0)} msgs) to {dest} "
                              f"in vhost {vhost}",
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

    def policy_pattern(self, names):
        """The pattern RabbitMQ gets: exactly these queues (a widened subclass
        in the no-harm tests overrides this to prove the reach check works)."""
        return queue_patterns.exact_pattern(names)

    def _applied(self, vhost, name):
        """{kind: body} of our policy as RabbitMQ has it now (operator and/or user)."""
        out = {}
        for kind in KINDS:
            try:
                out[kind] = self.api.get(f"{kind}/{rabbitmq.path(vhost, name)}")
            except rabbitmq.NotFound:
                pass
        return out

    def _governed(self, name, applied, rows):
        """The existing queues our policy governs now: read from its exact pattern,
        or, for a pattern that is not one (left by an older version), from the
        listing's policy columns (RabbitMQ's own view of which policy applies)."""
        governed = set()
        for body in applied.values():
            names = queue_patterns.exact_names((body or {}).get("pattern"))
            if names is None:
                governed |= {n for n, r in rows.items()
                             if name in (r.get("policy"), r.get("operator_policy"))}
            else:
                governed |= {n for n in names if n in rows}
        return governed

    def _plan_cap(self, target, policy, planned, over, protected):
        name = f"autoremedy-{target}"
        vhost = policy["vhost"]
        rows = planned.rows
        definition = self._definition(policy)
        kind = "operator-policies" if set(definition) <= OPERATOR_KEYS else "policies"
        applied = self._applied(vhost, name)
        governed = self._governed(name, applied, rows)
        regex = queue_patterns.compile(policy["pattern"])
        release = {}
        for queue in sorted(governed):
            if not regex.search(queue):
                release[queue] = "no longer matches the pattern"
            elif queue in protected:
                release[queue] = protected[queue].split(":")[0] + ": protected"
        new = [r["name"] for r in over if r["name"] not in governed]
        final = sorted((governed - set(release)) | set(new))
        if len(final) > policy["max_queues"]:
            raise Refused("blast_radius", f"{len(final)} queues would be under {name} "
                          f"(max_queues {policy['max_queues']}): a human decides")
        body = None
        if final:
            body = {"pattern": self.policy_pattern(final), "apply-to": "queues",
                    "definition": dict(definition), "priority": policy.get("priority", 0)}
            if kind == "policies":
                base, outrank = self._policy_in_force(vhost, name, [rows[q] for q in final])
                if base is not None:
                    body["definition"] = {**(base.get("definition") or {}), **definition}
                body["priority"] = max(body["priority"], outrank + 1)
        stale = [k for k in applied if k != kind or body is None]
        current = applied.get(kind)
        same = body is not None and current is not None and all(
            current.get(k) == body[k] for k in ("pattern", "apply-to", "definition", "priority"))
        if same and not stale:
            if not over:
                return []
            planned.unchanged = (f"policy {name} already in force on " + ", ".join(final)
                                 + ": nothing to change")
            return [Step(f"keep {name} on {len(final)} queue(s) in vhost {vhost} (unchanged)",
                         action=lambda: "unchanged", details=list(final))]
        if not final and not stale:
            return []
        # Queues that stay under an unchanged definition do not change: only a
        # new definition (or priority) reaches every governed queue.
        definition_changed = current is None or body is None or any(
            current.get(k) != body[k] for k in ("apply-to", "definition", "priority"))
        changed = set(new) | set(release) | (set(final) if definition_changed else set())
        changed |= {q for k in stale for q in self._governed(name, {k: applied[k]}, rows)}
        planned.final, planned.released = final, sorted(release)
        planned.names = sorted(changed)
        planned.acted = [(vhost, q, int(rows[q].get("messages") or 0)) for q in final]
        planned.expect = {q: _under(name) for q in final}
        planned.expect.update({q: _not_under(name) for q in changed - set(final)})
        details = ([f"{q} ({rows[q].get('messages', 0)} msgs): cap" for q in new]
                   + [f"{q}: stays capped" for q in final if q not in new]
                   + [f"{q}: released ({why})" for q, why in release.items()])
        steps = []
        text = ", ".join(f"{k}={v}" for k, v in sorted(definition.items()))
        label = "operator policy" if kind == "operator-policies" else "policy"
        if body is not None:
            where = f"{kind}/{rabbitmq.path(vhost, name)}"
            steps.append(Step(f"apply {label} {name} ({text}) to exactly {len(final)} queue(s) "
                              f"in vhost {vhost}: {body['pattern']}",
                              action=lambda: self.api.put(where, body) or
                              f"applied to {len(final)} queue(s)", details=details))
            details = []
        for k in stale:
            where = f"{k}/{rabbitmq.path(vhost, name)}"
            steps.append(Step(f"delete {k[:-3]}y {name} in vhost {vhost}",
                              action=lambda w=where: self._delete(w), details=details))
        return steps

    def _delete(self, where):
        try:
            self.api.delete(where)
        except rabbitmq.NotFound:
            return "already gone"
        return "deleted"

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
                pattern = pol.get("pattern", "")
                try:
                    if queue_patterns.dialect_problem(pattern):
                        raise ValueError(queue_patterns.dialect_problem(pattern))
                    hit = queue_patterns.compile(pattern).search(row["name"])
                except (ValueError, Exception) as exc:
                    raise Refused("policy", f"cannot tell whether user policy {pol.get('name')!r} "
                                  f"(pattern {pattern!r}) applies to {row['name']}: {exc}") from None
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

    def _plan_revert(self, target, policy, planned):
        name = f"autoremedy-{target}"
        applied = self._applied(policy["vhost"], name)
        governed = sorted(self._governed(name, applied, planned.rows))
        planned.names = governed
        planned.released = governed
        planned.expect = {q: _not_under(name) for q in governed}
        return [Step(f"delete {kind[:-3]}y {name} in vhost {policy['vhost']}",
                     action=lambda w=f"{kind}/{rabbitmq.path(policy['vhost'], name)}": self._delete(w),
                     details=[f"{q}: released" for q in governed])
                for kind in applied]

    def run(self, target, plan):
        if self.planned is not None and self.planned.unchanged:
            raise Noop(self.planned.unchanged)
        return super().run(target, plan)

    # -- no harm -----------------------------------------------------------------------
    def _read_world(self):
        """One listing of the vhost per reading: the reach reads it, the invariants
        of the same reading use it (the plan's listing serves as the first one)."""
        if self._world is None:
            self._world = self.listing(self.policy(self._target))
        rows, self._world_used = self._world, self._world
        self._world = None
        self._exact = None
        return rows

    def _exact_counts(self):
        """{queue: [messages, consumers] or None (absent)} for the watched queues,
        by passive declares over one AMQP connection, once per reading."""
        if self._exact is None:
            self._exact = passive_counts(self.rmq, self.planned.vhost, self._watched)
        return self._exact

    def _rows(self):
        """The rows of the current reading (read by the reach just before)."""
        return self._world_used

    def reach(self, target, plan):
        self._target = target
        policy = self.policy(target)
        planned = self.planned
        how = (f"GET /api/queues/{rabbitmq.path(policy['vhost'])}?columns=name,policy,"
               "operator_policy,effective_policy_definition,... (every queue of the vhost)")

        def read():
            return {n: {"policy": r.get("policy"), "operator_policy": r.get("operator_policy"),
                        "effective": r.get("effective_policy_definition")}
                    for n, r in self._read_world().items()}
        # Queues that appear during the run are tolerated (OpenStack services
        # declare queues all the time): a new queue under our policy breaks the
        # "none new" invariant below instead.
        return [Reach("queue", planned.names, read=read, how=how, expect=planned.expect, appear=True)]

    def invariants(self, target, plan):
        policy = self.policy(target)
        planned = self.planned
        ours = f"autoremedy-{target}"
        reached = set(planned.names)
        how = f"the same listing of vhost {policy['vhost']}"
        out = []
        # A queue nobody consumes loses messages only to a purge, a move, a
        # length limit or expiry: its count must not drop. The API's counts
        # trail the broker by up to ~5 s (a move or purge just done still shows
        # its old depth), so these are read exactly, by AMQP passive declares
        # (~0.6 ms each), for the consumer-less queues the listing shows with
        # messages: the ones with something to lose. (A policy reaching further
        # is caught by the reach whatever the depths.)
        watched = sorted(n for n, r in planned.rows.items()
                         if n not in reached and r.get("consumers") in (0, None)
                         and int(r.get("messages") or 0) > 0)
        self._watched = watched
        amqp = f"AMQP passive declare in vhost {policy['vhost']} (exact messages and consumers)"
        for name in watched:
            out.append(Invariant(
                f"messages in {name} (no consumer, outside the plan)", amqp,
                read=lambda n=name: self._exact_counts().get(n),
                holds=lambda b, a, v=_can_vanish(planned.rows[name]): _kept(b, a, v),
                rule="not fewer"))
        out.append(Invariant(
            "queues outside the plan that cannot vanish by themselves", how,
            read=lambda: sorted(n for n, r in self._rows().items()
                                if n not in reached and not _can_vanish(r)),
            holds=lambda b, a: set(b or []) <= set(a or []), rule="none deleted"))
        out.append(Invariant(
            f"queues outside the plan under {ours}", how,
            read=lambda: sorted(n for n, r in self._rows().items() if n not in reached
                                and ours in (r.get("policy"), r.get("operator_policy"))),
            holds=lambda b, a: set(a or []) <= set(b or []), rule="none new"))
        return out

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
        """One reading: are the planned queues as the plan said? For a cap that
        includes the policy columns of the listing, so the verification ends
        only once the statistics round after the change is visible (the
        no-harm reading after it then sees every queue's policy as of then)."""
        ours = f"autoremedy-{target}"
        rows = self.listing(policy)
        planned = self.planned
        bad, depths, texts = [], {}, []
        for queue in planned.released:
            row = rows.get(queue)
            if row is not None and ours in (row.get("policy"), row.get("operator_policy")):
                bad.append(queue)
                texts.append(f"{queue} still under {ours}")
        if self.revert:
            left = self._applied(policy["vhost"], ours)
            if left:
                bad.append(ours)
            texts.insert(0, f"policy {ours} {'still there' if left else 'removed'}")
        for vhost, queue, _ in planned.acted:
            row = rows.get(queue)
            if row is None:
                texts.append(f"{queue} gone")
                continue
            depth = int(row.get("messages") or 0)
            depths[queue] = depth
            if policy["action"] == "cap":
                ok = ours in (row.get("policy"), row.get("operator_policy"))
                limit = f"{ours} in force"
                if ok and "max_length" in policy:
                    ok = int(row.get("messages_ready") or 0) <= policy["max_length"]
                    limit += f", max-length {policy['max_length']}"
            else:
                ok = depth <= policy["messages"]
                limit = f"<= {policy['messages']}"
            texts.append(f"{queue} {depth} msgs ({'ok' if ok else 'not yet'}: {limit})")
            if not ok:
                bad.append(queue)
        status = Status.CRITICAL if bad else Status.OK
        return Result(NAME, "; ".join(texts) or "nothing acted on", status=status,
                      data={"depths": depths}), depths


def _under(policy_name):
    return lambda before, after: after is not None and policy_name in (
        after.get("policy"), after.get("operator_policy"))


def _not_under(policy_name):
    return lambda before, after: after is None or policy_name not in (
        after.get("policy"), after.get("operator_policy"))


def _kept(before, after, can_vanish):
    """The 'not fewer' rule for a consumer-less queue: [messages, consumers]."""
    if before is None:
        return True                    # it was not there: nothing to lose
    if after is None:
        return can_vanish              # deleted: harm, unless it expires by itself
    if before[1] or after[1]:
        return True                    # a consumer took them: not ours to judge
    return after[0] >= before[0]


def passive_counts(settings, vhost, names):
    """Exact [messages, consumers] per queue (None: it does not exist) by AMQP
    passive declares on one connection (~0.5-1.8 ms each)."""
    import pika
    out = {}
    if not names:
        return out
    conn = rabbitmq.amqp_connection(settings, vhost)
    try:
        channel = conn.channel()
        for name in names:
            try:
                ok = channel.queue_declare(name, passive=True).method
                out[name] = [ok.message_count, ok.consumer_count]
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code != 404:
                    raise
                out[name] = None
                channel = conn.channel()
    finally:
        try:
            conn.close()
        except Exception:
            pass
    return out


def _can_vanish(row):
    """Exclusive, auto-delete or expiring queues (x-expires, or an ``expires``
    policy) go away by themselves: their absence is no harm of ours."""
    args = row.get("arguments") or {}
    effective = row.get("effective_policy_definition") or {}
    return bool(row.get("exclusive") or row.get("auto_delete") or "x-expires" in args
                or (isinstance(effective, dict) and "expires" in effective))


def _ago(seconds):
    from autoremedy.contract import units
    return units.human_duration(max(0.0, seconds))


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
