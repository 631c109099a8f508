"""The one harness every class's no-harm tests go through (on the real system).

A ``Case`` knows one class on one real system: how to take a snapshot of what
could be harmed *independently of the product's own code* (rabbitmqctl or raw
HTTP for a broker, raw SQL for a database, Nova's API for instances, os.walk for
a filesystem), how to inject the fault, and how to run the remediation. The
harness runs snapshot → inject → remediate → snapshot and compares:

- ``expect_no_harm(case)``: the outcome is a success (``remediated`` by default)
  and nothing outside the case's ``allowed`` keys changed in the snapshot;
- ``expect_harm(case, named=...)``: the run was made to harm (a deliberately
  widened plan, or a fault the remediation cannot handle): the outcome must be
  ``failed``/``refused``/``partial``, never a success, and name the difference.

tests/core/test_noharm_meta.py fails for a remediation class with no Case here
in the suite, or whose Case's module never calls both functions.
"""
import json

SUCCESS = ("remediated",)
ESCALATIONS = ("failed", "refused", "partial")


class Case:
    """Subclass per class and system. ``cls_name`` names the remediation class."""

    cls_name = None

    def snapshot(self):
        """{key: state} of everything the run could harm, read without autoremedy."""
        raise NotImplementedError

    def inject(self):
        """Make the fault (default: none, the system is already broken)."""

    def remediate(self):
        """Run the remediation as an operator would; return its ``--json`` outcome."""
        raise NotImplementedError

    def allowed(self):
        """Keys of the snapshot the run may change (its plan's targets)."""
        return set()

    def compare(self, before, after):
        """Differences outside ``allowed()``, one line each."""
        allowed = {str(k) for k in self.allowed()}
        out = []
        for key in sorted(set(before) | set(after), key=str):
            if str(key) in allowed:
                continue
            if before.get(key, "(absent)") != after.get(key, "(absent)"):
                out.append(f"{key}: {before.get(key, '(absent)')!r} -> "
                           f"{after.get(key, '(absent)')!r}")
        return out


class Run:
    def __init__(self, before, outcome, after, differences):
        self.before, self.outcome, self.after = before, outcome, after
        self.differences = differences

    def __repr__(self):
        return (f"Run(outcome={json.dumps(self.outcome, default=str)[:2000]}, "
                f"differences={self.differences})")


def _run(case):
    before = case.snapshot()
    case.inject()
    outcome = case.remediate()
    after = case.snapshot()
    return Run(before, outcome, after, case.compare(before, after))


def expect_no_harm(case, outcomes=SUCCESS):
    run = _run(case)
    assert run.outcome["outcome"] in outcomes, run
    assert run.differences == [], run
    assert not run.outcome.get("harm"), run
    for inv in run.outcome.get("invariants", []):
        assert inv.get("holds", True), run
    return run


def expect_harm(case, named=()):
    """The outcome escalates and names each of ``named`` (substrings of the
    reason or of the harm lines). The snapshot differences are returned for the
    caller to compare with what the product named."""
    run = _run(case)
    assert run.outcome["outcome"] in ESCALATIONS, run
    text = json.dumps([run.outcome.get("reason"), run.outcome.get("harm")])
    for name in named:
        assert name in text, (name, run)
    return run


def remediate_json(run_cli, cls_name, *args):
    """``autoremedy remediate CLASS ARGS --json`` through the installed command."""
    ran = run_cli("remediate", cls_name, *args, "--json")
    try:
        outcome = json.loads(ran.stdout)
    except ValueError:
        raise AssertionError(f"no JSON outcome: {ran}") from None
    outcome["_exit"] = ran.returncode
    return outcome
