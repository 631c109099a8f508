"""The installed ``autoremedy handle sensu|zabbix``, ``check spool`` and
``status`` commands, run as whole processes the way Sensu and Zabbix run them."""
import json
import os

import pytest

from handlerkit import API_KEY, audit_records, fixture_text, run_bytes, spool_entries, st2_env


def test_sensu_go_fixture_is_delivered(run_cli, st2, state_dir):
    ran = run_cli("handle", "sensu", input=fixture_text("sensu", "sensu-go-event.json"),
                  env=st2_env(st2))
    assert ran.returncode == 0, ran
    assert "delivered to StackStorm (HTTP 202, request " in ran.stdout
    assert ran.stderr == ""
    [request] = st2.accepted()
    assert request["trace_tag"] == "3c3e68f6-6db7-40d3-9b84-4d61817ae559"
    assert request["body"]["raw"] == json.loads(fixture_text("sensu", "sensu-go-event.json"))
    assert request["body"]["event"]["check"] == "check_cpu"
    assert spool_entries(state_dir) == []


def test_sensu_classic_fixture_is_delivered(run_cli, st2):
    ran = run_cli("handle", "sensu", input=fixture_text("sensu", "sensu-classic-event.json"),
                  env=st2_env(st2))
    assert ran.returncode == 0, ran
    body = st2.accepted()[0]["body"]
    assert body["event"]["source"] == "sensu-classic" and body["event"]["host"] == "client-01"
    assert body["event"]["history"] == [0, 0, 1, 1, 2, 2]


def test_zabbix_problem_and_recovery_are_both_forwarded(run_cli, st2):
    for name, subject in (("problem-message.json", "PROBLEM: nova-compute"),
                          ("recovery-message.json", "RESOLVED: nova-compute")):
        ran = run_cli("handle", "zabbix", "ops@example.com", subject,
                      fixture_text("zabbix", name), env=st2_env(st2))
        assert ran.returncode == 0, ran
    problem, recovery = st2.accepted()
    assert problem["trace_tag"] == "zabbix-4711" and problem["body"]["event"]["state"] == "CRITICAL"
    assert recovery["trace_tag"] == "zabbix-4711-r4790" and recovery["body"]["event"]["state"] == "OK"
    assert problem["body"]["raw"]["subject"] == "PROBLEM: nova-compute"


def test_zabbix_subject_starting_with_a_dash_is_not_an_option(run_cli, st2):
    ran = run_cli("handle", "zabbix", "--config=/nonexistent-is-not-used", "--", "ops",
                  "--not-an-option", fixture_text("zabbix", "problem-message.json"),
                  env=st2_env(st2))
    assert ran.returncode == 3 and "no such configuration file" in ran.stderr     # option was read
    ran = run_cli("handle", "zabbix", "ops", "-PROBLEM-", fixture_text("zabbix", "problem-message.json"),
                  env=st2_env(st2))
    assert ran.returncode == 0, ran
    assert st2.accepted()[0]["body"]["raw"]["subject"] == "-PROBLEM-"


def test_zabbix_webhook_parameters_on_stdin(run_cli, st2):
    ran = run_cli("handle", "zabbix", "--webhook", input=fixture_text("zabbix", "webhook-params.json"),
                  env=st2_env(st2))
    assert ran.returncode == 0, ran
    assert st2.accepted()[0]["trace_tag"] == "zabbix-4711"


def test_stackstorm_down_spools_and_says_why(run_cli, st2, state_dir):
    st2.set_mode("down")
    ran = run_cli("handle", "sensu", input=fixture_text("sensu", "sensu-classic-event.json"),
                  env=st2_env(st2))
    assert ran.returncode == 1, ran                    # no route: escalation
    assert "connection refused" in ran.stdout
    assert "ESCALATION sensu-classic client-01/keepalive CRITICAL" in ran.stderr
    assert "Traceback" not in ran.stderr
    [entry] = spool_entries(state_dir)
    assert entry["id"] == "ef6b87d2-1f89-439f-8bea-33881436ab90" and entry["escalation"]


def test_wrong_api_key_is_loud_exit_3_and_kept(run_cli, st2, state_dir):
    env = st2_env(st2, AUTOREMEDY_ST2_API_KEY="stale-key")
    ran = run_cli("handle", "sensu", input=fixture_text("sensu", "sensu-go-event.json"), env=env)
    assert ran.returncode == 3
    assert "StackStorm configuration error" in ran.stderr and "check the API key" in ran.stderr
    assert "stale-key" not in ran.stderr + ran.stdout
    assert len(spool_entries(state_dir)) == 1


def test_api_key_from_a_file(run_cli, st2, tmp_path):
    key_file = tmp_path / "st2.key"
    key_file.write_text(API_KEY + "\n")
    env = {"AUTOREMEDY_ST2_URL": st2.url, "AUTOREMEDY_ST2_API_KEY_FILE": str(key_file)}
    ran = run_cli("handle", "sensu", input=fixture_text("sensu", "sensu-go-event.json"), env=env)
    assert ran.returncode == 0, ran


def test_broken_configuration_still_keeps_the_event(run_cli, st2, state_dir, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stackstorm: [unclosed\n")
    ran = run_cli("handle", "sensu", "--config", str(bad),
                  input=fixture_text("sensu", "sensu-go-event.json"), env=st2_env(st2))
    assert ran.returncode == 3
    assert ran.stderr.startswith("autoremedy: configuration error:") and "not valid YAML" in ran.stderr
    assert "event spooled as" in ran.stderr and len(ran.stderr.splitlines()) == 1
    assert len(spool_entries(state_dir)) == 1 and st2.requests == []


GO = fixture_text("sensu", "sensu-go-event.json")
MALFORMED = [
    ("empty", b"", "Sensu event is empty"),
    ("not-json", b"hello", "is not JSON"),
    ("array", b"[" + GO.encode() + b"]", "must be a JSON object, got an array"),
    ("missing-keys", b'{"entity": {"metadata": {}}, "check": {"status": 2}}', "entity.metadata.name is missing"),
    ("wrong-types", GO.replace('"status": 0,\n    "total_state_change"',
                               '"status": "zero",\n    "total_state_change"').encode(),
     "check.status must be an integer"),
    ("10-MB", b'{"pad": "' + b"x" * (10 << 20) + b'"}', "larger than the limit of 1048576"),
    ("invalid-utf8", GO.replace("sensu-centos", "sensu-\udcff").encode("utf-8", "surrogateescape"),
     "not valid UTF-8"),
]


@pytest.mark.parametrize("name,data,reason", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_sensu_input_is_dead_lettered_in_one_line(state_dir, name, data, reason):
    ran = run_bytes(["handle", "sensu"], data, state_dir)
    assert ran.returncode == 2
    assert ran.stdout == b""
    lines = ran.stderr.decode().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0]
    assert lines[0].startswith("autoremedy: sensu event rejected: ") and reason in lines[0]
    raw_files = [f for f in os.listdir(state_dir / "deadletter") if f.endswith(".raw")]
    assert len(raw_files) == 1
    kept = (state_dir / "deadletter" / raw_files[0]).read_bytes()
    assert kept == data[:4 << 20]           # spool.deadletter_max_file: the head of a larger input
    meta = json.loads((state_dir / "deadletter" / raw_files[0].replace(".raw", ".json")).read_text())
    assert meta["size"] == len(data) and meta["truncated"] is (len(data) > 4 << 20)
    [record] = audit_records(state_dir, "deadletter")
    assert reason in record["reason"] and record["size"] == len(data)


def test_zabbix_arguments_that_are_not_utf8_are_dead_lettered_as_bytes(state_dir):
    message = b'{"event_id": "1", "host": "h\xff", "trigger": "t"}'
    ran = run_bytes([b"handle", b"zabbix", b"ops", b"PROBLEM", message], None, state_dir)
    assert ran.returncode == 2 and b"argument 3 is not valid UTF-8" in ran.stderr
    [raw] = [f for f in os.listdir(state_dir / "deadletter") if f.endswith(".raw")]
    assert (state_dir / "deadletter" / raw).read_bytes() == b"ops\0PROBLEM\0" + message


@pytest.mark.parametrize("args,words", [
    (["handle", "zabbix", "only-one"], "expected SENDTO SUBJECT MESSAGE, got 1 argument(s)"),
    (["handle", "zabbix", "--webhook", "extra"], "takes no arguments"),
    (["handle", "sensu", "--bogus"], "unrecognized arguments: --bogus"),
    (["handle", "nosuch"], "unknown handler class 'nosuch'"),
    (["handle", "_common"], "is not a valid name"),
])
def test_bad_command_lines_are_exit_2_in_one_line(run_cli, args, words):
    ran = run_cli(*args, input="")
    assert ran.returncode == 2 and words in ran.stderr and "Traceback" not in ran.stderr


def test_check_spool_reports_depth_and_age(run_cli, st2, state_dir, make_config):
    st2.set_mode("down")
    config = make_config({"spool": {"warning_depth": 1, "critical_depth": 5}})
    ok = run_cli("check", "spool", "--config", config)
    assert ok.returncode == 0 and ok.stdout.startswith("SPOOL OK: spool empty; no dead letters |")
    for n in range(2):
        event = json.loads(GO)
        event["id"] = f"depth-{n}"
        run_cli("handle", "sensu", "--config", config, input=json.dumps(event), env=st2_env(st2))
    warn = run_cli("check", "spool", "--config", config, env=st2_env(st2))
    assert warn.returncode == 1, warn
    assert warn.stdout.startswith("SPOOL WARNING: 2 event(s) waiting (warn >1), oldest ")
    assert "'depth'=2;1;5;0" in warn.stdout and "'deadletter'=0;0;;0" in warn.stdout
    assert "breaker: open: StackStorm unreachable" in warn.stdout
    # The oldest event has waited two hours (the age is in its file name).
    oldest = sorted(n for n in os.listdir(state_dir / "spool") if n[0].isdigit())[0]
    stamp, rest = oldest.split("-", 1)
    os.rename(state_dir / "spool" / oldest,
              state_dir / "spool" / f"{int(stamp) - 7200 * 10**9:020d}-{rest}")
    crit = run_cli("check", "spool", "--config", config)
    assert crit.returncode == 2 and "oldest 2.0h (crit >1.0h)" in crit.stdout, crit
    assert run_cli("check", "spool", "--config", config, "--age-critical", "3h").returncode == 1
    zabbix = run_cli("check", "spool", "--config", config, "--format", "zabbix", "--field", "depth")
    assert (zabbix.returncode, zabbix.stdout.strip()) == (0, "2")


def test_check_spool_warns_on_dead_letters(run_cli, state_dir):
    run_cli("handle", "sensu", input="not json")
    ran = run_cli("check", "spool")
    assert ran.returncode == 1 and "1 dead letter(s)" in ran.stdout


def test_status_shows_spool_breaker_and_events(run_cli, st2, state_dir):
    st2.set_mode("down")
    run_cli("handle", "sensu", input=fixture_text("sensu", "sensu-classic-event.json"), env=st2_env(st2))
    ran = run_cli("status", env=st2_env(st2))
    assert ran.returncode == 0
    assert "spool: 1 event(s) waiting" in ran.stdout
    assert "sensu-classic client-01/keepalive CRITICAL (id ef6b87d2-" in ran.stdout
    assert "ESCALATED" in ran.stdout
    assert "stackstorm: open: StackStorm unreachable" in ran.stdout
    assert "forward sensu-classic client-01/keepalive" in ran.stdout
    as_json = run_cli("status", "--json", env=st2_env(st2)).json
    assert as_json["spool"]["depth"] == 1 and as_json["waiting"][0]["escalated"] is True


def test_check_spool_with_a_broken_configuration_is_unknown_with_the_reason(run_cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("spool: {warning_depth: many}\n")
    ran = run_cli("check", "spool", "--config", str(bad))
    assert ran.returncode == 3
    assert ran.stdout.startswith("SPOOL UNKNOWN: ") and "spool.warning_depth" in ran.stdout
    assert "internal error" not in ran.stdout
