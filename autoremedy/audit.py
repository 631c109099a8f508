"""The audit trail: one JSON line per decision, plus the same line to syslog.

Every guard verdict, plan, action and verification is recorded with what, why,
target, result and duration, so an operator can answer "what did the robot do
at 3 a.m. and why" from one file (``<state_dir>/audit.log``) or from syslog
(ident ``autoremedy``, facility daemon). Writes are single ``O_APPEND`` writes
under an advisory lock, so concurrent handler processes never interleave lines.
"""
import fcntl
import json
import os
import socket
import syslog
import time

from autoremedy import redact, safefs

_SYSLOG_PRIORITY = {"ok": syslog.LOG_INFO, "refused": syslog.LOG_WARNING,
                    "failed": syslog.LOG_ERR, "escalated": syslog.LOG_ERR,
                    "error": syslog.LOG_ERR}


def audit_for(config):
    """The audit trail of ``config``: <state_dir>/audit.log, this host's name."""
    return Audit(os.path.join(config.state_dir, "audit.log"), hostname=config.hostname)


class Audit:
    def __init__(self, path, use_syslog=True, hostname=None):
        self.path = path
        self.use_syslog = use_syslog
        self.hostname = hostname or socket.gethostname()
        self.failed = 0

    def record(self, what, result, **fields):
        """Append one record. ``what`` names the decision ('guard', 'run', 'verify',
        'forward', 'deadletter' ...); ``result`` is its outcome word. The line
        goes to syslog even when the file cannot take it; then OSError is
        raised for the caller to say so (safe_audit below: one line on stderr)."""
        entry = {"ts": round(time.time(), 3), "host": self.hostname, "pid": os.getpid(),
                 "what": what, "result": result}
        entry.update({k: v for k, v in fields.items() if v is not None})
        line = redact.text(json.dumps(entry, sort_keys=True, default=str, ensure_ascii=True))
        try:
            self._append(line)
        finally:
            if self.use_syslog:
                self._syslog(result, line)
        return entry

    def lost(self, exc):
        """The file could not take a record: say so once per process on stderr
        (the monitor's output), never silently."""
        self.failed += 1
        if self.failed == 1:
            import sys
            where = "syslog only" if self.use_syslog else "nowhere"
            sys.stderr.write(f"autoremedy: audit log {self.path} not written "
                             f"({redact.text(str(exc.strerror or exc))}): records went to "
                             f"{where}\n")

    def _append(self, line):
        # The state directory is writable by the monitoring users' group: a link
        # planted at audit.log is refused, never appended through (safefs).
        with safefs.open_dir(os.path.dirname(os.path.abspath(self.path)),
                             create=True) as directory:
            fd = directory.open(os.path.basename(self.path),
                                os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    @staticmethod
    def _syslog(result, line):
        try:
            syslog.openlog("autoremedy", syslog.LOG_PID, syslog.LOG_DAEMON)
            syslog.syslog(_SYSLOG_PRIORITY.get(result, syslog.LOG_NOTICE), line)
        except OSError:
            pass  # no syslog socket (containers): the file is the record of truth


def tail(path, limit=20, predicate=None):
    """The last ``limit`` records (optionally filtered), oldest first."""
    try:
        with safefs.open_dir(os.path.dirname(os.path.abspath(path))) as directory:
            fd = directory.open(os.path.basename(path), os.O_RDONLY)
        with os.fdopen(fd, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 512 * 1024))
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for raw in reversed(lines):
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if predicate is None or predicate(entry):
            out.append(entry)
            if len(out) >= limit:
                break
    return list(reversed(out))


def safe_audit(audit, what, result, **fields):
    """An audit write must never cost an event: a full or read-only disk (or a
    link planted at audit.log) is reported on stderr, not raised."""
    if audit is None:
        return None
    try:
        return audit.record(what, result, **fields)
    except OSError as exc:
        lost = getattr(audit, "lost", None)
        if lost is not None:
            lost(exc)               # one line on stderr: never dropped silently
        return None
