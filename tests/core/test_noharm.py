"""The no-harm contract in perform(): reach and invariants read before and after.

A remediation over files in a temporary directory: its plan names the files it
removes; the harness widens the run (it also removes a file the plan does not
name) or breaks an invariant, and the outcome must be ``failed`` with the
difference named — never ``remediated``.
"""
import json
import os

import pytest

from autoremedy.audit import Audit
from autoremedy.config import Config
from autoremedy.contract.noharm import Invariant, Reach
from autoremedy.contract.remediation import Noop, Remediation, Step, Trigger, perform
from autoremedy.contract.result import Result


class Sweeper(Remediation):
    """Removes ``junk-*`` files from a directory; ``keep`` must survive."""
    name = "sweep"
    schema = {"targets": dict}

    def __init__(self, config, root, widen=False, break_keep=False, unreadable=None,
                 noop_in_run=False, partial=False):
        super().__init__(config)
        self.root, self.widen, self.break_keep = root, widen, break_keep
        self.unreadable, self.noop_in_run, self.partial = unreadable, noop_in_run, partial
        self.ran = False

    def junk(self):
        return sorted(n for n in os.listdir(self.root) if n.startswith("junk-"))

    def plan(self, target):
        return [Step(f"remove {n}", details=[n]) for n in self.junk()]

    def world(self):
        if self.unreadable == "world":
            raise PermissionError("listing denied")
        return {n: os.stat(os.path.join(self.root, n)).st_size for n in os.listdir(self.root)}

    def keep_size(self):
        if self.unreadable == "keep":
            raise OSError("keep: no such file")
        return os.path.getsize(os.path.join(self.root, "keep"))

    def reach(self, target, plan):
        return [Reach("file", [s.details[0] for s in plan], self.world, how="os.listdir + stat",
                      expect={s.details[0]: lambda b, a: a is None for s in plan})]

    def invariants(self, target, plan):
        return [Invariant("size of keep", "os.path.getsize", self.keep_size)]

    def run(self, target, plan):
        self.ran = True
        if self.noop_in_run:
            raise Noop("someone else swept it")
        for step in plan:
            os.unlink(os.path.join(self.root, step.details[0]))
        if self.widen:
            os.unlink(os.path.join(self.root, "bystander"))
        if self.break_keep:
            with open(os.path.join(self.root, "keep"), "a") as handle:
                handle.write("more")
        return ["swept"]

    def verify(self, target):
        left = self.junk()
        if self.partial:        # e.g. one Galera node of three back
            result = Result("sweep", "1 of 3 back", status=2)
            result.partial = True
            return result
        return Result("sweep", f"{len(left)} junk file(s) left", status=2 if left else 0)


@pytest.fixture
def sweeper(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    for name, text in (("junk-1", "x" * 10), ("junk-2", "y" * 20), ("keep", "k"),
                       ("bystander", "b")):
        (root / name).write_text(text)

    def make(**kw):
        data = {"state_dir": str(tmp_path / "state"), "maintenance_file": str(tmp_path / "m"),
                "remediations": {"sweep": {"enabled": True, "targets": {"t": {}}}}}
        rem = Sweeper(Config(data), str(root), **kw)
        rem.audit = Audit(str(tmp_path / "state" / "audit.log"), use_syslog=False)
        return rem
    make.root = root
    return make


def last_audit(rem):
    with open(rem.audit.path) as handle:
        return json.loads(handle.read().splitlines()[-1])


def test_a_run_inside_its_reach_is_verified_and_shows_its_evidence(sweeper):
    outcome = perform(sweeper(), "t")
    assert outcome.status == "remediated" and outcome.reason == "verified OK"
    shown = outcome.to_dict()
    assert shown["reach"] == [{"kind": "file", "names": ["junk-1", "junk-2"],
                               "how": "os.listdir + stat", "watched": 4,
                               "changed": ["junk-1", "junk-2"]}]
    assert shown["invariants"] == [{"name": "size of keep", "how": "os.path.getsize",
                                    "rule": "unchanged", "before": 1, "after": 1,
                                    "holds": True}]
    assert shown["harm"] == []
    record = last_audit(sweeper())      # the same audit file
    assert record["reach"][0]["names"] == ["junk-1", "junk-2"]
    assert record["invariants"][0]["after"] == 1


def test_a_widened_run_is_failed_with_the_file_outside_the_reach_named(sweeper):
    outcome = perform(sweeper(widen=True), "t")
    assert outcome.status == "failed" and outcome.escalate
    assert outcome.harm == ["file bystander changed outside the plan: 1 -> (absent)"]
    assert "harm detected (check OK)" in outcome.reason and "bystander" in outcome.reason


def test_a_broken_invariant_is_failed_even_when_the_check_passes(sweeper):
    outcome = perform(sweeper(break_keep=True), "t")
    assert outcome.status == "failed"
    assert outcome.harm == ["file keep changed outside the plan: 1 -> 5",
                            "invariant broken: size of keep (unchanged): 1 -> 5"]


@pytest.mark.parametrize("what,named", [("keep", "size of keep (os.path.getsize): keep: no such"),
                                        ("world", "files (os.listdir + stat): listing denied")])
def test_evidence_that_cannot_be_read_refuses_before_anything_runs(sweeper, what, named):
    rem = sweeper(unreadable=what)
    outcome = perform(rem, "t")
    assert outcome.status == "refused" and outcome.guard == "no-harm"
    assert named in outcome.reason and not rem.ran
    assert sorted(os.listdir(sweeper.root)) == ["bystander", "junk-1", "junk-2", "keep"]


def test_the_dry_run_lists_reach_and_invariants_with_their_values_before(sweeper, capsys):
    rem = sweeper()
    outcome = perform(rem, "t", dry_run=True)
    assert outcome.status == "dry-run" and not rem.ran
    shown = outcome.to_dict()
    assert shown["reach"][0]["names"] == ["junk-1", "junk-2"] and "changed" not in shown["reach"][0]
    assert shown["invariants"][0]["before"] == 1 and "after" not in shown["invariants"][0]
    from autoremedy.cli import print_outcome
    print_outcome(outcome)
    text = capsys.readouterr().out
    assert "reach: file: junk-1, junk-2 (of 4 watched: os.listdir + stat)" in text
    assert "invariant: size of keep [unchanged; os.path.getsize]: 1" in text


def test_a_run_that_finds_nothing_to_do_is_noop_and_spends_no_rate_slot(sweeper):
    rem = sweeper(noop_in_run=True)
    rem.settings["guards"] = {"rate_limit": {"max": 1, "per": 3600}}
    for _ in range(3):
        outcome = perform(rem, "t")
        assert outcome.status == "noop" and outcome.reason == "someone else swept it"


def test_a_partial_verification_is_its_own_escalation(sweeper):
    outcome = perform(sweeper(partial=True), "t")
    assert outcome.status == "partial" and outcome.escalate


def test_a_class_that_declares_nothing_is_refused_before_anything_runs(tmp_path):
    ran = []

    class Bare(Remediation):
        name = "bare"
        schema = {"targets": dict}

        def plan(self, target):
            return [Step("x", action=lambda: ran.append("x") or "done")]

        def verify(self, target):
            return Result("bare", "ok", status=0)

    config = Config({"state_dir": str(tmp_path), "remediations": {
        "bare": {"enabled": True, "targets": {"t": {}}}}})
    for dry_run in (True, False):
        outcome = perform(Bare(config), "t", dry_run=dry_run)
        assert (outcome.status, outcome.guard) == ("refused", "no-harm"), outcome.to_dict()
        assert "declares neither its reach nor its invariants" in outcome.reason
    assert ran == []


def test_an_audit_that_cannot_be_written_does_not_change_the_outcome(sweeper):
    rem = sweeper()
    os.makedirs(rem.audit.path)         # audit.log is a directory
    outcome = perform(rem, "t", Trigger(event_id="e"))
    assert outcome.status == "remediated"
    assert any("audit record not written" in n for n in outcome.notes)
