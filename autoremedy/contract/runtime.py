"""The guarded entry point: no traceback ever reaches the monitor.

Like nagiosplugin's ``@guarded``: a bad option, an uncaught exception or the
global timeout becomes UNKNOWN (exit 3) with one line of reason, never CRITICAL
for the plugin's own fault. ``AUTOREMEDY_DEBUG=1`` re-raises for developers.
"""
import argparse
import os
import signal
import sys

from autoremedy.contract.ranges import RangeError
from autoremedy.contract.result import CheckError, Result, Status


class UsageError(Exception):
    """Bad command line: reported in one line, never with argparse's exit 2."""


class Timeout(Exception):
    pass


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting 2 (2 means CRITICAL)."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


def fixed_width_help(prog):
    """argparse's default formatter imports shutil (and bz2, lzma) just to read the
    terminal width, on every parser construction: ~2 ms of a check's start-up."""
    return argparse.HelpFormatter(prog, width=100, max_help_position=32)


def _on_alarm(signum, frame):
    raise Timeout()


class deadline:
    """Raise Timeout in the main thread after ``seconds`` (SIGALRM; 0 disables)."""

    def __init__(self, seconds):
        self.seconds = seconds

    def __enter__(self):
        if self.seconds and self.seconds > 0:
            self._old = signal.signal(signal.SIGALRM, _on_alarm)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc):
        if self.seconds and self.seconds > 0:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._old)
        return False


def describe(exc):
    """One line naming the error: 'PermissionError: [Errno 13] ... /proc/1/environ'."""
    text = " ".join(str(exc).split())
    kind = type(exc).__name__
    return f"{kind}: {text}" if text else kind


def guarded_result(name, func, timeout):
    """Run ``func() -> Result``; turn every failure into an UNKNOWN Result."""
    try:
        with deadline(timeout):
            return func()
    except Timeout:
        return Result.unknown(name, f"timed out after {timeout:g}s")
    except (CheckError, RangeError) as exc:
        return Result.unknown(name, str(exc))
    except KeyboardInterrupt:
        return Result.unknown(name, "interrupted")
    except Exception as exc:  # the whole point: a plugin bug is UNKNOWN, not CRITICAL
        if os.environ.get("AUTOREMEDY_DEBUG"):
            raise
        return Result.unknown(name, f"internal error: {describe(exc)}")


def fail(message, code=Status.UNKNOWN):
    """Print one line to stderr and return the exit code (for non-check commands)."""
    from autoremedy import redact
    sys.stderr.write(f"autoremedy: {redact.text(str(message))}\n")
    return int(code)
