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

_SYSLOG_PRIORITY = {"ok": syslog.LOG_INFO, "refused": syslog.LOG_WARNING,
                    "failed": syslog.LOG_ERR, "escalated": syslog.LOG_ERR,
                    "error": syslog.LOG_ERR}


class Audit:
    def __init__(self, path, use_syslog=True, hostname=None):
        self.path = path
        self.use_syslog = use_syslog
        self.hostname = hostname or socket.gethostname()

    def record(self, what, result, **fields):
        """Append one record. ``what`` names the decision ('guard', 'run', 'verify',
        'forward', 'deadletter' ...); ``result`` is its outcome word."""
        entry = {"ts": round(time.time(), 3), "host": self.hostname, "pid": os.getpid(),
                 "what": what, "result": result}
        entry.update({k: v for k, v in fields.items() if v is not None})
        line = json.dumps(entry, sort_keys=True, default=str, ensure_ascii=True)
        self._append(line)
        if self.use_syslog:
            self._syslog(result, line)
        return entry

    def _append(self, line):
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, mode=0o750, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
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
        with open(path, "rb") as handle:
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
