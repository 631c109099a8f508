import time

from autoremedy.contract.result import CheckError, Result, Status
from autoremedy.contract.runtime import ArgumentParser, UsageError, guarded_result

import pytest


def test_exceptions_become_unknown_with_one_line_reason():
    def boom():
        raise PermissionError(13, "Permission denied", "/proc/1/environ")
    result = guarded_result("process", boom, 5)
    assert result.status is Status.UNKNOWN
    assert result.summary == "internal error: PermissionError: [Errno 13] Permission denied: '/proc/1/environ'"


def test_check_error_is_the_deliberate_cannot_tell():
    def cannot():
        raise CheckError("systemd is not running")
    assert guarded_result("p", cannot, 5).summary == "systemd is not running"


def test_timeout_becomes_unknown():
    started = time.monotonic()
    result = guarded_result("slow", lambda: time.sleep(5), 0.2)
    assert result.status is Status.UNKNOWN and result.summary == "timed out after 0.2s"
    assert time.monotonic() - started < 2


def test_a_normal_result_passes_through():
    ok = Result("x", "fine", status=0)
    assert guarded_result("x", lambda: ok, 1) is ok


def test_argument_errors_raise_instead_of_exiting_2():
    parser = ArgumentParser(prog="p")
    parser.add_argument("--n", type=int)
    with pytest.raises(UsageError) as err:
        parser.parse_args(["--n", "x"])
    assert "invalid int value" in str(err.value)
