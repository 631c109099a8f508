"""Hostile event text: shell metacharacters, path traversal, header injection
and huge values reach no shell, no path outside the state directory, no header,
and are delivered verbatim as data."""
import json
import os
import re

from handlerkit import fixture_text, run_bytes, service_config, spool_entries, st2_env

SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def sensu_event(host, check, output="", ident="inj-1", **check_fields):
    data = json.loads(fixture_text("sensu", "sensu-go-event.json"))
    data["id"] = ident
    data["entity"]["metadata"]["name"] = host
    data["check"]["metadata"]["name"] = check
    data["check"].update(status=2, state="failing", output=output, history=[], **check_fields)
    return data


def state_files(state_dir):
    for root, dirs, files in os.walk(str(state_dir)):
        for name in dirs + files:
            yield os.path.join(root, name)


def assert_state_is_clean(state_dir):
    real = os.path.realpath(str(state_dir))
    for path in state_files(state_dir):
        name = os.path.basename(path)
        assert SAFE_NAME.match(name), f"unexpected file name {name!r}"
        assert ".." not in name and "passwd" not in name
        assert os.path.realpath(path).startswith(real + os.sep)
        assert not os.path.islink(path)


def test_shell_metacharacters_in_check_and_output_run_nothing(run_cli, make_config, service, st2,
                                                              state_dir, tmp_path):
    canary = tmp_path / "pwned"
    service.start()
    service.kill()
    st2.set_mode("down")
    hostile_check = f"proc-svc;touch {canary};$(touch {canary})"
    hostile_output = f"`touch {canary}` $(touch {canary}) | sh -c 'touch {canary}' && rm -rf / #"
    config = make_config(service_config(service, routes=[{"check": "proc-svc*", "class": "process",
                                                          "target": "svc"}]))
    event = sensu_event("node-under-test", hostile_check, hostile_output,
                        **{"metadata": {"name": hostile_check,
                                        "labels": {"x": f"$(touch {canary})"}}})
    ran = run_cli("handle", "sensu", "--config", config, input=json.dumps(event), env=st2_env(st2))
    assert ran.returncode == 0, ran
    assert "remediated: verified OK" in ran.stdout
    assert not canary.exists()
    assert service.start_count() == 2          # the allowlisted argv ran, nothing else
    st2.set_mode("up")
    assert run_cli("replay", "--config", config, env=st2_env(st2)).returncode == 0
    body = st2.accepted()[0]["body"]
    assert body["event"]["check"] == hostile_check and body["event"]["output"] == hostile_output
    assert body["event"]["labels"] == {"x": f"$(touch {canary})"}
    assert not canary.exists()
    assert_state_is_clean(state_dir)


def test_path_traversal_in_host_and_check_touches_no_path(run_cli, make_config, st2, state_dir, tmp_path):
    st2.set_mode("down")
    traversal = "../../../../" + str(tmp_path / "escaped").lstrip("/")
    config = make_config({"routes": [{"check": "*", "class": "process", "target": "svc"}],
                          "remediations": {"process": {"enabled": True, "targets": {
                              "svc": {"unit": "svc"}}}}})
    event = sensu_event("../../etc/passwd", traversal, ident="../../etc/shadow")
    ran = run_cli("handle", "sensu", "--config", config, input=json.dumps(event), env=st2_env(st2))
    assert ran.returncode == 1 and "node-scoped" in ran.stderr    # not this node: escalate
    assert not (tmp_path / "escaped").exists()
    assert_state_is_clean(state_dir)
    [entry] = spool_entries(state_dir)
    assert entry["event"]["host"] == "../../etc/passwd"
    assert entry["id"].startswith("sensu-go-h")                  # the unsafe id was hashed


def test_header_injection_through_the_event_id_is_impossible(run_cli, st2):
    event = sensu_event("web-01", "check", ident="x\r\nX-Injected: 1")
    ran = run_cli("handle", "sensu", input=json.dumps(event), env=st2_env(st2))
    assert ran.returncode == 0, ran
    [request] = st2.accepted()
    assert "X-Injected" not in request["headers"]
    assert re.fullmatch(r"sensu-go-h[0-9a-f]{32}", request["trace_tag"])
    assert request["body"]["raw"]["id"] == "x\r\nX-Injected: 1"       # kept as data


def test_zabbix_hostile_values_are_data(run_cli, st2, tmp_path):
    canary = tmp_path / "zpwned"
    message = json.dumps({"event_id": "77", "event_value": "1", "severity": "5",
                          "host": f"$(touch {canary})", "trigger": f'"; touch {canary}; echo "',
                          "opdata": f"`touch {canary}`"})
    ran = run_cli("handle", "zabbix", f"; touch {canary}", f"$(touch {canary})", message,
                  env=st2_env(st2))
    assert ran.returncode == 0, ran
    event = st2.accepted()[0]["body"]["event"]
    assert event["host"] == f"$(touch {canary})" and event["output"] == f"`touch {canary}`"
    assert not canary.exists()


def test_huge_values_are_bounded(run_cli, st2, state_dir):
    big_output = "o" * 900_000
    labels = {f"l{n}": "v" for n in range(500)}
    event = sensu_event("web-01", "check", big_output, **{"metadata": {"name": "check", "labels": labels}})
    ran = run_cli("handle", "sensu", input=json.dumps(event), env=st2_env(st2))
    assert ran.returncode == 0, ran
    body = st2.accepted()[0]["body"]
    assert len(body["event"]["output"]) < 33_000 and "[truncated, 900000 characters]" in body["event"]["output"]
    assert body["raw"]["check"]["output"] == big_output               # the raw event is intact
    assert len(body["event"]["labels"]) == 64
    huge_host = sensu_event("h" * 10_000, "check")
    refused = run_bytes(["handle", "sensu"], json.dumps(huge_host).encode(), state_dir)
    assert refused.returncode == 2 and b"host name is longer than 255" in refused.stderr


def test_hook_check_name_with_traversal_and_metacharacters(run_cli, make_config, service, st2,
                                                           state_dir, tmp_path):
    canary = tmp_path / "hpwned"
    service.start()
    service.kill()
    st2.set_mode("down")
    config = make_config(service_config(service))
    name = f"../../{canary.name};touch {canary}"
    ran = run_cli("handle", "hook", "process", "--config", config, "--target", "svc",
                  "--check-name", name, *service.check_args, env=st2_env(st2))
    assert ran.returncode == 0, ran
    assert not canary.exists()
    assert spool_entries(state_dir)[0]["event"]["check"] == name
    assert_state_is_clean(state_dir)


def test_labels_can_only_pick_an_allowlisted_target(run_cli, make_config, service, st2, state_dir):
    """autoremedy_class / autoremedy_target labels are hints bounded by the
    allowlist: a route wins over them, an unlisted target is refused, a class
    name that is not a module name is a configuration error."""
    service.start()
    service.kill()
    st2.set_mode("down")
    env = st2_env(st2)

    def send(labels, routes=(), ident="lab-1"):
        config = make_config(service_config(service, routes=list(routes)))
        event = sensu_event("node-under-test", "proc-svc", ident=ident,
                            **{"metadata": {"name": "proc-svc", "labels": labels}})
        return run_cli("handle", "sensu", "--config", config, input=json.dumps(event), env=env)

    unlisted = send({"autoremedy_class": "process", "autoremedy_target": "sshd"}, ident="lab-1")
    assert unlisted.returncode == 1
    assert "refused: 'sshd' is not in remediations.process.targets" in unlisted.stdout
    assert service.pids() == []
    no_target = send({"autoremedy_class": "process"}, ident="lab-2")
    assert no_target.returncode == 1 and "refused: no target given" in no_target.stdout
    traversal = send({"autoremedy_class": "../../bin/sh", "autoremedy_target": "svc"}, ident="lab-3")
    assert traversal.returncode == 3 and "is not a valid name" in traversal.stderr
    routed = send({"autoremedy_class": "process", "autoremedy_target": "sshd"}, ident="lab-4",
                  routes=[{"check": "proc-svc", "class": "process", "target": "svc"}])
    assert routed.returncode == 0 and "local process svc: remediated" in routed.stdout
    service.kill()
    labelled = send({"autoremedy_class": "process", "autoremedy_target": "svc"}, ident="lab-5")
    assert labelled.returncode == 0 and "local process svc: remediated" in labelled.stdout
    assert service.start_count() == 3
