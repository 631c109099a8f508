"""``autoremedy replay``: deliver the spool to StackStorm, oldest first.

    $ autoremedy replay
    autoremedy: replayed hook cmp-07/process CRITICAL (id hook-5f1c...): HTTP 202 (remediated locally: process nova-compute remediated)
    autoremedy: replay: 1 delivered in 0.0s, spool empty

One kept-alive connection for the whole run. While StackStorm is unreachable the
same (oldest) event is retried with exponential backoff (0.5 s doubling up to
``--backoff-max``) until ``--max-time`` is spent; the events stay in order and
in the spool. A 4xx stops the run at once (configuration error: retrying cannot
help). Each delivery carries the event's marks (``autoremedy.replayed``,
``remediated_locally``, ``local``, ``escalated``), and the same trace tag as any
earlier attempt. Entries that a running handler still holds are left to it.

Only one replay runs at a time (a lock in the spool); a second one exits 0 at
once, so a systemd timer can fire it as often as it likes. The circuit breaker
does not gate replay (replay *is* the probe) but learns from it: a successful
replay closes it for every handler on the host.

``--concurrency N`` delivers over N kept-alive connections at once: events of
one incident (one event id) always go through the same connection, one after
the other, so their order holds; across incidents the spool order is no longer
the arrival order. ``--follow`` makes replay the continuous forwarder: it never
ends, delivers what handlers spool within ~0.2 s, and keeps a heartbeat
(``spool/.forwarder.json``) by which handlers configured with
``stackstorm.delivery: forwarder`` know they may hand events over instead of
waiting on StackStorm themselves (docs/fleet.md, "Storm-proof delivery").

Options: ``--config FILE``, ``--max-time DURATION`` (default 60s), ``--limit N``,
``--backoff-max DURATION`` (default 30s), ``--concurrency N`` (default 1),
``--follow``, ``--quiet`` (summary only), ``--json``.
Exit: 0 spool drained (or another replay is running), 1 StackStorm unreachable
or not configured with events left, 2 bad command line, 3 configuration error.
"""
import random
import time

from autoremedy.contract.exitcodes import EXIT_BAD_INPUT, EXIT_CONFIG, EXIT_LEFT, EXIT_OK
from autoremedy.contract.runtime import ArgumentParser, UsageError, fail


def parser():
    from autoremedy.contract import units
    p = ArgumentParser(prog="autoremedy replay", description="Deliver the spool to StackStorm")
    p.add_argument("--config", metavar="FILE", help="configuration file")
    p.add_argument("--max-time", type=units.duration, default=60.0, metavar="DURATION",
                   help="stop retrying after this long (default 60s)")
    p.add_argument("--limit", type=int, default=0, metavar="N",
                   help="deliver at most N events (default: all)")
    p.add_argument("--backoff-max", type=units.duration, default=30.0, metavar="DURATION",
                   help="longest wait between retries (default 30s)")
    p.add_argument("--concurrency", type=int, default=1, metavar="N",
                   help="connections delivering at once; order is kept per incident "
                        "(default 1: spool order)")
    p.add_argument("--follow", action="store_true",
                   help="run as the continuous forwarder (never ends; heartbeat for handlers)")
    p.add_argument("--quiet", action="store_true", help="print the summary only")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


class Replayer:
    """Deliver spool entries in order through one client; ``sleep`` and ``clock``
    are injected so tests can run backoff without waiting."""

    def __init__(self, spool, client, breaker=None, audit=None, hostname="", max_time=60.0,
                 limit=0, backoff_max=30.0, say=None, sleep=time.sleep, clock=time.monotonic,
                 clients=()):
        self.spool, self.client, self.breaker, self.audit = spool, client, breaker, audit
        # More than one client: delivered in parallel, one incident per client (_run_parallel).
        self.clients = list(clients) or [client]
        import threading
        self._mutex = threading.Lock()
        self.hostname = hostname
        self.limit, self.backoff_max = limit, backoff_max
        self.say = say or (lambda text: None)
        self.sleep, self.clock = sleep, clock
        self.deadline = clock() + max_time
        self.delivered = self.retries = self.corrupt = 0
        self.claimed = set()
        self.stopped = None          # why the run ended early: 'unreachable', 'config', 'limit', 'time'
        self.last_error = None
        self._breaker_closed = False
        self._remove = spool.remove       # run() overlaps removals on a helper thread

    def run(self):
        import os
        from autoremedy import safefs
        # The spool and the audit log's directory are walked from / once for
        # the run, not once per event (safefs.kept: the fds verified here).
        held = [self.spool.dir]
        if getattr(self.audit, "path", None):
            held.append(os.path.dirname(os.path.abspath(self.audit.path)))
        with safefs.kept(*held):
            remover = _Remover(self.spool)
            try:
                self._run(remover)
            finally:
                remover.close()
        return self

    def _entries(self, seen):
        """(name, Entry) still to deliver, in spool order; corrupt ones quarantined."""
        from autoremedy.pipeline.spool import CorruptEntry
        for name in [n for n in self.spool.names() if n not in seen]:
            seen.add(name)
            try:
                entry = self.spool.load(name)
            except CorruptEntry as exc:
                self.spool.quarantine(name, str(exc))
                self.corrupt += 1
                self._audit("replay", "error", reason=f"corrupt entry moved to the dead letters: {exc}")
                continue
            if entry is None:
                continue                      # delivered by someone else meanwhile
            if self.spool.claimed(entry):
                self.claimed.add(name)
                continue
            yield name, entry

    def _run_parallel(self, remover):
        """One worker per client, each with its own queue: an event goes to the
        worker its incident (event id) hashes to, so one incident's events keep
        their order while the workers' round trips overlap. Queues are bounded:
        the spool stays the buffer."""
        import queue
        import threading
        import zlib
        self._remove = remover.put
        queues = [queue.Queue(maxsize=64) for _ in self.clients]

        def work(client, inbox):
            while True:
                entry = inbox.get()
                if entry is None:
                    return
                if self.stopped is None:
                    self.deliver(entry, client)
        workers = [threading.Thread(target=work, args=(c, q), daemon=True)
                   for c, q in zip(self.clients, queues)]
        for worker in workers:
            worker.start()
        seen, sent = set(), 0
        try:
            while self.stopped is None:
                batch = list(self._entries(seen))
                if not batch:
                    break
                for _, entry in batch:
                    if self.stopped is not None:
                        break
                    if self.limit and sent >= self.limit:
                        self.stopped = "limit"
                        break
                    if self.clock() > self.deadline:
                        self.stopped = "time"
                        break
                    queues[zlib.crc32(entry.id.encode()) % len(queues)].put(entry)
                    sent += 1
        finally:
            for inbox in queues:
                inbox.put(None)
            for worker in workers:
                worker.join()

    def _run(self, remover):
        if len(self.clients) > 1:
            return self._run_parallel(remover)
        from autoremedy.pipeline.spool import CorruptEntry
        self._remove = remover.put
        seen = set()
        while self.stopped is None:
            names = [n for n in self.spool.names() if n not in seen]
            if not names:
                break
            for name in names:
                seen.add(name)
                if self.limit and self.delivered >= self.limit:
                    self.stopped = "limit"
                    break
                if self.clock() > self.deadline:
                    self.stopped = "time"
                    break
                try:
                    entry = self.spool.load(name)
                except CorruptEntry as exc:
                    self.spool.quarantine(name, str(exc))
                    self.corrupt += 1
                    self._audit("replay", "error", reason=f"corrupt entry moved to the dead letters: {exc}")
                    continue
                if entry is None:
                    continue                      # delivered by someone else meanwhile
                if self.spool.claimed(entry):
                    self.claimed.add(name)
                    continue
                if not self.deliver(entry):
                    break

    def deliver(self, entry, client=None):
        """True when delivered; False when the run must stop (sets ``stopped``)."""
        from autoremedy.pipeline.stackstorm import document
        from autoremedy.pipeline.stackstorm import CONFIG
        client = client or self.client
        event = dict(entry.data["event"])
        raw = event.pop("raw", None)
        doc = document(entry.data, event, raw, self.hostname, replayed=True)
        delay = 0.5
        while True:
            if self.stopped is not None and len(self.clients) > 1:
                return False          # another worker stopped the run: leave it spooled
            delivery = client.post(doc, entry.id)
            if delivery.ok:
                self._remove(entry)
                with self._mutex:
                    self.delivered += 1
                self._closed()
                self._audit("replay", "ok", event_id=entry.id, source=event.get("source"),
                            event_host=event.get("host"), check=event.get("check"),
                            code=delivery.code,
                            request_id=delivery.request_id, attempts=entry.attempts + 1,
                            remediated_locally=doc["autoremedy"]["remediated_locally"],
                            escalated=doc["autoremedy"]["escalated"])
                self.say(f"replayed {_describe(event)}: HTTP {delivery.code}{_marks(doc)}")
                return True
            self.last_error = delivery.reason
            if delivery.outcome == CONFIG:
                self._give_up(entry, delivery, "config")
                return False
            if self.breaker is not None:
                try:
                    self.breaker.failure(delivery.reason)
                except OSError:
                    pass
                self._breaker_closed = False
            wait = delay * random.uniform(0.8, 1.2)
            if self.clock() + wait > self.deadline:
                self._give_up(entry, delivery, "unreachable")
                return False
            with self._mutex:
                self.retries += 1
            self.sleep(wait)
            delay = min(delay * 2, self.backoff_max)

    def _give_up(self, entry, delivery, why):
        self.stopped = why
        entry.attempted(delivery.reason)
        try:
            self.spool.save(entry, release=False)
        except OSError:
            pass
        self._audit("replay", "error", event_id=entry.id, outcome=delivery.outcome,
                    code=delivery.code, reason=delivery.reason)

    def _closed(self):
        if self.breaker is not None and not self._breaker_closed:
            try:
                self.breaker.success()
            except OSError:
                pass
            self._breaker_closed = True

    def _audit(self, what, result, **fields):
        from autoremedy.audit import safe_audit
        with self._mutex:
            safe_audit(self.audit, what, result, **fields)

    def summary(self, elapsed):
        left = self.spool.stats()
        return {"delivered": self.delivered, "retries": self.retries, "corrupt": self.corrupt,
                "claimed": len(self.claimed), "left": left["depth"], "stopped": self.stopped,
                "last_error": self.last_error, "seconds": round(elapsed, 3),
                "rate": round(self.delivered / elapsed, 1) if elapsed > 0 else None}


class _Remover:
    """Unlinks delivered entries on a helper thread, overlapping the next POST:
    an unlink can cost as much as the request (ext4 with online discard). A crash
    before the queue drains re-delivers those few events once, same trace tag."""

    def __init__(self, spool):
        import queue
        import threading
        self.spool = spool
        self.queue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()

    def put(self, entry):
        self.queue.put(entry)

    def _work(self):
        while True:
            entry = self.queue.get()
            if entry is None:
                return
            self.spool.remove(entry)

    def close(self):
        self.queue.put(None)
        self.thread.join()


def _describe(event):
    return f"{event.get('source')} {event.get('host')}/{event.get('check')} " \
           f"{event.get('state')} (id {event.get('id')})"


def _marks(doc):
    marks = doc["autoremedy"]
    notes = [f"{m['class']} {m['target']} {m['outcome']}" for m in marks["local"]]
    text = f" (remediated locally: {'; '.join(notes)})" if marks["remediated_locally"] else \
        (f" (local: {'; '.join(notes)})" if notes else "")
    if marks["escalated"]:
        text += " (escalated)"
    return text


def main(argv):
    import json
    from autoremedy import statefile
    from autoremedy.pipeline.breaker import Breaker
    from autoremedy.audit import audit_for
    from autoremedy.config import Config, ConfigError
    from autoremedy.pipeline.spool import Spool
    from autoremedy.pipeline.stackstorm import Client, SettingsError
    try:
        args = parser().parse_args(argv)
    except UsageError as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    try:
        config = Config.load(args.config)
        client = Client.from_config(config)
    except (ConfigError, SettingsError) as exc:
        return fail(f"configuration error: {exc}", EXIT_CONFIG)
    spool = Spool(config.state_dir)
    say = (lambda text: None) if (args.quiet or args.json) else \
        (lambda text: print(f"autoremedy: {text}", flush=True))
    try:
        with statefile.locked(spool.replay_lock_path, timeout=0):
            spool.sweep_temp()
            if client is None:
                depth = spool.stats()["depth"]
                code = EXIT_LEFT if depth else EXIT_OK
                if args.json:
                    print(json.dumps({"delivered": 0, "retries": 0, "corrupt": 0, "claimed": 0,
                                      "left": depth, "stopped": "not-configured",
                                      "last_error": "StackStorm is not configured (stackstorm.url)",
                                      "seconds": 0.0, "rate": None}, sort_keys=True))
                    return code
                return fail(f"replay: StackStorm is not configured (stackstorm.url); "
                            f"{depth} event(s) wait in {spool.dir}", code)
            if args.concurrency < 1:
                return fail("--concurrency must be at least 1", EXIT_BAD_INPUT)
            clients = [client] + [Client.from_config(config) for _ in range(args.concurrency - 1)]
            if args.follow:
                return follow(spool, clients, config, args, say)
            started = time.monotonic()
            replayer = Replayer(spool, client, Breaker.for_config(config), audit_for(config),
                                config.hostname, args.max_time, args.limit, args.backoff_max, say,
                                clients=clients)
            try:
                replayer.run()
            finally:
                for each in clients:
                    each.close()
            summary = replayer.summary(time.monotonic() - started)
    except TimeoutError:
        print("autoremedy: replay: another replay is running; leaving the spool to it")
        return EXIT_OK
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        print(f"autoremedy: replay: {_summary_line(summary)}")
    if summary["stopped"] == "config":
        return fail(f"replay stopped: StackStorm configuration error: {summary['last_error']}",
                    EXIT_CONFIG)
    if summary["stopped"] == "unreachable":
        return EXIT_LEFT
    return EXIT_OK


POLL = 0.2                   # an idle forwarder looks at the spool this often


def follow(spool, clients, config, args, say):
    """The continuous forwarder: replay passes for ever over kept-alive
    connections, a heartbeat between them. While StackStorm is unreachable a
    pass backs off (up to --backoff-max) and the next one tries again; the
    breaker it opens is what handlers read to decide on the local fallback."""
    import signal
    import threading
    from autoremedy.pipeline import forwarder
    from autoremedy.pipeline.breaker import Breaker
    from autoremedy.audit import audit_for
    breaker, audit = Breaker.for_config(config), audit_for(config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def beat():
        # Its own thread: a long pass (StackStorm slow, a deep spool) must not
        # make the forwarder look dead to the handlers.
        while not stop.is_set():
            try:
                forwarder.beat(spool, len(clients))
            except OSError:
                pass
            stop.wait(forwarder.EVERY)
    threading.Thread(target=beat, name="heartbeat", daemon=True).start()
    total = 0
    try:
        while not stop.is_set():
            replayer = Replayer(spool, clients[0], breaker, audit, config.hostname,
                                args.backoff_max + forwarder.EVERY, 0, args.backoff_max, say,
                                clients=clients)
            replayer.run()
            total += replayer.delivered
            if replayer.stopped == "config":
                return fail(f"forwarder stopped: StackStorm configuration error: "
                            f"{replayer.last_error}", EXIT_CONFIG)
            if not replayer.delivered:
                stop.wait(POLL)
    finally:
        stop.set()
        for each in clients:
            each.close()
        forwarder.gone(spool)
    print(f"autoremedy: forwarder: {total} delivered, stopping")
    return EXIT_OK


def _summary_line(s):
    text = f"{s['delivered']} delivered in {s['seconds']:.1f}s"
    if s["delivered"] >= 20 and s["rate"]:
        text += f" ({s['rate']:.0f}/s)"
    if s["retries"]:
        text += f", {s['retries']} retries"
    if s["corrupt"]:
        text += f", {s['corrupt']} corrupt moved to the dead letters"
    if s["claimed"]:
        text += f", {s['claimed']} held by running handlers"
    if s["left"]:
        text += f", {s['left']} left in the spool"
        if s["stopped"] == "unreachable":
            text += f" (StackStorm unreachable: {s['last_error']})"
        elif s["stopped"] in ("time", "limit"):
            text += f" ({s['stopped']} reached)"
    else:
        text += ", spool empty"
    return text
