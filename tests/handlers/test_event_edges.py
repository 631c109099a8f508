"""Issue 13, items 2-5: stable Sensu Go incident ids, inputs that used to crash the
parsers, bad command lines and dead-letter caps, and the guards at the edges."""
import io
import json
import os

import pytest

from autoremedy.pipeline.event import MalformedEvent, decode_json
from autoremedy.contract.guard import Guard, Skip, Refused, same_host
from autoremedy.contract.remediation import Trigger
from autoremedy.contract.result import Status
from autoremedy.pipeline.sources.sensu import from_sensu
from autoremedy.pipeline.sources.zabbix import from_zabbix, from_zabbix_params

from handlerkit import audit_records, fixture_text, run_bytes, spool_entries

GO = json.loads(fixture_text("sensu", "sensu-go-event.json"))
INTERVAL = 60


def go_event(history, last_ok=None, with_id=False):
    event = json.loads(json.dumps(GO))
    if not with_id:
        del event["id"]
    status, executed = history[-1]
    event["check"].update(status=status, executed=executed, history=[
        {"status": s, "executed": t} for s, t in history[-21:]],
        state="passing" if status == 0 else "failing")
    if last_ok is None:
        event["check"].pop("last_ok", None)
    else:
        event["check"]["last_ok"] = last_ok
    event["timestamp"] = executed
    return event


def stream(statuses, start=1_700_000_000):
    """Sensu Go's view of a check run after run: (event, history so far, last_ok)."""
    history, last_ok = [], None
    for i, status in enumerate(statuses):
        executed = start + i * INTERVAL
        history.append((status, executed))
        if status == 0:
            last_ok = executed              # Sensu Go: last_ok = executed on every OK run
        yield history[-21:], last_ok


# --- item 2: incident ids of Sensu Go events without id -------------------------------

def test_a_60_event_failing_streak_is_one_incident_and_a_new_failure_a_new_one():
    statuses = [0] * 5 + [2] * 60 + [0] * 3 + [2] * 5
    ids = []
    for history, last_ok in stream(statuses):
        event = from_sensu(go_event(history, last_ok))
        ids.append((history[-1][0], event.id))
    first = {i for s, i in ids[5:65]}
    second = {i for s, i in ids[68:]}
    assert len(first) == 1, "one incident, one id, though the history slid 40 times"
    assert len(second) == 1 and second != first      # recovery, then a new failure: a new id


def test_without_last_ok_the_handler_keeps_the_start(monkeypatch, tmp_path, capsys):
    """A hand-made event: no id, no last_ok, a history of nothing but failures once
    the streak is longer than 21. The handler keeps the first failing time it saw."""
    from autoremedy.handlers import sensu
    monkeypatch.setenv("AUTOREMEDY_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("AUTOREMEDY_CONFIG", raising=False)
    monkeypatch.setenv("AUTOREMEDY_CONFIG", str(tmp_path / "none.yaml"))
    (tmp_path / "none.yaml").write_text("{}\n")
    statuses = [0] * 3 + [2] * 60 + [0] + [2] * 3
    for history, _ in stream(statuses):
        data = json.dumps(go_event(history, last_ok=None)).encode()
        assert sensu.main([], stdin=io.BytesIO(data)) in (0, 1)
    capsys.readouterr()
    ids = {}
    for entry in spool_entries(tmp_path):
        event = entry["event"]
        ids.setdefault((event["status"], event["started"]), set()).add(event["id"])
    problems = sorted(k for k in ids if k[0] == 2)
    assert len(problems) == 2                          # two incidents ...
    assert all(len(ids[k]) == 1 for k in problems)    # ... one id each (spool entries deduped)
    assert len(spool_entries(tmp_path)) <= 2 + 2       # 60 events -> one entry per incident


def test_the_start_agrees_whether_the_last_ok_run_is_in_the_history_or_not():
    statuses = [0] + [2] * 30
    starts = {from_sensu(go_event(h, ok)).started for h, ok in stream(statuses)
              if h[-1][0] == 2}
    assert starts == {1_700_000_000}


# --- item 3: the inputs that crashed the parsers ------------------------------------------

CLASSIC = json.loads(fixture_text("sensu", "sensu-classic-event.json"))


def classic_with(history):
    event = json.loads(json.dumps(CLASSIC))
    event["check"]["history"] = history
    return event


CRASHERS = [
    ("classic-superscript-history", lambda: from_sensu(classic_with(["²"])), "history[0]"),
    ("classic-4301-digit-history", lambda: from_sensu(classic_with(["9" * 4301])), "history[0]"),
    ("zabbix-superscript-severity", lambda: from_zabbix("x", "PROBLEM", json.dumps(
        {"event_id": "1", "host": "h", "trigger": "t", "severity": "²"})), None),
    ("zabbix-4301-digit-severity", lambda: from_zabbix("x", "PROBLEM", json.dumps(
        {"event_id": "1", "host": "h", "trigger": "t", "severity": "9" * 4301})), None),
    ("zabbix-clock-over-1e308", lambda: from_zabbix("x", "PROBLEM",
        '{"event_id": "1", "host": "h", "trigger": "t", "clock": ' + "9" * 400 + "}"), None),
    ("webhook-superscript-severity", lambda: from_zabbix_params(
        {"EventID": "1", "Host": "h", "TriggerName": "t", "Severity": "²"}), None),
    ("sensu-1e999-timestamp", lambda: from_sensu(decode_json(
        json.dumps(GO).replace('"timestamp": 1617050507', '"timestamp": 1e999').encode(),
        1 << 20)), "out of range"),
]


@pytest.mark.parametrize("name,parse,refusal", CRASHERS, ids=[c[0] for c in CRASHERS])
def test_inputs_that_crashed_a_parser_are_an_event_or_a_reason(name, parse, refusal):
    if refusal is None:
        event = parse()                                # a bad severity is no severity: CRITICAL
        assert event.status is Status.CRITICAL and event.host == "h"
        json.dumps(event.to_dict(with_raw=True), allow_nan=False)
    else:
        with pytest.raises(MalformedEvent, match=refusal.replace("[", r"\[")):
            parse()


def test_a_value_that_overflows_a_double_never_reaches_the_post_body(run_cli, state_dir):
    data = json.dumps(GO).replace('"timestamp": 1617050507', '"timestamp": 1e999')
    ran = run_cli("handle", "sensu", input=data)
    assert ran.returncode == 2 and "out of range" in ran.stderr
    assert spool_entries(state_dir) == []
    [letter] = [n for n in os.listdir(state_dir / "deadletter") if n.endswith(".raw")]
    assert (state_dir / "deadletter" / letter).read_text() == data


@pytest.mark.parametrize("name,args,reason", [
    ("classic-superscript", ["handle", "sensu"], "history[0]"),
    ("zabbix-huge-clock", ["handle", "zabbix", "--", "ops", "PROBLEM",
                           '{"event_id": "1", "host": "h", "trigger": "t", "clock": 1e999}'],
     "out of range"),
])
def test_crashers_through_the_installed_handler_are_dead_letters_not_internal_errors(
        run_cli, state_dir, name, args, reason):
    stdin = json.dumps(classic_with(["²"])) if args[1] == "sensu" else None
    ran = run_cli(*args, input=stdin)
    assert "internal error" not in ran.stderr
    assert ran.returncode == 2 and reason in ran.stderr
    assert os.listdir(state_dir / "deadletter") and spool_entries(state_dir) == []


# --- item 4: bad command lines and dead-letter caps ----------------------------------------

@pytest.mark.parametrize("argv", [
    ["--dry-run", "PROBLEM", "{}"], ["--", "PROBLEM", "{}"], ["--config=/x", "PROBLEM", "{}"],
    ["--webhook", "PROBLEM", "{}"], ["ops", "PROBLEM"], ["a", "b", "c", "d"],
])
def test_bad_zabbix_command_lines_are_dead_lettered_with_the_argv(run_cli, state_dir, argv):
    ran = run_cli("handle", "zabbix", *argv)
    assert ran.returncode == 2
    assert "bad command line" in ran.stderr
    [meta_name] = [n for n in os.listdir(state_dir / "deadletter") if n.endswith(".json")]
    meta = json.loads((state_dir / "deadletter" / meta_name).read_text())
    assert meta["argv"] == argv and meta["reason"].startswith("bad command line")
    [record] = audit_records(state_dir, "deadletter")
    assert record["reason"].startswith("bad command line")


def test_a_sendto_starting_with_dashes_is_an_argument_after_double_dash(run_cli, state_dir):
    """What the packaged alert script does: `handle zabbix -- "$@"`."""
    ran = run_cli("handle", "zabbix", "--", "--dry-run", "PROBLEM",
                  fixture_text("zabbix", "problem-message.json"))
    assert ran.returncode in (0, 1), ran
    [entry] = spool_entries(state_dir)
    assert entry["event"]["extra"]["sendto"] == "--dry-run"


def test_bad_sensu_command_line_keeps_the_event_on_stdin(run_cli, state_dir):
    event = fixture_text("sensu", "sensu-go-event.json")
    ran = run_cli("handle", "sensu", "--bogus", input=event)
    assert ran.returncode == 2 and "bad command line" in ran.stderr
    [raw] = [n for n in os.listdir(state_dir / "deadletter") if n.endswith(".raw")]
    assert (state_dir / "deadletter" / raw).read_text() == event
    meta = json.loads((state_dir / "deadletter" / raw.replace(".raw", ".json")).read_text())
    assert meta["argv"] == ["--bogus"]


def test_dead_letters_are_capped_per_file_and_for_the_folder(state_dir, make_config):
    config = make_config({"spool": {"deadletter_max_file": "64K", "deadletter_max_total": "256K",
                                    "deadletter_max_count": 5, "max_event_size": "32K"}})
    env = {"AUTOREMEDY_CONFIG": config}
    big = b'{"pad": "' + b"x" * (3 << 20) + b'"}'
    ran = run_bytes(["handle", "sensu"], big, state_dir, env=env)
    assert ran.returncode == 2
    for i in range(8):
        run_bytes(["handle", "sensu"], f"garbage {i}".encode(), state_dir, env=env)
    folder = state_dir / "deadletter"
    raws = sorted(n for n in os.listdir(folder) if n.endswith(".raw"))
    assert len(raws) == 5                                     # deadletter_max_count
    assert sum(os.path.getsize(folder / n) for n in os.listdir(folder)) <= 256 << 10
    assert (folder / raws[-1]).read_bytes() == b"garbage 7"   # the newest is always kept
    pruned = [r for r in audit_records(state_dir, "deadletter") if r["result"] == "pruned"]
    assert len(pruned) == 4
    assert pruned[0]["bytes"] <= (64 << 10) + 1024            # the 3 MiB input kept 64 KiB
    assert "larger than the limit" in pruned[0]["reason"]


# --- item 5: guards at the edges -----------------------------------------------------------

def guard(tmp_path, lines=None, hostname="grdhost", **limits):
    path = tmp_path / "maintenance"
    if lines is not None:
        path.write_text("\n".join(lines) + "\n")
    base = {"min_occurrences": 1, "flap": {"changes": 0, "window": 1800.0}}
    base.update(limits)
    return Guard(str(tmp_path / "state"), "process", base, str(path), hostname)


@pytest.mark.parametrize("line", ["GRDHOST", "grdhost.example.com", "GrdHost.", "grdhost"])
def test_maintenance_names_this_node_as_routing_does(tmp_path, line):
    with pytest.raises(Refused) as refused:
        guard(tmp_path, [line]).admit("svc", Trigger(status=2))
    assert refused.value.guard == "maintenance" and line in refused.value.reason


def test_maintenance_names_the_events_host_too(tmp_path):
    g = guard(tmp_path, ["CMP-07.example.com"], hostname="backend-1")
    with pytest.raises(Refused):
        g.admit("svc", Trigger(status=2, host="cmp-07"))
    g.admit("svc", Trigger(status=2, host="cmp-08"))         # another node: not covered


def test_two_fqdns_of_different_domains_are_not_one_node(tmp_path):
    assert not same_host("grdhost.a.example", "grdhost.b.example")
    guard(tmp_path, ["grdhost.other.example"], hostname="grdhost.example.com").admit(
        "svc", Trigger(status=2))


def test_min_occurrences_counts_here_when_the_event_has_no_count(tmp_path):
    g = guard(tmp_path, min_occurrences=3)
    for seen in (1, 2):
        with pytest.raises(Skip) as skipped:
            g.admit("svc", Trigger(source="zabbix", status=2))
        assert f"seen {seen} time(s) (counted here" in skipped.value.reason
    g.admit("svc", Trigger(source="zabbix", status=2))       # the third: act
    g.admit("svc", Trigger(source="zabbix", status=0))       # an OK resets the run
    with pytest.raises(Skip):
        g.admit("svc", Trigger(source="zabbix", status=2))


def test_min_occurrences_uses_the_monitors_count_when_there_is_one(tmp_path):
    g = guard(tmp_path, min_occurrences=3)
    with pytest.raises(Skip, match="seen 2 time"):
        g.admit("svc", Trigger(status=2, occurrences=2, history=[2, 2]))
    g.admit("svc", Trigger(status=2, occurrences=3, history=[2, 2, 2]))


def test_a_human_running_remediate_is_not_held_by_min_occurrences(tmp_path):
    guard(tmp_path, min_occurrences=3).admit("svc", Trigger(source="cli"))


def test_the_hook_takes_a_silence(run_cli, make_config, state_dir, tmp_path):
    pidfile = tmp_path / "svc.pid"
    config = make_config({"hostname": "node-under-test", "remediations": {"process": {
        "enabled": True, "targets": {"svc": {"start": ["/bin/true"], "check": {"pidfile": str(pidfile)}}}}}})
    for extra, env in (((("--silenced",)), None), ((), {"AUTOREMEDY_SILENCED": "1"})):
        ran = run_cli("handle", "hook", "process", "--config", config, "--target", "svc", *extra,
                      "--pidfile", str(pidfile), env=env)
        assert ran.returncode == 0, ran
        assert "skipped: the event is silenced in the monitor" in ran.stdout, ran
    assert all(e["event"]["silenced"] for e in spool_entries(state_dir))
