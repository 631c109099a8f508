"""Delivering the spool to StackStorm, oldest first: the Replayer that ``autoremedy
replay`` (handlers/replay.py), the continuous forwarder (``replay --follow``) and a
handler's bounded drain after a delivery (pipeline/route.py) all use. It lives in
the pipeline so that the core never imports a handler; the command line, its
options and exit codes stay in handlers/replay.py.

One kept-alive connection per client. While StackStorm is unreachable the same
(oldest) event is retried with exponential backoff (0.5 s doubling up to
``backoff_max``) until ``max_time`` is spent; a 4xx stops the run at once
(configuration error: retrying cannot help).
"""
import random
import time


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
        self._remove = remover.put
        seen = set()
        while self.stopped is None:
            listed = len(seen)
            for _, entry in self._entries(seen):
                if self.limit and self.delivered >= self.limit:
                    self.stopped = "limit"
                    break
                if self.clock() > self.deadline:
                    self.stopped = "time"
                    break
                if not self.deliver(entry):
                    break
            if len(seen) == listed:
                break                             # no name the spool had not listed before

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
