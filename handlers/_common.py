"""What the sensu, zabbix and hook handlers share: bounded input, configuration
that fails safe, dead letters, and the last line of defence.

Private (leading underscore): not a handler of its own, not an entry point.
"""
import os
import sys

from autoremedy.contract.exitcodes import EXIT_BAD_INPUT, EXIT_CONFIG, EXIT_ESCALATED
from autoremedy.contract.runtime import describe, fail

READ_CAP = 64 << 20        # never hold more than this in memory, whatever the settings


def read_input(stream=None, cap=READ_CAP):
    """All of stdin (bytes) up to ``cap``; (data, total size). A larger input is
    drained and counted, so the writer never blocks on a full pipe."""
    stream = stream if stream is not None else sys.stdin.buffer
    chunks, size = [], 0
    while True:
        chunk = stream.read(1 << 16)
        if not chunk:
            break
        if size < cap:
            chunks.append(chunk[:cap - size])
        size += len(chunk)
    return b"".join(chunks), size


class Setup:
    """The configuration, or — when it cannot be loaded — enough of a fallback
    (state directory from the environment or the default) to keep the event."""

    def __init__(self, path=None, environ=None):
        from autoremedy.config import Config, ConfigError, env_overrides, merge
        self.error = None
        try:
            self.config = Config.load(path, environ)
        except ConfigError as exc:
            self.error = str(exc)
            try:
                self.config = Config(merge({}, env_overrides(environ or os.environ)), None, environ)
            except ConfigError:
                self.config = Config({}, None, environ)
        self.audit = _audit(self.config)

    @property
    def max_event_size(self):
        return int(self.config.get("spool.max_event_size") or (1 << 20))

    @property
    def read_cap(self):
        """Bytes of stdin worth holding: enough to parse the largest event allowed
        and to keep the head of a larger one as a dead letter (the rest is
        drained and counted, never kept)."""
        from autoremedy.pipeline.deadletter import Limits
        keep = Limits.from_config(self.config).max_file
        return min(READ_CAP, max(self.max_event_size, keep) + 1)


def _audit(config):
    from autoremedy.audit import audit_for
    return audit_for(config)


def reject(setup, raw, reason, source, total=None, argv=None):
    """Malformed input or a bad command line: keep the raw bytes as a dead letter
    (capped: autoremedy.pipeline.deadletter), audit, one line, exit 2."""
    from autoremedy.pipeline.deadletter import Limits
    from autoremedy.audit import safe_audit
    from autoremedy.pipeline.spool import Spool
    size = len(raw) if total is None else total
    note = ""

    def audit(what, result, **fields):
        safe_audit(setup.audit, what, result, **fields)
    try:
        kept = Spool(setup.config.state_dir).deadletter(
            raw, reason, source, size=size, argv=argv, limits=Limits.from_config(setup.config),
            audit=audit)
        note = f" (raw input kept in {kept})"
    except OSError as exc:
        kept = None
        note = f" (and the raw input could not be kept: {exc.strerror or exc})"
    safe_audit(setup.audit, "deadletter", "error", source=source, reason=reason, size=size,
               path=kept)
    return fail(f"{source} event rejected: {reason}{note}", EXIT_BAD_INPUT)


def parse_or_reject(setup, raw, source, parse, total=None):
    """``parse()`` -> Event, or the exit code of ``reject``: a malformed input,
    and any error at all while parsing, keeps the raw input with the reason."""
    from autoremedy.pipeline.event import MalformedEvent
    try:
        return parse(), None
    except MalformedEvent as exc:
        return None, reject(setup, raw, str(exc), source, total)
    except Exception as exc:                  # noqa: BLE001 - the last line of defence
        if os.environ.get("AUTOREMEDY_DEBUG"):
            raise
        return None, reject(setup, raw, f"internal error while parsing: {describe(exc)}",
                            source, total)


def config_failure(setup, event):
    """The configuration is broken: keep the event in the fallback state directory
    (replay delivers it once the configuration is fixed) and say so loudly."""
    from autoremedy.pipeline.spool import Spool
    try:
        entry = Spool(setup.config.state_dir).put(event, claim=False)
        where = f"event spooled as {entry.path}"
    except OSError as exc:
        where = f"and the event could not be spooled: {exc.strerror or exc}"
    return fail(f"configuration error: {setup.error}; {where}", EXIT_CONFIG)


def run_dispatch(setup, event, path, raw, source, dry_run=False, cls=None, target=None):
    """dispatch() behind the last line of defence: a bug of ours must not lose
    the event, so an unexpected exception keeps the raw input as a dead letter."""
    from autoremedy.pipeline.route import dispatch
    try:
        decision = dispatch(setup.config, event, path, dry_run=dry_run, cls=cls, target=target,
                            audit=setup.audit)
    except Exception as exc:
        if os.environ.get("AUTOREMEDY_DEBUG"):
            raise
        reject(setup, raw, f"internal error while handling {event.describe()}: {describe(exc)}",
               source)
        return None, EXIT_ESCALATED
    decision.print()
    return decision, decision.exit_code


def split_options(argv, flags, valued):
    """Leading options only, then everything else verbatim: a Zabbix subject may
    start with '-' and must not be taken for an option. Returns (options, rest)."""
    from autoremedy.contract.runtime import UsageError
    options, i = {}, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return options, argv[i + 1:]
        name, eq, value = arg.partition("=")
        if name in flags and not eq:
            options[name] = True
        elif name in valued:
            if not eq:
                if i + 1 >= len(argv):
                    raise UsageError(f"{name} needs a value")
                i += 1
                value = argv[i]
            options[name] = value
        else:
            break
        i += 1
    return options, argv[i:]
