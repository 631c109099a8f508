"""Sensu: the asset (unpacked, sha512 verified, every command run exactly the way
the agent runs it) and the Sensu Go / Classic definitions."""
import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile

import yaml

from pkgenv import AUTOREMEDY, PACKAGING, SCRIPTS
from loopback import st2_double
from st2_rules import matching_rules

SENSU = os.path.join(PACKAGING, "sensu")
sys.path.insert(0, SENSU)
import definitions  # noqa: E402  (packaging/sensu/definitions.py)

BUILTIN_FILTERS = {"is_incident", "not_silenced", "has_metrics"}


def go_docs():
    with open(os.path.join(SENSU, "go", "autoremedy.yaml")) as handle:
        return [d for d in yaml.safe_load_all(handle) if d]


def classic():
    with open(os.path.join(SENSU, "classic", "autoremedy.json")) as handle:
        return json.load(handle)


def by_type(kind):
    return {d["metadata"]["name"]: d for d in go_docs() if d["type"] == kind}


def agent_sh(asset, command, extra_env=None, stdin=None):
    """What the agent does: `sh -c COMMAND` with the asset's bin/ prepended to
    PATH (and lib/ to LD_LIBRARY_PATH), in an otherwise clean environment."""
    env = {"PATH": f"{asset}/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LD_LIBRARY_PATH": f"{asset}/lib",
           "CPATH": f"{asset}/include", "AUTOREMEDY_PATH": str(asset)}
    env.update(extra_env or {})
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, env=env, timeout=60,
                          input=stdin, cwd="/")


def venv(*argv, **kw):
    return subprocess.run([AUTOREMEDY, *argv], capture_output=True, text=True, **kw)


def substitute_tokens(command):
    """Sensu Go token substitution with no entity annotations: the defaults."""
    return re.sub(r'\{\{\s*\.[\w.]+\s*\|\s*default\s+"([^"]*)"\s*\}\}', r"\1", command)


# --- the asset --------------------------------------------------------------------------

def test_archive_has_bin_at_its_root_and_a_checksum_file(asset_dir):
    tarball = next(asset_dir.glob("autoremedy_*_linux_amd64.tar.gz"))
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
        wrapper = tar.getmember("bin/autoremedy")
    assert {n.split("/")[0] for n in names} == {"bin", "lib", "libexec", "README.md"}
    assert wrapper.mode & 0o111 and "lib/psutil/__init__.py" in names and "lib/autoremedy/cli.py" in names
    assert not [n for n in names if n.startswith("lib/bin")]      # no console scripts with a build shebang
    sums = (next(asset_dir.glob("autoremedy_*_sha512-checksums.txt"))).read_text().split()
    assert sums[sums.index(tarball.name) - 1] == hashlib.sha512(tarball.read_bytes()).hexdigest()


def test_asset_definition_uses_builds_with_filters(asset_dir):
    definition = yaml.safe_load((asset_dir / "autoremedy-asset.yaml").read_text())
    assert definition["type"] == "Asset" and definition["api_version"] == "core/v2"
    assert definition["metadata"]["name"] == "autoremedy"
    assert "url" not in definition["spec"] and "sha512" not in definition["spec"]   # the deprecated form
    (build,) = definition["spec"]["builds"]
    assert build["filters"][:2] == ["entity.system.os == 'linux'", "entity.system.arch == 'amd64'"]
    assert re.fullmatch(r"[0-9a-f]{128}", build["sha512"])
    bonsai = yaml.safe_load((asset_dir / ".bonsai.yml").read_text())
    assert {b["arch"] for b in bonsai["builds"]} == {"amd64", "arm64"}
    assert all("filter" in b and "filters" not in b for b in bonsai["builds"])


def test_rebuilding_gives_the_same_sha512(asset_dir, artefacts):
    again = artefacts / "asset-again"
    env = {k: v for k, v in os.environ.items() if k != "ASSET_URL_BASE"}
    built = subprocess.run([os.path.join(SCRIPTS, "build-asset.sh"), str(again)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           env=dict(env, ASSET_ARCHES="amd64", PYTHON=sys.executable))
    # Without ASSET_URL_BASE the definition's urls are a placeholder: said, not silent.
    assert "ASSET_URL_BASE is not set" in built.stderr and "placeholder" in built.stderr
    name = next(asset_dir.glob("autoremedy_*_linux_amd64.tar.gz")).name
    assert (again / name).read_bytes() == (asset_dir / name).read_bytes()


def test_every_check_definition_runs_from_the_asset(unpacked_asset, check_classes):
    """Each CheckConfig's command, tokens replaced by their defaults, run by `sh`
    from the unpacked asset: a Nagios line whose status matches the exit code."""
    ran = 0
    for name, check in by_type("CheckConfig").items():
        cls = check["metadata"]["labels"]["autoremedy_class"]
        if cls not in check_classes:
            continue                       # that class has not landed in this build yet
        command = substitute_tokens(check["spec"]["command"])
        if cls == "batch":
            command = command.replace("--sensu", "--sensu --agent-api http://127.0.0.1:9/events")
        proc = agent_sh(unpacked_asset, command)
        first = proc.stdout.splitlines()[0] if proc.stdout else ""
        words = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}
        assert proc.returncode in words and first.split(":")[0].endswith(words[proc.returncode]), (name, proc)
        assert "usage" not in first.lower() and "unknown check class" not in first, (name, first)
        assert "Traceback" not in proc.stdout + proc.stderr
        ran += 1
    assert ran >= 2


def test_asset_commands_give_the_same_output_as_the_installed_package(unpacked_asset, tmp_path):
    token = f"autoremedy-asset-{os.getpid()}"
    sleeper = subprocess.Popen([token, "-c", "import time; time.sleep(120)"],   # argv[0]: --cmdline is anchored
                               executable=sys.executable)
    try:
        for argv in (["--version"], ["check", "--list"], ["check", "process", "--cmdline", token],
                     ["check", "process", "--name", "no-such-daemon"], ["check", "disk", "-p", "/nonexistent"],
                     ["remediate", "--help"], ["check", "process", "-w", "bad:range:"]):
            a = agent_sh(unpacked_asset, "autoremedy " + " ".join(argv))
            b = venv(*argv)
            assert (a.returncode, a.stdout, a.stderr) == (b.returncode, b.stdout, b.stderr), argv
        a = json.loads(agent_sh(unpacked_asset, f"autoremedy check disk -p {tmp_path} --format json").stdout)
        b = json.loads(venv("check", "disk", "-p", str(tmp_path), "--format", "json").stdout)
        assert (a["status"], a["name"], sorted(a["metrics"])) == (b["status"], b["name"], sorted(b["metrics"]))
    finally:
        sleeper.kill()
        sleeper.wait()


def test_the_asset_runs_its_own_vendored_libraries(unpacked_asset):
    # Even with a hostile PYTHONPATH in the agent's environment.
    proc = agent_sh(unpacked_asset, "autoremedy check disk -p /", {"PYTHONPATH": "/nonexistent/evil",
                                                                     "PYTHONHOME": "/nonexistent"})
    assert proc.stdout.startswith("DISK "), proc
    probe = subprocess.run(["/usr/bin/python3", "-s", "-c", "import autoremedy, psutil, yaml, requests;"
                            "print(autoremedy.__file__); print(psutil.__file__)"],
                           capture_output=True, text=True, env={"PYTHONPATH": f"{unpacked_asset}/lib"},
                           cwd="/")
    assert [l.startswith(str(unpacked_asset)) for l in probe.stdout.split()] == [True, True], probe


# --- the definitions --------------------------------------------------------------------

def test_committed_definitions_are_the_generators_output():
    with open(os.path.join(SENSU, "go", "autoremedy.yaml")) as handle:
        assert handle.read() == definitions.render_go()
    with open(os.path.join(SENSU, "classic", "autoremedy.json")) as handle:
        assert handle.read() == definitions.render_classic()


def test_go_resources_are_complete_and_refer_to_each_other():
    docs = go_docs()
    for doc in docs:
        assert doc["api_version"] == "core/v2" and doc["metadata"]["name"] and doc["spec"]
    checks, hooks = by_type("CheckConfig"), by_type("HookConfig")
    handlers, filters = by_type("Handler"), by_type("EventFilter")
    for name, check in checks.items():
        spec = check["spec"]
        assert spec["command"].startswith("autoremedy check ") and spec["interval"] > 0 and spec["subscriptions"]
        assert spec["runtime_assets"] == ["autoremedy"]
        assert all(h in handlers for h in spec["handlers"])
        for group in spec.get("check_hooks") or []:
            (status, names), = group.items()
            assert status in ("ok", "warning", "critical", "unknown", "non-zero") or status.isdigit()
            assert all(n in hooks for n in names)
        if "proxy_entity_name" in spec:
            assert spec["round_robin"] is True
    for hook in hooks.values():
        assert hook["spec"]["command"].startswith("autoremedy handle hook ")
    # A hook remediates the target the check's label names, with the check's own options.
    for check in checks.values():
        target = check["metadata"]["labels"].get("autoremedy_target")
        for group in check["spec"].get("check_hooks") or []:
            for name in next(iter(group.values())):
                command = hooks[name]["spec"]["command"]
                cls = check["metadata"]["labels"]["autoremedy_class"]
                options = check["spec"]["command"][len(f"autoremedy check {cls}"):].strip()
                assert command == " ".join(p for p in (f"autoremedy handle hook {cls}",
                                                       f"--target {target}" if target else "", options) if p)
        assert hook["spec"]["runtime_assets"] == ["autoremedy"] and hook["spec"]["stdin"] is False
    handler = handlers["autoremedy"]["spec"]
    assert handler["type"] == "pipe" and handler["command"] == "autoremedy handle sensu"
    assert all(f in filters or f in BUILTIN_FILTERS for f in handler["filters"])
    assert "is_incident" in handler["filters"]          # problems and their resolutions
    assert not [e for e in handler["env_vars"] if "API_KEY=" in e]    # the key by file, never inline
    (expression,) = filters["autoremedy-occurrences"]["spec"]["expressions"]
    assert "event.check.occurrences" in expression


def test_every_check_class_has_a_sensu_check(check_classes):
    covered = {c["metadata"]["labels"]["autoremedy_class"] for c in by_type("CheckConfig").values()}
    assert set(check_classes) <= covered
    assert {"process", "disk", "rabbitmq-queues", "rabbitmq-node", "mysql-replication", "galera",
            "compute-node", "openstack-consistency", "spool", "batch"} <= covered
    # Node classes with a remediation get a hook; API-scoped ones are proxy checks
    # (Galera is checked from one of its own nodes).
    hooked = set()
    for check in by_type("CheckConfig").values():
        cls = check["metadata"]["labels"]["autoremedy_class"]
        if cls in ("rabbitmq-queues", "mysql-replication", "compute-node"):
            assert check["spec"]["subscriptions"] == ["autoremedy-central"] and check["spec"]["proxy_entity_name"]
        if check["spec"].get("check_hooks"):
            hooked.add(cls)
    assert {"process", "disk", "rabbitmq-node", "openstack-consistency"} <= hooked


def test_classic_definitions_match_the_go_ones():
    data = classic()
    go_checks = by_type("CheckConfig")
    go_hooks = by_type("HookConfig")
    assert set(data["checks"]) == set(go_checks) - {"autoremedy-batch"}
    for name, check in data["checks"].items():
        go = go_checks[name]["spec"]
        assert check["subscribers"] == go["subscriptions"] and check["interval"] == go["interval"]
        assert check["handlers"] == ["autoremedy"] and check["autoremedy_class"] == \
            go_checks[name]["metadata"]["labels"]["autoremedy_class"]
        # Same command, token syntax aside (:::x|default::: vs {{ .x | default "d" }}).
        classic_cmd = re.sub(r":::[\w.]+\|([^:]*):::", r"\1", check["command"])
        assert classic_cmd == substitute_tokens(go["command"])
        for status, hook in (check.get("hooks") or {}).items():
            names = [n for g in go["check_hooks"] for s, ns in g.items() if s == status for n in ns]
            assert [go_hooks[n]["spec"]["command"] for n in names] == [hook["command"]]
    handler = data["handlers"]["autoremedy"]
    assert handler["type"] == "pipe" and handler["command"] == "autoremedy handle sensu"
    assert handler["filters"] == ["autoremedy-occurrences"]
    assert data["filters"]["autoremedy-occurrences"]["attributes"]["occurrences"].startswith("eval: ")


# --- through the handlers, from the asset --------------------------------------

def fixture_event(**check):
    with open(os.path.join(os.path.dirname(__file__), "fixtures", "sensu-go-event.json")) as handle:
        event = json.load(handle)
    event["check"].update(check)
    return event


def test_pipe_handler_forwards_a_sensu_go_event_the_pack_routes(unpacked_asset, tmp_path):
    """`autoremedy handle sensu` (the Handler resource's command) from the asset,
    a failing event of our process check on stdin: StackStorm gets it, and exactly
    the pack's process rule matches it."""
    handler = by_type("Handler")["autoremedy"]["spec"]
    check = by_type("CheckConfig")["autoremedy-process-nova-compute"]
    event = fixture_event(status=2, state="failing", output="PROCESS CRITICAL: 0 processes\n",
                          metadata={"name": "autoremedy-process-nova-compute", "namespace": "default",
                                    "labels": check["metadata"]["labels"]})
    with st2_double("ci-key") as st2:
        env = {"AUTOREMEDY_ST2_URL": st2.url, "AUTOREMEDY_ST2_API_KEY": "ci-key",
               "AUTOREMEDY_STATE_DIR": str(tmp_path / "state")}
        proc = agent_sh(unpacked_asset, handler["command"], env, stdin=json.dumps(event))
        assert proc.returncode == 0, proc
        (accepted,) = st2.accepted()
    assert accepted["hook"] == "autoremedy" and accepted["trace_tag"] == event["id"]
    assert matching_rules(accepted["body"]) == ["process.yaml"]


def test_hook_definitions_run_from_the_asset(unpacked_asset, tmp_path):
    """The disk hook as defined (`autoremedy handle hook disk --target /var -p /var`),
    made to fail with `-c 0` (any use is CRITICAL), run by `sh` from the asset: it
    re-runs the check on the node and forwards the failure in a body the pack's
    disk rule routes. (A passing check is not forwarded: nothing to do.)

    A hook's --target must be in root's allowlist (remediations.<class>.targets)
    before any probe runs, so the node has a configuration naming /var, as an
    operator's does (docs/packaging.md: the asset reads AUTOREMEDY_CONFIG).
    dry_run: should forwarding fail, the local fallback would only plan."""
    hook = by_type("HookConfig")["autoremedy-disk-var-hook"]["spec"]["command"] + " -c 0"
    config = tmp_path / "autoremedy.yaml"
    config.write_text(yaml.safe_dump({"remediations": {"disk": {
        "enabled": True, "dry_run": True,
        "targets": {"/var": {"target": 80, "rules": [
            {"type": "rotated-logs", "root": "/var/log", "older_than": "7d"}]}}}}}))
    with st2_double("ci-key") as st2:
        env = {"AUTOREMEDY_ST2_URL": st2.url, "AUTOREMEDY_ST2_API_KEY": "ci-key",
               "AUTOREMEDY_STATE_DIR": str(tmp_path / "state"), "AUTOREMEDY_CONFIG": str(config)}
        proc = agent_sh(unpacked_asset, hook, env)
        assert proc.returncode == 0, proc
        bodies = [a["body"] for a in st2.accepted()]
    assert bodies, proc
    event = bodies[0]["event"]
    assert event["status"] == 2 and event["source"] == "hook"
    assert event["labels"].get("autoremedy_class") == "disk", event["labels"]
    assert event["labels"].get("autoremedy_target") == "/var", event["labels"]
    assert matching_rules(bodies[0]) == ["disk.yaml"]
