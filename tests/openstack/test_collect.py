"""`autoremedy collect` on generated nova/neutron/rabbitmq logs."""
import calendar
import gzip
import json
import os
import shutil

import pytest

import oslogs

from autoremedy.collection import collect, logwindow
from autoremedy.collection import effort as collect_effort
from autoremedy.config import Config
from autoremedy.collection.loggraph import extract

T0 = 1795000000.0      # 2026-11-18, a fixed incident time


@pytest.fixture
def incident(tmp_path, make_config):
    sources = oslogs.write(tmp_path / "log", T0)
    path = make_config({"hostname": "cmp1", "collect": {
        "sources": sources, "out_dir": str(tmp_path / "incidents"),
        "checks": {"compute-node": ["nova-compute", "neutron-openvswitch-agent", "rabbitmq"]}}})
    return path


def test_extract_reads_oslo_context_typed_uuids_and_amqp_ports():
    line = oslogs.oslo(T0, 1, "ERROR", "nova.compute.manager", f"port {oslogs.PORT} failed",
                       oslogs.GLOBAL_REQ, oslogs.COMPUTE_REQ, oslogs.INSTANCE)
    found = extract(line)
    assert found[oslogs.GLOBAL_REQ] == "global-request"
    assert found[oslogs.COMPUTE_REQ] == "request"
    assert found[oslogs.INSTANCE] == "instance"
    assert found[oslogs.PORT] == "port"
    rabbit = "2026-11-25 03:12:01.000001+00:00 [info] <0.1.0> accepting AMQP connection <0.1.0> (10.0.0.9:54321 -> 10.0.0.5:5672)"
    nova = "... Reconnected to AMQP server on 10.0.0.5:5672 via [amqp] client with port 54321."
    assert extract(rabbit) == {"amqp:54321": "connection"} == extract(nova)


def test_the_bundle_centres_on_the_error_and_summarises_the_rest(incident):
    result = collect.collect(Config.load(incident), T0)
    path = result["path"]
    for name in ("summary.json", "summary.txt", "graph.json", "graph.dot", "logs/nova-compute.log",
                 "logs/rabbitmq.log"):
        assert os.path.exists(os.path.join(path, name)), name
    with open(os.path.join(path, "graph.json")) as handle:
        graph = json.load(handle)
    drawn = {n["id"] for n in graph["nodes"]}
    # the root-cause chain: the boot's requests, its instance and port, the agent's
    # lost AMQP connection and the broker's side of it
    chain = {oslogs.GLOBAL_REQ, oslogs.COMPUTE_REQ, oslogs.NEUTRON_REQ, oslogs.INSTANCE, oslogs.PORT,
             oslogs.AGENT_REQ, "amqp:54321", "service:neutron-openvswitch-agent", "service:rabbitmq",
             "service:nova-compute", "service:neutron-server"}
    assert chain <= drawn, chain - drawn
    # unrelated requests in the same window are not drawn, only counted
    assert oslogs.UNRELATED_REQ not in drawn
    assert not any(n.startswith("req-") and n.endswith("-eeee-4eee-8eee-eeeeeeeeeeee") for n in drawn)
    assert graph["unlinked"]["requests"] >= oslogs.NOISE_REQUESTS + 1
    assert result["unlinked"].endswith("nothing linked")
    # the seeds are the ids on error lines
    assert result["seeds"][oslogs.INSTANCE] == "error line" and result["seeds"]["amqp:48000"] == "error line"
    # signatures: one per error message (a traceback is one error), all new
    # (a message seen once is its own template: Drain has nothing to generalise from)
    new = sorted((s["service"], s["template"][:40]) for s in result["new_signatures"])
    assert new == [("neutron-openvswitch-agent", "[2c9f] AMQP server on <IP> is unreachabl"),
                   ("neutron-server", "Failed to notify nova on events: [{'serv"),
                   ("nova-compute", "Instance failed to spawn: nova.exception"),
                   ("rabbitmq", "closing AMQP connection <0.1234.0> (<IP>"),
                   ("rabbitmq", "missed heartbeats from client, timeout: ")], new
    spawn = next(s for s in result["new_signatures"] if s["service"] == "nova-compute")
    assert spawn["count"] == 1 and spawn["level"] == "ERROR"
    effort = result["effort"]
    assert effort["inputs"]["new_error_signatures"] == 5 and effort["inputs"]["services"] == 5
    assert effort["size"] == "medium" and effort["formula"] == collect_effort.FORMULA
    assert result["summary"].startswith(path + ": 5 new error signature(s): ")
    with open(os.path.join(path, "summary.txt")) as handle:
        text = handle.read()
    assert "New error signatures" in text and "Not drawn: " in text and "formula:" in text
    # lines outside the window are not in the excerpts
    with open(os.path.join(path, "logs", "nova-compute.log")) as handle:
        excerpt = handle.read()
    assert "Final resource view" not in excerpt and "usage audit" not in excerpt
    assert "VirtualInterfaceCreateException" in excerpt
    edge = [e for e in graph["edges"] if e["source"] == oslogs.GLOBAL_REQ and
            e["target"] == oslogs.INSTANCE][0]
    assert edge["count"] == 9 and edge["first"] < edge["last"]


def test_a_healthy_window_has_nothing_to_look_at(tmp_path, make_config):
    log = tmp_path / "nova-api.log"
    log.write_text("".join(oslogs.oslo(T0 - 300 + k, 2211, "INFO", "nova.api.openstack.requestlog",
                                       '"GET /v2.1/servers" status: 200', None,
                                       f"req-{k:08x}-eeee-4eee-8eee-eeeeeeeeeeee") + "\n" for k in range(300)))
    path = make_config({"collect": {"sources": [{"name": "nova-api", "path": str(log)}],
                                    "out_dir": str(tmp_path / "out")}})
    result = collect.collect(Config.load(path), T0)
    assert result["effort"]["size"] == "none" and result["effort"]["minutes"] == 0
    assert result["summary"].endswith("nothing to look at: no error, no id of the event in the window; "
                                      "effort none")
    assert result["new_signatures"] == [] and result["links"] == []
    with open(result["graph"]["dot"]) as handle:
        assert "req-" not in handle.read()


def test_an_error_seen_in_the_hour_before_is_known_not_new(tmp_path, make_config):
    log = tmp_path / "nova-compute.log"
    rows = [oslogs.oslo(T0 - 2400 + 60 * k, 3001, "ERROR", "nova.compute.manager",
                        f"Error updating resources for node cmp{k}.") for k in range(10)]
    rows += [oslogs.oslo(T0 - 10, 3001, "ERROR", "nova.compute.manager", "Error updating resources for node cmp1."),
             oslogs.oslo(T0, 3001, "ERROR", "nova.compute.manager", "Unexpected build failure, not rescheduling",
                         oslogs.GLOBAL_REQ, oslogs.COMPUTE_REQ, oslogs.INSTANCE)]
    log.write_text("\n".join(rows) + "\n")
    path = make_config({"collect": {"sources": [{"name": "nova-compute", "path": str(log)}],
                                    "out_dir": str(tmp_path / "out")}})
    result = collect.collect(Config.load(path), T0)
    assert [s["template"] for s in result["new_signatures"]] == ["Unexpected build failure, not rescheduling"]
    assert [(s["template"], s["new"]) for s in result["error_signatures"]] == [
        ("Unexpected build failure, not rescheduling", True), ("Error updating resources for node <*>", False)]
    assert result["effort"]["size"] == "small"          # one new error signature in one service


def test_an_event_id_that_is_not_a_uuid_is_a_seed_by_its_mention(tmp_path, make_config):
    log = tmp_path / "rabbit.log"
    log.write_text("\n".join([
        f"{oslogs.utc_iso(T0 - 60)} [info] <0.900.0> queue 'notifications.info' in vhost '/': 50000 messages",
        f"{oslogs.utc_iso(T0 - 50)} [info] <0.901.0> queue 'versioned_notifications.info' in vhost '/': 3 messages",
    ]) + "\n")
    path = make_config({"collect": {"sources": [{"name": "rabbitmq", "path": str(log), "format": "rabbitmq",
                                                 "utc": True}], "out_dir": str(tmp_path / "out")}})
    result = collect.collect(Config.load(path), T0, ids=["notifications.info"])
    assert result["seeds"] == {"notifications.info": "event"}
    assert result["effort"]["size"] != "none"
    assert collect.event_ids({"autoremedy_class": "rabbitmq-queues", "autoremedy_target": "notifications.info"},
                             f"instance {oslogs.INSTANCE} stuck", "notifications.info") == [
        "notifications.info", "autoremedy_class" and "rabbitmq-queues", oslogs.INSTANCE]


def test_a_check_selects_its_related_sources(incident):
    result = collect.collect(Config.load(incident), T0, check="compute-node")
    with open(os.path.join(result["path"], "summary.json")) as handle:
        summary = json.load(handle)
    assert sorted(summary["sources"]) == ["neutron-openvswitch-agent", "nova-compute", "rabbitmq"]


def test_the_dot_file_is_valid_and_drawn_when_graphviz_is_there(incident):
    result = collect.collect(Config.load(incident), T0)
    with open(result["graph"]["dot"]) as handle:
        dot = handle.read()
    assert dot.startswith("digraph incident {") and f'"{oslogs.PORT}"' in dot and "color=red" in dot


@pytest.mark.integration
def test_graphviz_draws_svg_and_png(incident):
    assert shutil.which("dot"), "graphviz is installed by scripts/setup.d/35-openstack.sh"
    result = collect.collect(Config.load(incident), T0)
    drawn = result["graph"]["drawn"]
    assert [os.path.basename(p) for p in drawn] == ["graph.svg", "graph.png"]
    with open(drawn[0]) as handle:
        svg = handle.read()
    assert "<svg" in svg and "rabbitmq" in svg and "nova&#45;compute" in svg
    with open(drawn[1], "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.integration
def test_a_link_planted_at_a_drawing_is_replaced_never_written_through(incident, tmp_path):
    """The bundle sits in the group's state directory and dot (root, maybe) writes by
    name: a link a group member planted at graph.svg just before dot runs must not
    send the drawing over the file it points to. dot draws in a private folder and
    the drawing is put in the bundle by a rename over the name."""
    from autoremedy.contract import execute
    secret = tmp_path / "secret"
    secret.write_text("ROOT-ONLY\n")

    def runner(argv, **kwargs):
        if argv[0] == "dot" and argv[1] == "-Tsvg":
            [bundle] = os.listdir(tmp_path / "incidents")
            os.symlink(secret, tmp_path / "incidents" / bundle / "graph.svg")
        return execute.run(argv, **kwargs)
    result = collect.collect(Config.load(incident), T0, runner=runner)
    assert secret.read_text() == "ROOT-ONLY\n"
    svg = os.path.join(result["path"], "graph.svg")
    assert result["graph"]["drawn"][0] == svg and not os.path.islink(svg)
    with open(svg) as handle:
        assert "<svg" in handle.read()


def test_without_graphviz_the_bundle_says_so(incident, monkeypatch, tmp_path):
    monkeypatch.setenv("AUTOREMEDY_EXEC_PATH", str(tmp_path / "empty"))
    result = collect.collect(Config.load(incident), T0)
    assert result["graph"]["drawn"] == [] and "graph not drawn: dot: command not found" in result["notes"]


def test_a_large_log_is_bisected_to_the_window(tmp_path):
    path = oslogs.big_log(str(tmp_path / "big.log"), T0)
    size = os.path.getsize(path)
    assert size > logwindow.BISECT_ABOVE
    stamp = logwindow.Stamper("oslo")
    rows = logwindow.read_file(path, stamp, T0 - 2, T0 + 2)
    assert rows[-1][1].endswith("the needle") and len(rows) == 21
    with open(path, "rb") as raw:
        offset = logwindow._bisect(raw, size, stamp, T0 - 2)
    # reading starts within the last 64 KiB before the window, not at the top
    assert size - 70000 < offset < size


def test_rotated_gzip_files_are_read_too(tmp_path):
    live = tmp_path / "nova-compute.log"
    old = tmp_path / "nova-compute.log.1.gz"
    with gzip.open(old, "wt") as handle:
        handle.write(oslogs.oslo(T0 - 60, 1, "ERROR", "nova", "before rotation") + "\n")
    live.write_text(oslogs.oslo(T0, 1, "INFO", "nova", "after rotation") + "\n")
    os.utime(old, (T0 - 30, T0 - 30))
    stamp = logwindow.Stamper("oslo")
    files = logwindow.files_for(str(tmp_path / "nova-compute.log*"), T0 - 300)
    assert [os.path.basename(f) for f in files] == ["nova-compute.log.1.gz", "nova-compute.log"]
    lines = [line for f in files for _, line in logwindow.read_file(f, stamp, T0 - 300, T0 + 300)]
    assert "before rotation" in lines[0] and "after rotation" in lines[1]


WHEN = calendar.timegm((2026, 11, 18, 7, 33, 20))


@pytest.mark.parametrize("fmt, line, expected", [
    ("rabbitmq", "2026-11-18 07:33:20.000000+00:00 [error] <0.1.0> x", WHEN),
    ("iso8601", "2026-11-18T07:33:20Z x", WHEN),
    ("iso8601", "2026-11-18T09:33:20+0200 x", WHEN),
    ("oslo", "2026-11-18 07:33:20.250 123 INFO nova x", WHEN + 0.25),
    ("rabbitmq-legacy", "=ERROR REPORT==== 18-Nov-2026::07:33:20 ===", WHEN),
    ("syslog", "Nov 18 07:33:20 cmp1 nova-compute[12]: x", WHEN),
    ({"regex": r"^\[(?P<ts>[^]]+)\]", "strptime": "%d/%b/%Y:%H:%M:%S %z"}, "[18/Nov/2026:07:33:20 +0000] GET /", WHEN),
])
def test_timestamp_formats(fmt, line, expected):
    assert logwindow.Stamper(fmt, utc=True, year_hint=2026)(line) == expected


def test_journald_units_are_read_through_the_boundary(tmp_path, make_config, fakebin, monkeypatch):
    rows = [{"__REALTIME_TIMESTAMP": str(int(T0 * 1e6)), "MESSAGE": f"port {oslogs.PORT} down",
             "_HOSTNAME": "cmp1", "PRIORITY": "3"},
            {"__REALTIME_TIMESTAMP": str(int((T0 + 5) * 1e6)), "MESSAGE": list(b"bytes message"),
             "_HOSTNAME": "cmp1", "PRIORITY": "6"}]
    script = tmp_path / "bin" / "journalctl"
    script.write_text("#!/bin/sh\n" + "".join(f"echo '{json.dumps(r)}'\n" for r in rows))
    script.chmod(0o755)
    path = make_config({"collect": {"sources": [{"name": "ovs-agent", "unit": "neutron-openvswitch-agent"}],
                                    "out_dir": str(tmp_path / "out")}})
    result = collect.collect(Config.load(path), T0)
    assert result["seeds"] == {oslogs.PORT: "error line"}       # priority 3 is an error
    with open(os.path.join(result["path"], "logs", "ovs-agent.log")) as handle:
        assert handle.read().splitlines() == [f"port {oslogs.PORT} down", "bytes message"]


def test_for_event_never_raises(make_config):
    bad = make_config({"collect": {"sources": [{"name": "x"}]}})
    result = collect.for_event(Config.load(bad), "cmp1", "compute-node", T0)
    assert result["path"] is None and "give exactly one of path" in result["summary"]


def test_bad_sources_are_named(make_config):
    path = make_config({"collect": {"sources": [{"name": "a", "path": "/x", "format": "apache"}]}})
    with pytest.raises(Exception) as err:
        collect.settings(Config.load(path))
    assert "collect.sources[0].format: unknown format 'apache'" in str(err.value)


@pytest.mark.integration
def test_cli_collect_prints_the_bundle_and_its_size(incident, run_cli, tmp_path):
    ran = run_cli("collect", "--config", incident, "--at", str(T0), "--window", "15m", "--json")
    assert ran.returncode == 0, ran
    result = ran.json
    assert os.path.isdir(result["path"]) and result["effort"]["inputs"]["services"] == 5
    text = run_cli("collect", "--config", incident, "--at", "2026-13-45", "--window", "15m")
    assert text.returncode == 2 and text.stderr.startswith("autoremedy: cannot read time") and "Traceback" not in text.stderr


def test_for_event_takes_the_event_time_in_any_form(incident):
    config = Config.load(incident)
    by_epoch = collect.for_event(config, "cmp1", "compute-node", T0)
    by_text = collect.for_event(config, "cmp1", "compute-node", str(int(T0)))
    assert by_epoch["effort"] == by_text["effort"] and by_epoch["path"] != by_text["path"]
    assert by_epoch["summary"].startswith(by_epoch["path"] + ": 4 new error signature(s)")
