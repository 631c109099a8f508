"""The StackStorm double follows StackStorm's webhook API (st2api's webhooks controller): other tests (and the
packaging engineer's Zabbix end-to-end test) trust it, so it is tested too."""
import http.client
import json
import os
import re
import subprocess
import sys
import time

import pytest

from handlerkit import API_KEY, DOUBLE_PATH, st2_double


@pytest.fixture
def double():
    with st2_double.St2Double(api_key=API_KEY, hooks=["autoremedy", "ops/alerts"],
                              tokens=["good-token"]) as d:
        yield d


def call(double, method, path, body=b"", headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", double.port, timeout=5)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, json.loads(data), dict(response.getheaders())


JSON = {"Content-Type": "application/json", "St2-Api-Key": API_KEY}


@pytest.mark.parametrize("path", ["/api/v1/webhooks/autoremedy", "/v1/webhooks/autoremedy",
                                  "/webhooks/autoremedy", "/api/v1/webhooks/autoremedy/"])
def test_202_echoes_the_body_on_every_route(double, path):
    status, body, headers = call(double, "POST", path, b'{"a": [1, 2]}', JSON)
    assert (status, body) == (202, {"a": [1, 2]})
    assert headers["Content-Type"] == "application/json"


def test_hook_names_may_contain_slashes(double):
    assert call(double, "POST", "/api/v1/webhooks/ops/alerts", b"{}", JSON)[0] == 202


def test_unregistered_hook_is_404_with_faultstring(double):
    assert call(double, "POST", "/api/v1/webhooks/nope", b"{}", JSON)[:2] == \
        (404, {"faultstring": "Webhook nope not registered with st2"})


@pytest.mark.parametrize("headers,path,status", [
    ({}, "/api/v1/webhooks/autoremedy", 401),
    ({"St2-Api-Key": "bad"}, "/api/v1/webhooks/autoremedy", 401),
    ({}, f"/api/v1/webhooks/autoremedy?st2-api-key={API_KEY}", 202),
    ({}, "/api/v1/webhooks/autoremedy?x-auth-token=good-token", 202),
    ({"Cookie": "auth-token=good-token"}, "/api/v1/webhooks/autoremedy", 202),
    ({"X-Auth-Token": "good-token"}, "/api/v1/webhooks/autoremedy", 202),
    # The first credential present is the one checked: a stale token next to a
    # valid key fails (st2common/router.py, inferred from the code).
    ({"X-Auth-Token": "stale", "St2-Api-Key": API_KEY}, "/api/v1/webhooks/autoremedy", 401),
    ({"St2-Api-Key": API_KEY}, "/api/v1/webhooks/autoremedy?x-auth-token=stale", 202),
])
def test_authentication_order(double, headers, path, status):
    headers = dict(headers, **{"Content-Type": "application/json"})
    got, body, _ = call(double, "POST", path, b"{}", headers)
    assert got == status
    if status == 401:
        assert body["faultstring"].startswith("Unauthorized - ")


def test_auth_disabled_needs_no_credential():
    with st2_double.St2Double(auth=False) as d:
        assert call(d, "POST", "/api/v1/webhooks/autoremedy", b"{}",
                    {"Content-Type": "application/json"})[0] == 202


@pytest.mark.parametrize("content_type,data,expected", [
    ("application/json; charset=utf-8", b'{"a": 1}', (202, {"a": 1})),
    ("application/json", b"", (202, {})),
    ("application/x-www-form-urlencoded", b"a=1&a=2&b=", (202, {"a": ["1", "2"], "b": [""]})),
    (None, b'{"coerced": true}', (202, {"coerced": True})),
    ("application/json", b"{not json", (400, {"faultstring": "Failed to parse request body"})),
    ("text/plain", b"{}", (400, {"faultstring": 'Failed to parse request body: Unsupported Content-Type: "text/plain"'})),
])
def test_content_types(double, content_type, data, expected):
    headers = {"St2-Api-Key": API_KEY}
    if content_type:
        headers["Content-Type"] = content_type
    assert call(double, "POST", "/api/v1/webhooks/autoremedy", data, headers)[:2] == expected


def test_multipart_values_are_lists(double):
    data = (b"--XX\r\nContent-Disposition: form-data; name=\"host\"\r\n\r\nweb-01\r\n"
            b"--XX--\r\n")
    headers = {"St2-Api-Key": API_KEY, "Content-Type": "multipart/form-data; boundary=XX"}
    assert call(double, "POST", "/api/v1/webhooks/autoremedy", data, headers)[:2] == \
        (202, {"host": ["web-01"]})


@pytest.mark.parametrize("data,expected", [
    (b'{"trigger": "autoremedy.event", "payload": {"x": 1}}', 202),
    (b'{"payload": {}}', 400),
    (b'{"trigger": "", "payload": {}}', 400),
    (b'[{"trigger": "autoremedy.event"}]', 400),
    (b'{"trigger": "unknown.type", "payload": {}}', 400),
])
def test_generic_st2_hook(double, data, expected):
    status, body, _ = call(double, "POST", "/api/v1/webhooks/st2", data, JSON)
    assert status == expected
    if status == 400:
        assert set(body) == {"faultstring"}


def test_custom_hooks_accept_arrays(double):
    assert call(double, "POST", "/api/v1/webhooks/autoremedy", b"[1, 2]", JSON)[:2] == (202, [1, 2])


def test_trace_tag_and_request_id(double):
    call(double, "POST", "/api/v1/webhooks/autoremedy", b"{}", dict(JSON, **{"St2-Trace-Tag": "evt-9"}))
    _, _, headers = call(double, "POST", "/api/v1/webhooks/autoremedy", b"{}",
                         dict(JSON, **{"X-Request-ID": "req-1"}))
    tagged, generated = double.accepted()
    assert tagged["trace_tag"] == "evt-9"
    assert re.fullmatch(r"webhook-autoremedy-[0-9a-f]{32}", generated["trace_tag"])
    assert headers["X-Request-ID"] == "req-1"
    stored = {k.lower() for k in tagged["headers"]}
    assert not stored & {"st2-api-key", "st2-trace-tag", "x-auth-token", "cookie"}


def test_listing_and_showing_hooks(double):
    status, hooks, _ = call(double, "GET", "/api/v1/webhooks", headers={"St2-Api-Key": API_KEY})
    assert status == 200 and [h["parameters"]["url"] for h in hooks] == ["autoremedy", "ops/alerts"]
    assert call(double, "GET", "/api/v1/webhooks/nope", headers={"St2-Api-Key": API_KEY})[0] == 404


def test_unknown_path_is_404(double):
    assert call(double, "POST", "/api/v1/executions", b"{}", JSON)[0] == 404


def test_error_mode_fails_the_next_n_then_serves(double):
    double.set_mode("error", fail_status=503, fail_count=2)
    codes = [call(double, "POST", "/api/v1/webhooks/autoremedy", b"{}", JSON)[0] for _ in range(3)]
    assert codes == [503, 503, 202]


def test_runs_as_a_script_printing_its_port_and_recording(tmp_path):
    record = tmp_path / "record.jsonl"
    proc = subprocess.Popen([sys.executable, DOUBLE_PATH, "--port", "0", "--api-key", "K",
                             "--hook", "autoremedy", "--record", str(record), "--down-for", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        with pytest.raises(ConnectionRefusedError):
            http.client.HTTPConnection("127.0.0.1", port, timeout=2).connect()
        deadline = time.monotonic() + 10
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("POST", "/api/v1/webhooks/autoremedy", body=b'{"n": 1}',
                             headers={"Content-Type": "application/json", "St2-Api-Key": "K",
                                      "St2-Trace-Tag": "script-1"})
                assert conn.getresponse().status == 202
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "the double never came up"
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0
    [line] = record.read_text().splitlines()
    entry = json.loads(line)
    assert entry["trace_tag"] == "script-1" and entry["status"] == 202 and entry["body"] == {"n": 1}
    assert os.path.getsize(record) > 0
