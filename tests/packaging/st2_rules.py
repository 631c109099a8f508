"""Evaluate the pack's rules against a webhook body, the way StackStorm's rules
engine would (the subset of criteria operators the pack uses)."""
import glob
import os

import yaml

from pkgenv import PACKAGING

RULES = os.path.join(PACKAGING, "stackstorm", "autoremedy", "rules")


def rules():
    out = {}
    for path in sorted(glob.glob(os.path.join(RULES, "*.yaml"))):
        with open(path) as handle:
            out[os.path.basename(path)] = yaml.safe_load(handle)
    return out


def matches(criteria, body):
    for key, criterion in criteria.items():
        value = body
        for part in key.split(".")[2:]:          # trigger.body.<path>
            value = value.get(part) if isinstance(value, dict) else None
        kind, pattern = criterion["type"], criterion["pattern"]
        ok = {"equals": lambda: value == pattern, "nequals": lambda: value != pattern,
              "inside": lambda: value in pattern, "ninside": lambda: value not in pattern}[kind]()
        if not ok:
            return False
    return True


def matching_rules(body):
    return sorted(name for name, rule in rules().items() if matches(rule.get("criteria", {}), body))

