"""The failure classes' manifests, as the packaging generators read them: from the
source tree's checks/<class>.py (``MANIFEST``, parsed with ``ast.literal_eval`` by
autoremedy/contract/registry.py), never from an installed package and never by importing
a check. Loaded by file path, so a generator runs with a bare ``python3`` and
needs nothing of autoremedy installed:

    packaging/sensu/definitions.py      Sensu Go / Classic checks and hooks
    packaging/zabbix/template.py        the class items of the Zabbix templates
    packaging/zabbix/agent.py           the agent's UserParameter drop-in
    packaging/tools/pack_rules.py       the StackStorm pack's class rules, unhandled, untargeted

Each generated file is ordered by the manifests' ``order`` (a class without one
comes last, by name), so a new class appends to the output and leaves the
existing bytes as they were.
"""
import importlib.util
import os

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(os.path.dirname(HERE))
CHECKS = os.path.join(PROJECT, "checks")
LAST = 1000


def _registry():
    path = os.path.join(PROJECT, "autoremedy", "contract", "registry.py")
    spec = importlib.util.spec_from_file_location("autoremedy_registry_of_the_source_tree", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def manifests(checks=None):
    """[MANIFEST] of every failure class under ``checks`` (default: this tree's
    checks/), in generation order."""
    found = _registry().manifests(checks or CHECKS).values()
    return sorted((m for m in found if m.get("failure_class", True)),
                  key=lambda m: (m.get("order", LAST), m["name"]))


def by_order(found, section):
    """The manifests that have ``section``, ordered by that section's own ``order``
    when it has one (the pack's rules keep the order they were written in)."""
    having = [m for m in found if m.get(section)]
    return sorted(having, key=lambda m: (_section_order(m[section], m), m["name"]))


def _section_order(section, manifest):
    own = section.get("order") if isinstance(section, dict) else None
    return own if own is not None else manifest.get("order", LAST)
