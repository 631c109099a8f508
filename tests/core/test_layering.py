"""The layering docs/DEVELOPING.md promises, held by the source itself.

- The core (``autoremedy/``) never imports a plugin (``checks/``, ``remediations/``,
  ``handlers/``): a class is loaded by name through contract/registry.py, the CLI's
  commands by module name.
- A check never imports a handler: it runs on thousands of nodes every minute and
  must stay small. It imports a remediation in one known place only (below).
- Only the CLI module imports ``autoremedy.cli``: the core and the plugins get the
  registry, the audit helpers and the exit codes from where they live.
- No check reads the configuration itself: its caller loads it once and passes it in
  (``probe(config, options)``, contract/checkrun.py), so ``check batch`` with N checks
  reads the file once.

Every import statement counts, also those inside functions (the lazy imports that keep
start-up cheap are still dependencies).
"""
import ast
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLUGINS = ("checks", "remediations", "handlers")


def sources(folder):
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def imported(path):
    """[(line, module)] of every absolute import in ``path``; ``from a import b``
    counts as ``a.b`` too, so that ``from autoremedy import cli`` is seen."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return out


def offenders(folder, bad, skip=()):
    found = []
    for path in sources(folder):
        rel = path.relative_to(ROOT).as_posix()
        if rel in skip:
            continue
        found += [f"{rel}:{line} imports {mod}" for line, mod in imported(path)
                  if any(mod == b or mod.startswith(b + ".") for b in bad)]
    return found


def test_the_tree_is_where_the_rules_expect_it():
    # A rule over an empty set holds trivially: make sure each folder has its modules.
    for folder, least in (("autoremedy", 40), ("checks", 10), ("remediations", 8), ("handlers", 4)):
        assert len(sources(folder)) >= least, folder


def test_the_core_never_imports_a_plugin():
    assert offenders("autoremedy", [f"autoremedy.{p}" for p in PLUGINS]) == []


def test_a_check_never_imports_a_handler():
    assert offenders("checks", ["autoremedy.handlers"]) == []


# galera's --cluster mode (cluster_check, run centrally, never on the node path) judges
# the cluster with the remediation's own survey and verdict, so that what StackStorm's
# verify step reads is exactly what the bootstrap decided on. Moving the survey out of
# remediations/galera.py would remove this; until then it is the one exception.
KNOWN = {"checks/galera.py": "def cluster_check("}


def test_a_check_imports_a_remediation_only_where_known():
    found = offenders("checks", ["autoremedy.remediations"])
    assert {f.split(":")[0] for f in found} <= set(KNOWN), found
    for rel, where in KNOWN.items():
        text = (ROOT / rel).read_text(encoding="utf-8")
        start = text.index(where)
        end = text.find("\ndef ", start + 1)
        lines = {int(f.split(":")[1].split()[0]) for f in found if f.startswith(rel)}
        first, last = text[:start].count("\n") + 1, text[:end].count("\n") + 1
        assert all(first <= n <= last for n in lines), (found, where)


@pytest.mark.parametrize("folder", ["autoremedy", *PLUGINS])
def test_only_the_cli_imports_the_cli(folder):
    assert offenders(folder, ["autoremedy.cli"], skip={"autoremedy/cli.py"}) == []


def test_no_check_loads_the_configuration_itself():
    found = []
    for path in sources("checks"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr == "load" and isinstance(node.func.value, ast.Name) \
                    and node.func.value.id == "Config":
                found.append(f"{path.relative_to(ROOT).as_posix()}:{node.lineno}")
    assert found == []


def test_the_rules_see_a_violation(tmp_path, monkeypatch):
    # The scanner itself: a planted core module importing a handler is caught,
    # function-level and "from autoremedy import cli" forms included.
    core = tmp_path / "autoremedy"
    core.mkdir()
    (core / "bad.py").write_text("def f():\n    from autoremedy.handlers.replay import Replayer\n"
                                 "    from autoremedy import cli\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert offenders("autoremedy", ["autoremedy.handlers"]) == \
        ["autoremedy/bad.py:2 imports autoremedy.handlers.replay",
         "autoremedy/bad.py:2 imports autoremedy.handlers.replay.Replayer"]
    assert offenders("autoremedy", ["autoremedy.cli"]) == ["autoremedy/bad.py:3 imports autoremedy.cli"]
