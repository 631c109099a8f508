"""One manifest per failure class (checks/<class>.py MANIFEST): the Sensu checks,
the Zabbix templates' class items and agent parameters, and the StackStorm pack's
class rules are `make generate`'s output, byte for byte; and a new class is two
files of its own (its check with its MANIFEST, its remediation), plus in a real
change its test and its doc page: four, within the five the issue allows. Every
other place that names it is regenerated, never edited.

The throwaway class is tests/packaging/fixtures/canary/ (a flag file that says
"broken"; the remediation removes it), dropped into a copy of the tree and into
a copy of the installed package: the repository itself is never modified."""
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys

import yaml

from pkgenv import ROOT

CANARY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "canary")
# What `make generate` needs of the tree.
SOURCES = ("Makefile", "autoremedy", "checks", "remediations", "packaging")
GENERATED = ("packaging/sensu/go/autoremedy.yaml", "packaging/sensu/classic/autoremedy.json",
             "packaging/zabbix/autoremedy_template.yaml", "packaging/zabbix/zabbix_agentd.d/autoremedy.conf",
             "packaging/stackstorm/autoremedy/rules/unhandled.yaml",
             "packaging/stackstorm/autoremedy/rules/untargeted.yaml")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")


def copy_tree(dest):
    dest.mkdir()
    for name in SOURCES:
        path = os.path.join(ROOT, name)
        if os.path.isdir(path):
            shutil.copytree(path, dest / name, ignore=IGNORED)
        else:
            shutil.copy2(path, dest / name)
    return dest


def snapshot(tree):
    """{relative path: sha256} of every file under ``tree`` (bytecode left out)."""
    out = {}
    for top, dirs, files in os.walk(tree):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            path = os.path.join(top, name)
            with open(path, "rb") as handle:
                out[os.path.relpath(path, tree)] = hashlib.sha256(handle.read()).hexdigest()
    return out


def generate(tree):
    subprocess.run(["make", "-s", "-C", str(tree), "generate", f"GENPY={sys.executable}"], check=True,
                   stdout=subprocess.DEVNULL)


def add_canary(tree):
    shutil.copy(os.path.join(CANARY, "check.py"), tree / "checks" / "canary.py")
    shutil.copy(os.path.join(CANARY, "remediation.py"), tree / "remediations" / "canary.py")
    return {"checks/canary.py", "remediations/canary.py"}


def test_make_generate_rewrites_every_generated_file_byte_for_byte(tmp_path):
    tree = copy_tree(tmp_path / "tree")
    before = snapshot(tree)
    generate(tree)
    after = snapshot(tree)
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    assert changed == [], f"generated files differ from the manifests' output (run make generate): {changed}"
    for path in GENERATED:
        assert path in after, path


def test_a_new_class_is_its_own_files_and_appears_in_every_generated_output(tmp_path):
    tree = copy_tree(tmp_path / "tree")
    before = snapshot(tree)
    own = add_canary(tree)
    generate(tree)
    after = snapshot(tree)
    changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    # Written by hand: the class's two files (a real change adds its test and its
    # doc page: four). Everything else that changed is generated.
    assert own <= changed
    generated = changed - own
    rule = "packaging/stackstorm/autoremedy/rules/canary.yaml"
    assert generated == set(GENERATED) | {rule}, sorted(generated)
    for path in generated:
        assert "canary" in (tree / path).read_text(), path

    go = list(yaml.safe_load_all((tree / GENERATED[0]).read_text()))
    (check,) = [d for d in go if d["metadata"]["name"] == "autoremedy-canary"]
    assert check["spec"]["command"] == "autoremedy check canary --flag /run/canary.flag"
    assert check["metadata"]["labels"] == {"autoremedy_class": "canary", "autoremedy_target": "canary"}
    (hook,) = [d for d in go if d["metadata"]["name"] == "autoremedy-canary-hook"]
    assert hook["spec"]["command"] == "autoremedy handle hook canary --target canary --flag /run/canary.flag"

    export = yaml.safe_load((tree / GENERATED[2]).read_text())["zabbix_export"]
    node = next(t for t in export["templates"] if t["template"] == "autoremedy node")
    keys = {i["key"] for i in node["items"]}
    assert {"autoremedy.canary", "autoremedy.status[canary]", "autoremedy.summary[canary]"} <= keys
    assert ("UserParameter=autoremedy.canary,/usr/bin/autoremedy check canary --flag /run/canary.flag "
            "--format zabbix\n") in (tree / GENERATED[3]).read_text()

    parsed = yaml.safe_load((tree / rule).read_text())
    assert parsed["name"] == "canary"
    assert parsed["criteria"]["trigger.body.event.labels.autoremedy_class"] == {"type": "equals",
                                                                                  "pattern": "canary"}
    assert parsed["action"]["parameters"]["cls"] == "canary"
    assert parsed["action"]["parameters"]["check_args"] == "--flag /run/canary.flag"
    for name, kind in (("unhandled.yaml", "ninside"), ("untargeted.yaml", "inside")):
        listed = yaml.safe_load((tree / "packaging/stackstorm/autoremedy/rules" / name).read_text())
        assert listed["criteria"]["trigger.body.event.labels.autoremedy_class"]["type"] == kind
        assert "canary" in listed["criteria"]["trigger.body.event.labels.autoremedy_class"]["pattern"]


def installed_with_canary(tmp_path):
    """A copy of the installed package with the canary's two files added (PYTHONPATH)."""
    package = importlib.util.find_spec("autoremedy").submodule_search_locations[0]
    lib = tmp_path / "lib"
    shutil.copytree(package, lib / "autoremedy", ignore=IGNORED)
    add_canary(lib / "autoremedy")
    return lib


def autoremedy(lib, *argv):
    code = "import sys; from autoremedy.cli import main; sys.exit(main(sys.argv[1:]))"
    # cwd: not the checkout, whose autoremedy/ (no checks/ there) would shadow the package.
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(lib)), cwd=lib)


def test_a_new_class_is_known_to_the_registry_the_help_and_runs_end_to_end(tmp_path):
    lib = installed_with_canary(tmp_path)
    helped = autoremedy(lib, "--help")
    assert helped.returncode == 0
    assert "  canary " in helped.stdout and "a flag file says broken" in helped.stdout
    assert "canary" in autoremedy(lib, "check", "--list").stdout.split()

    flag = tmp_path / "canary.flag"
    flag.write_text("broken\n")
    ran = autoremedy(lib, "check", "canary", "--flag", str(flag))
    assert (ran.returncode, ran.stdout.split(":")[0]) == (2, "CANARY CRITICAL"), ran
    config = tmp_path / "autoremedy.yaml"
    config.write_text(yaml.safe_dump({
        "state_dir": str(tmp_path / "state"),
        "remediations": {"canary": {"enabled": True, "targets": {"canary": {"flag": str(flag)}}}}}))
    planned = autoremedy(lib, "remediate", "canary", "--config", str(config), "--dry-run", "canary")
    assert planned.returncode == 0 and f"would: remove {flag}" in planned.stdout, planned
    assert flag.exists()
    fixed = autoremedy(lib, "remediate", "canary", "--config", str(config), "canary")
    assert fixed.returncode == 0 and "verify: OK" in fixed.stdout, fixed
    assert not flag.exists()

    spec = importlib.util.spec_from_file_location("registry_under_test", lib / "autoremedy" / "contract" / "registry.py")
    registry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(registry)
    found = registry.manifests(str(lib / "autoremedy" / "checks"))
    assert found["canary"]["remediation"] == "autoremedy.remediations.canary"
    assert set(found) == set(registry.available("checks", str(lib / "autoremedy" / "checks")))


def test_manifests_are_read_without_importing_the_checks(tmp_path):
    """The registry parses the literal: listing the classes imports no check (so
    `--help` and the generators cost no check's start-up), and every class with
    a remediation names a module that exists."""
    code = ("import sys; from autoremedy.contract.registry import manifests; found = manifests(); "
            "print(sorted(found)); print(sorted(m for m in sys.modules if m.startswith('autoremedy.checks.')))")
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=tmp_path)
    names, imported = ran.stdout.splitlines()
    assert imported == "[]"
    assert "'process'" in names and "'batch'" in names
    from autoremedy.contract.registry import available, manifests
    for name, manifest in manifests().items():
        if manifest.get("remediation"):
            assert manifest["remediation"] == f"autoremedy.remediations.{name.replace('-', '_')}"
            assert name in available("remediations"), name
