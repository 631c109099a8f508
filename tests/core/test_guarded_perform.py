"""perform(): every guard, on a remediation whose actions are recorded, not executed."""
import json
import multiprocessing
import os
import time

import pytest

from autoremedy.audit import Audit
from autoremedy.config import Config
from autoremedy.contract.noharm import Reach
from autoremedy.contract.remediation import Remediation, Step, Trigger, perform
from autoremedy.contract.result import Result


class Recorder(Remediation):
    """Healthy after one run; every action appends to a file (shared across processes)."""
    name = "demo"
    schema = {"targets": dict}

    def __init__(self, config, log, healthy=False, fail_run=False, fail_verify=False, slow=0.0):
        super().__init__(config)
        self.log, self.healthy = log, healthy
        self.fail_run, self.fail_verify, self.slow = fail_run, fail_verify, slow

    def plan(self, target):
        if self.healthy or os.path.exists(self.log + "." + target):
            return []
        return [Step(f"fix {target}", ["true"])]

    def run(self, target, plan):
        if self.slow:
            time.sleep(self.slow)
        if self.fail_run:
            raise RuntimeError("step exploded")
        with open(self.log, "a") as handle:
            handle.write(f"{os.getpid()} {target}\n")
        if not self.fail_verify:
            open(self.log + "." + target, "w").close()
        return ["fixed"]

    def reach(self, target, plan):
        # The marker of the planned target, and no other target's, may change.
        def markers():
            return {t: os.path.exists(self.log + "." + t) for t in self.allowlist()}
        return [Reach("marker", [target], markers, how="os.path.exists")]

    def invariants(self, target, plan):
        return []

    def verify(self, target):
        ok = os.path.exists(self.log + "." + target)
        return Result("demo", "ok" if ok else "still broken", status=0 if ok else 2)


@pytest.fixture
def setup(tmp_path):
    def make(guards=None, enabled=True, targets=("a", "b", "c"), **kw):
        data = {"state_dir": str(tmp_path / "state"), "maintenance_file": str(tmp_path / "maint"),
                "hostname": "node-1",
                "remediations": {"demo": {"enabled": enabled, "targets": {t: {} for t in targets},
                                          "guards": guards or {}}}}
        config = Config(data)
        log = str(tmp_path / "actions.log")
        rem = Recorder(config, log, **kw)
        rem.audit = Audit(str(tmp_path / "state" / "audit.log"), use_syslog=False)
        return rem
    return make


def runs(rem):
    try:
        with open(rem.log) as handle:
            return handle.read().splitlines()
    except FileNotFoundError:
        return []


def audit_lines(rem):
    with open(rem.audit.path) as handle:
        return [json.loads(line) for line in handle]


def reset(rem, target):
    os.unlink(rem.log + "." + target)


def test_remediates_verifies_and_audits(setup):
    rem = setup()
    outcome = perform(rem, "a", Trigger(event_id="e1"))
    assert outcome.status == "remediated" and not outcome.escalate
    assert len(runs(rem)) == 1
    record = audit_lines(rem)[-1]
    assert record["outcome"] == "remediated" and record["target"] == "a" and record["event_id"] == "e1"
    assert record["plan"] == [{"step": "fix a", "argv": ["true"]}] and record["verify"]["status"] == "OK"


def test_not_enabled_is_refused(setup):
    outcome = perform(setup(enabled=False), "a")
    assert outcome.status == "refused" and outcome.guard == "enabled" and outcome.escalate


@pytest.mark.parametrize("target", ["zzz", "", "../../etc/passwd", "a; rm -rf /"])
def test_targets_outside_the_allowlist_are_refused(setup, target):
    rem = setup()
    outcome = perform(rem, target)
    assert outcome.status == "refused" and outcome.guard == "allowlist"
    assert runs(rem) == []


def test_silenced_events_are_skipped_not_escalated(setup):
    outcome = perform(setup(), "a", Trigger(silenced=True))
    assert outcome.status == "skipped" and not outcome.escalate


def test_maintenance_file(setup, tmp_path):
    rem = setup()
    maint = tmp_path / "maint"
    maint.write_text("")
    assert perform(rem, "a").guard == "maintenance"
    maint.write_text("# other hosts only\nnode-2\n")
    assert perform(rem, "a").status == "remediated"
    reset(rem, "a")
    maint.write_text("node-1\n")
    assert perform(rem, "a").status == "refused"
    maint.write_text("demo:b\n")
    assert perform(rem, "b").status == "refused" and perform(rem, "a").status == "remediated"


def test_min_occurrences(setup):
    rem = setup(guards={"min_occurrences": 3})
    assert perform(rem, "a", Trigger(occurrences=2)).status == "skipped"
    assert perform(rem, "a", Trigger(occurrences=3)).status == "remediated"


def test_flapping_from_the_monitor_history_is_refused(setup):
    rem = setup(guards={"flap": {"changes": 4, "window": 600}})
    outcome = perform(rem, "a", Trigger(history=[0, 2, 0, 2, 0, 2]))
    assert outcome.status == "refused" and outcome.guard == "flapping"


def test_flapping_from_our_own_record_of_triggers(setup):
    rem = setup(guards={"flap": {"changes": 3, "window": 600}}, healthy=True)
    for status in (2, 0, 2):
        assert perform(rem, "a", Trigger(status=status)).status == "noop"
    assert perform(rem, "a", Trigger(status=0)).guard == "flapping"


def test_an_event_is_handled_once(setup):
    rem = setup()
    assert perform(rem, "a", Trigger(event_id="same")).status == "remediated"
    reset(rem, "a")
    second = perform(rem, "a", Trigger(event_id="same"))
    assert second.status == "skipped" and second.guard == "duplicate"
    assert len(runs(rem)) == 1


def test_rate_limit_per_target_then_escalate(setup):
    rem = setup(guards={"rate_limit": {"max": 2, "per": 3600}})
    for _ in range(2):
        assert perform(rem, "a").status == "remediated"
        reset(rem, "a")
    third = perform(rem, "a")
    assert third.status == "refused" and third.guard == "rate_limit" and "does not hold" in third.reason
    assert perform(rem, "b").status == "remediated"     # other targets are not limited


def test_global_cap_across_targets(setup):
    rem = setup(guards={"global_cap": {"max": 2, "per": 3600}})
    assert [perform(rem, t).status for t in ("a", "b", "c")] == ["remediated", "remediated", "refused"]


def test_noop_runs_do_not_count_toward_limits(setup):
    rem = setup(guards={"rate_limit": {"max": 1, "per": 3600}}, healthy=True)
    assert [perform(rem, "a").status for _ in range(3)] == ["noop"] * 3


def test_dry_run_plans_and_changes_nothing(setup):
    rem = setup()
    outcome = perform(rem, "a", dry_run=True)
    assert outcome.status == "dry-run" and [s.description for s in outcome.plan] == ["fix a"]
    assert runs(rem) == []
    assert audit_lines(rem)[-1]["dry_run"] is True


def test_failed_run_and_failed_verification_escalate(setup):
    failed = perform(setup(fail_run=True), "a")
    assert failed.status == "failed" and "step exploded" in failed.reason and failed.escalate
    unverified = perform(setup(fail_verify=True), "b")
    assert unverified.status == "failed" and "verification failed: CRITICAL" in unverified.reason


def _worker(args):
    tmp, barrier_path = args
    data = {"state_dir": os.path.join(tmp, "state"), "hostname": "node-1",
            "maintenance_file": os.path.join(tmp, "maint"),
            "remediations": {"demo": {"enabled": True, "targets": {"a": {}}}}}
    rem = Recorder(Config(data), os.path.join(tmp, "actions.log"), slow=0.2)
    while not os.path.exists(barrier_path):
        time.sleep(0.005)
    return perform(rem, "a", Trigger(event_id="evt-20")).status


def test_twenty_processes_with_the_same_event_remediate_once(tmp_path):
    barrier = str(tmp_path / "go")
    with multiprocessing.get_context("fork").Pool(20) as pool:
        pending = pool.map_async(_worker, [(str(tmp_path), barrier)] * 20)
        time.sleep(0.5)
        open(barrier, "w").close()
        statuses = pending.get(timeout=60)
    with open(tmp_path / "actions.log") as handle:
        assert len(handle.read().splitlines()) == 1
    assert sorted(statuses).count("remediated") == 1
    assert all(s in ("remediated", "skipped") for s in statuses)
