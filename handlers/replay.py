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
import time

from autoremedy.contract.exitcodes import EXIT_BAD_INPUT, EXIT_CONFIG, EXIT_LEFT, EXIT_OK
from autoremedy.contract.runtime import ArgumentParser, UsageError, fail
from autoremedy.pipeline.replayer import Replayer


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
