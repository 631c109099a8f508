"""Every remediation class declares reach and invariants, and is tested for
harm through the shared harness (tests/noharm_harness.py) on its real system."""
import ast
import importlib
import os

import pytest

from autoremedy.contract.remediation import Remediation

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def remediation_classes():
    import autoremedy.remediations as package
    names = sorted(n[:-3] for n in os.listdir(os.path.dirname(package.__file__))
                   if n.endswith(".py") and not n.startswith("_"))
    return {importlib.import_module(f"autoremedy.remediations.{n}").REMEDIATION.name:
            importlib.import_module(f"autoremedy.remediations.{n}").REMEDIATION for n in names}


def harness_cases():
    """{class name: [test module paths]} for every ``Case`` subclass with a cls_name,
    and the harness calls each of those modules makes."""
    found = {}
    for folder, _dirs, files in os.walk(TESTS):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            with open(path, encoding="utf-8") as handle:
                tree = ast.parse(handle.read(), path)
            calls = {node.func.attr if isinstance(node.func, ast.Attribute) else
                     getattr(node.func, "id", None)
                     for node in ast.walk(tree) if isinstance(node, ast.Call)}
            for node in ast.walk(tree):
                if not isinstance(node, ast.ClassDef):
                    continue
                bases = {b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "")
                         for b in node.bases}
                if "Case" not in bases:
                    continue
                for stmt in node.body:
                    if (isinstance(stmt, ast.Assign) and any(getattr(t, "id", "") == "cls_name"
                                                             for t in stmt.targets)
                            and isinstance(stmt.value, ast.Constant)):
                        found.setdefault(stmt.value.value, []).append((path, calls))
    return found


CLASSES = remediation_classes()


@pytest.mark.parametrize("cls_name", sorted(CLASSES))
def test_every_class_declares_reach_and_invariants(cls_name):
    klass = CLASSES[cls_name]
    assert klass.reach is not Remediation.reach, f"{cls_name} declares no reach"
    assert klass.invariants is not Remediation.invariants, f"{cls_name} declares no invariants"


@pytest.mark.parametrize("cls_name", sorted(CLASSES))
def test_every_class_is_tested_for_harm_through_the_harness(cls_name):
    cases = harness_cases().get(cls_name)
    assert cases, f"no noharm_harness.Case with cls_name = {cls_name!r} in tests/"
    calls = set().union(*(c for _, c in cases))
    assert "expect_harm" in calls, f"{cls_name}: no expect_harm() (a widened plan or a fault)"
    assert "expect_no_harm" in calls, f"{cls_name}: no expect_no_harm()"
