"""Which classes exist, and what each one declares: the checks, remediations and
handlers by name, and every check's ``MANIFEST``.

A class ``rabbitmq-queues`` is the module ``autoremedy.checks.rabbitmq_queues``
(likewise remediations and handlers): the name is checked against a strict
pattern before anything is imported, so a command line or an event can never
import an arbitrary module. Third-party classes can register under the
entry-point groups ``autoremedy.checks`` / ``autoremedy.remediations``; that
(slower) lookup only happens when no built-in module has the name.

A check's ``MANIFEST`` is a dict literal at the top of its module: its name,
summary, default thresholds and timeout, remediation, and the wiring the
packaging generators build from it (Sensu checks and hooks, Zabbix items and
agent parameters, the StackStorm rule). :func:`manifests` reads it with
``ast.literal_eval``, without importing the check, so listing the classes costs
no check's imports; the check itself reads its own ``MANIFEST`` as a plain
module global. This module imports nothing of autoremedy at load time: the
packaging generators load it by file path from a source tree.
"""
import os
import re

KINDS = ("checks", "remediations", "handlers")
NAME = re.compile(r"\A[a-z][a-z0-9-]{0,62}\Z")


def module_name(kind, name):
    return f"autoremedy.{kind}.{name.replace('-', '_')}"


def load(kind, name):
    """Import the module for class ``name`` of ``kind`` ('checks', 'remediations',
    'handlers'); raise UsageError for anything that is not one."""
    from autoremedy.contract.runtime import UsageError
    if not NAME.match(name or ""):
        raise UsageError(f"{kind[:-1]} class {name!r} is not a valid name")
    import importlib
    module = module_name(kind, name)
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise  # the module exists but one of its own imports is missing
    plugin = _entry_point(kind, name)
    if plugin is None:
        known = ", ".join(available(kind)) or "none"
        raise UsageError(f"unknown {kind[:-1]} class {name!r} (known: {known})")
    return plugin


def _entry_point(kind, name):
    from importlib.metadata import entry_points
    for ep in entry_points(group=f"autoremedy.{kind}"):
        if ep.name == name and not ep.value.startswith("autoremedy."):
            return ep.load()
    return None


def _folder(kind):
    """The installed package's folder for ``kind`` (imports only its __init__)."""
    import importlib
    return list(importlib.import_module(f"autoremedy.{kind}").__path__)


def available(kind, folder=None):
    """The built-in class names of ``kind``, sorted ('-' for '_'; private modules left out)."""
    import pkgutil
    return sorted(m.name.replace("_", "-") for m in pkgutil.iter_modules(folder and [folder] or _folder(kind))
                  if not m.name.startswith("_"))


class ManifestError(ValueError):
    """A check module whose MANIFEST is missing its literal or is not one."""


# The literal as the checks write it: "MANIFEST = {" at the start of a line, its
# closing "}" alone at the start of a line (everything inside is indented).
_LITERAL = re.compile(r"^MANIFEST = (\{.*?^\})", re.M | re.S)


def read_manifest(path):
    """The ``MANIFEST = {...}`` literal of the module at ``path``, or None when
    the module declares none. Parsed, never executed: only the literal's own
    lines when it is laid out as above (parsing whole modules would make
    `autoremedy --help` several times slower), else the whole module."""
    import ast  # only here: listing classes, never on a check's start-up path
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    if "MANIFEST" not in text:
        return None
    found = _LITERAL.search(text)
    try:
        node = ast.parse(found.group(1), mode="eval").body if found else _assigned(ast.parse(text, path))
        value = ast.literal_eval(node) if node is not None else None
    except (SyntaxError, ValueError) as exc:
        raise ManifestError(f"{path}: MANIFEST is not a literal ({exc})") from None
    if value is None:
        return None
    if not isinstance(value, dict) or not NAME.match(str(value.get("name", ""))):
        raise ManifestError(f"{path}: MANIFEST must be a dict with a class 'name'")
    return value


def _assigned(tree):
    """The value node of a module-level ``MANIFEST = ...``, or None."""
    import ast
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "MANIFEST"):
            return node.value
    return None


def manifests(folder=None):
    """{class name: MANIFEST} of every check that declares one, by name. ``folder``:
    a checks/ directory (a source tree's, for the packaging generators); default:
    the installed ``autoremedy.checks``."""
    out = {}
    for name in available("checks", folder):
        base = name.replace("-", "_") + ".py"
        for where in (folder and [folder] or _folder("checks")):
            path = os.path.join(where, base)
            if os.path.exists(path):
                manifest = read_manifest(path)
                if manifest is not None:
                    out[manifest["name"]] = manifest
                break
    return out


def check_defaults(module):
    """(warning, critical, timeout) defaults of a loaded check module: from its
    MANIFEST, else the older module attributes a third-party check may define."""
    manifest = getattr(module, "MANIFEST", None) or {}
    warning, critical = manifest.get("thresholds", getattr(module, "THRESHOLDS", (None, None)))
    return warning, critical, manifest.get("timeout", getattr(module, "TIMEOUT", 10.0))
