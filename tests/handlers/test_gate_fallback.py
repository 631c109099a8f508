"""The local fallback's choice of the sudo gate (fallback.gate) and how the
gate's answer is read. The real thing — the zabbix user, real sudo, the
packaged gate and sudoers — is tests/privilege/test_fallback_gate.py; here the
decision table and the reading of every kind of answer, with the gate's process
replaced by recorded answers."""
import json
import subprocess

import pytest

from autoremedy.config import Config
from autoremedy.pipeline.route import gate_for, through_gate


def config(**fallback):
    return Config({"fallback": fallback} if fallback else {}, environ={})


def test_auto_uses_the_gate_only_when_not_root_and_installed(tmp_path):
    gate = tmp_path / "remediate"
    gate.write_text("#!/bin/sh\n")
    assert config().get("fallback.gate") == "auto"
    assert gate_for(config(gate_command=str(gate)), euid=0) is None          # root: here
    assert gate_for(config(gate_command=str(gate)), euid=112) == str(gate)
    assert gate_for(config(gate_command=str(tmp_path / "absent")), euid=112) is None
    assert gate_for(config(gate="never", gate_command=str(gate)), euid=112) is None
    # always: even as root, and even when missing (through_gate refuses then).
    assert gate_for(config(gate="always", gate_command=str(gate)), euid=0) == str(gate)
    assert gate_for(config(gate="always", gate_command=str(tmp_path / "absent")),
                    euid=112) == str(tmp_path / "absent")


@pytest.mark.parametrize("fallback, message", [
    ({"gate": "sometimes"}, "fallback.gate: 'sometimes' is not auto, always or never"),
    ({"gate": True}, "fallback.gate: expected a string"),
    ({"gate_command": "remediate"}, "fallback.gate_command: 'remediate' is not an absolute path"),
    ({"sudo": "yes"}, "fallback.sudo: unknown key"),
])
def test_fallback_settings_are_validated(make_config, run_cli, fallback, message):
    ran = run_cli("config", "check", "--config", make_config({"fallback": fallback}))
    assert ran.returncode == 3 and message in ran.stdout + ran.stderr, ran


class Recorded:
    """Stands for subprocess.run: records the argv, answers as told."""

    def __init__(self, code, stdout="", stderr=""):
        self.code, self.stdout, self.stderr = code, stdout, stderr
        self.calls = []

    def __call__(self, argv, **kwargs):
        self.calls.append((argv, kwargs))
        return subprocess.CompletedProcess(argv, self.code, self.stdout.encode(),
                                           self.stderr.encode())


@pytest.fixture
def gate(tmp_path):
    path = tmp_path / "remediate"
    path.write_text("#!/bin/sh\n")
    return str(path)


def test_the_argv_is_a_list_with_the_decided_class_target_and_id(gate):
    answer = {"class": "process", "target": "svc", "outcome": "remediated",
              "reason": "verified OK", "guard": None, "notes": ["started"],
              "verify": {"status": "OK", "summary": "1 process"}, "duration_s": 1.5,
              "event_id": "zabbix-4711", "plan": [{"step": "start svc"}]}
    run = Recorded(0, "some line first\n" + json.dumps(answer) + "\n")
    outcome = through_gate(gate, "process", "svc", "zabbix-4711", dry_run=True, run=run)
    [(argv, kwargs)] = run.calls
    assert argv[1:] == ["-n", gate, "process", "svc", "zabbix-4711", "--dry-run"]
    assert argv[0].endswith("/sudo") and "shell" not in kwargs
    assert kwargs["stdin"] == subprocess.DEVNULL and kwargs["timeout"] > 0
    assert (outcome.cls_name, outcome.target, outcome.status, outcome.reason) == \
        ("process", "svc", "remediated", "verified OK")
    assert outcome.verify == {"status": "OK", "summary": "1 process"} and not outcome.escalate
    assert outcome.line() == "process svc: remediated: verified OK"


def test_an_escalating_outcome_of_the_gate_escalates(gate):
    answer = {"class": "disk", "target": "/var", "outcome": "failed",
              "reason": "verification failed: CRITICAL", "guard": None}
    outcome = through_gate(gate, "disk", "/var", "e1", run=Recorded(1, json.dumps(answer)))
    assert outcome.status == "failed" and outcome.escalate


def test_an_event_id_the_gate_would_refuse_is_left_out(gate):
    run = Recorded(0, json.dumps({"outcome": "noop", "class": "process", "target": "svc"}))
    through_gate(gate, "process", "svc", "id with spaces;rm", run=run)
    through_gate(gate, "process", "svc", "-leading-dash", run=run)
    assert [argv[2:] for argv, _ in run.calls] == [[gate, "process", "svc"]] * 2


@pytest.mark.parametrize("stderr, expected", [
    ("sudo: a password is required\n", "sudo refused the gate (sudo -n {gate}): "
                                        "sudo: a password is required"),
    ("Sorry, user zabbix is not allowed to execute '/x' as root on n.\n",
     "sudo refused the gate (sudo -n {gate}): Sorry, user zabbix is not allowed to execute"),
    ("Sorry, user zabbix may not run sudo on cmp-07.\n",
     "sudo refused the gate (sudo -n {gate}): Sorry, user zabbix may not run sudo on cmp-07."),
    ("remediate: invalid target\n", "the sudo gate exited 2: remediate: invalid target"),
    ("", "the sudo gate exited 2: exit status 2, nothing said"),
])
def test_anything_but_a_json_outcome_is_a_refusal_with_its_line(gate, stderr, expected):
    outcome = through_gate(gate, "process", "svc", "e1", run=Recorded(2 if "remediate" in stderr
                                                                      or not stderr else 1,
                                                                      "", stderr))
    assert outcome.status == "refused" and outcome.guard == "gate" and outcome.escalate
    assert outcome.reason.startswith(expected.format(gate=gate)), outcome.reason


def test_a_missing_gate_is_refused_without_running_sudo(tmp_path):
    run = Recorded(0)
    outcome = through_gate(str(tmp_path / "absent"), "process", "svc", "e1", run=run)
    assert run.calls == [] and outcome.status == "refused"
    assert "is not installed (fallback.gate_command)" in outcome.reason


def test_a_gate_that_hangs_is_a_failure(gate):
    def hangs(argv, **kwargs):
        raise subprocess.TimeoutExpired(argv, kwargs["timeout"])
    outcome = through_gate(gate, "process", "svc", "e1", run=hangs)
    assert outcome.status == "failed" and "did not answer" in outcome.reason
