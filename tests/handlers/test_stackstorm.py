"""The webhook client against the double: every documented answer, every way
StackStorm can be unreachable, keep-alive and TLS."""
import os
import shutil
import subprocess
import time

import pytest

from autoremedy.pipeline.stackstorm import CONFIG, DELIVERED, UNREACHABLE, Client, SettingsError, endpoint

from handlerkit import API_KEY, st2_double

DOC = {"event": {"id": "evt-1", "check": "proc"}, "raw": {"x": 1}, "autoremedy": {"replayed": False}}


def client_for(double, **kw):
    settings = {"api_key": API_KEY, "connect_timeout": 1.0, "read_timeout": 1.0}
    settings.update(kw)
    return Client(double.url, **settings)


def test_202_delivers_with_key_trace_tag_and_json(st2):
    delivery = client_for(st2).post(DOC, "evt-1")
    assert delivery.outcome == DELIVERED and delivery.code == 202 and delivery.ok
    assert delivery.request_id and len(delivery.request_id) == 32
    [request] = st2.accepted()
    assert request["path"] == "/api/v1/webhooks/autoremedy"
    assert request["trace_tag"] == "evt-1"
    assert request["body"] == DOC
    assert request["headers"]["Content-Type"] == "application/json"
    assert "St2-Api-Key" not in request["headers"]        # stripped like st2 does
    assert request["headers"]["X-Request-ID"] == delivery.request_id


def test_generic_st2_hook_wraps_the_body_in_a_trigger(st2):
    client = Client(st2.url, webhook="st2", api_key=API_KEY)
    assert client.post(DOC, "evt-2").ok
    assert st2.accepted()[0]["body"] == {"trigger": "autoremedy.event", "payload": DOC}


@pytest.mark.parametrize("kwargs,code,words", [
    ({"api_key": "wrong-key"}, 401, "check the API key"),
    ({"api_key": None}, 401, "One of Token or API key required"),
    ({"webhook": "not-registered"}, 404, "Webhook not-registered not registered with st2"),
    ({"webhook": "st2", "trigger": "no.such_trigger"}, 400, 'Trigger type "no.such_trigger" not found'),
])
def test_4xx_is_a_configuration_error_with_the_faultstring(st2, kwargs, code, words):
    delivery = client_for(st2, **kwargs).post(DOC, "evt-3")
    assert delivery.outcome == CONFIG and delivery.code == code
    assert words in delivery.reason
    assert API_KEY not in delivery.reason and "wrong-key" not in delivery.reason


def test_403_when_rbac_denies_the_hook():
    with st2_double.St2Double(api_key=API_KEY, rbac_deny=["autoremedy"]) as double:
        delivery = client_for(double).post(DOC, "evt-4")
    assert delivery.outcome == CONFIG and delivery.code == 403
    assert "webhook_send" in delivery.reason


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_unreachable(st2, status):
    st2.set_mode("error", fail_status=status, fail_count=None)
    delivery = client_for(st2).post(DOC, "evt-5")
    assert delivery.outcome == UNREACHABLE and delivery.code == status


def test_connection_refused_is_unreachable_at_once(st2):
    st2.set_mode("down")
    delivery = client_for(st2).post(DOC, "evt-6")
    assert delivery.outcome == UNREACHABLE and "connection refused" in delivery.reason
    assert delivery.elapsed < 0.5


def test_slow_server_hits_the_read_timeout(st2):
    st2.set_mode("slow", delay=3.0)
    delivery = client_for(st2, read_timeout=0.5).post(DOC, "evt-7")
    assert delivery.outcome == UNREACHABLE
    assert "read timeout after 0.5s" in delivery.reason and "delivery unknown" in delivery.reason
    assert 0.4 < delivery.elapsed < 1.5


def test_blackholed_port_that_accepts_and_never_answers(st2):
    st2.set_mode("blackhole")
    delivery = client_for(st2, read_timeout=0.6).post(DOC, "evt-8")
    assert delivery.outcome == UNREACHABLE and "read timeout" in delivery.reason
    assert 0.5 < delivery.elapsed < 1.5
    assert st2.requests == []                             # nothing was ever answered


def test_port_that_drops_syns_hits_the_connect_timeout(st2):
    st2.set_mode("drop")
    delivery = client_for(st2, connect_timeout=0.7, read_timeout=5).post(DOC, "evt-9")
    assert delivery.outcome == UNREACHABLE and "connect timeout after 0.7s" in delivery.reason
    assert 0.6 < delivery.elapsed < 1.5


def test_name_that_does_not_resolve_is_unreachable():
    delivery = Client("http://no-such-host.invalid:9101", api_key="k",
                      connect_timeout=2).post(DOC, "evt-10")
    assert delivery.outcome == UNREACHABLE and "cannot resolve no-such-host.invalid" in delivery.reason


def test_keep_alive_reuses_one_connection_and_survives_a_server_side_close(st2):
    client = client_for(st2)
    for n in range(5):
        assert client.post(DOC, f"k-{n}").ok
    first = client._conn.sock.getsockname()
    st2._cut_connections()                      # nginx closing an idle keep-alive connection
    time.sleep(0.1)
    assert client.post(DOC, "k-after").ok       # retried once on a fresh connection
    assert client._conn.sock.getsockname() != first
    assert len(st2.accepted()) == 6
    client.close()


@pytest.mark.parametrize("url,hook,expected", [
    ("https://st2.example.com", "autoremedy", ("https", "st2.example.com", 443, "/api/v1/webhooks/autoremedy")),
    ("https://st2.example.com/", "/autoremedy/", ("https", "st2.example.com", 443, "/api/v1/webhooks/autoremedy")),
    ("http://st2:9101/v1", "autoremedy", ("http", "st2", 9101, "/v1/webhooks/autoremedy")),
    ("https://lb.example.com/st2", "ops/autoremedy", ("https", "lb.example.com", 443, "/st2/api/v1/webhooks/ops/autoremedy")),
])
def test_endpoint_urls(url, hook, expected):
    assert endpoint(url, hook) == expected


@pytest.mark.parametrize("url,hook,words", [
    ("ftp://st2", "autoremedy", "must be http(s)"),
    ("https://user:pw@st2", "autoremedy", "must not carry credentials"),
    ("https://st2?st2-api-key=x", "autoremedy", "must not carry credentials"),
    ("https://st2", "../admin", "is not a webhook name"),
    ("https://st2", "a b", "is not a webhook name"),
    ("https://st2:99999", "autoremedy", "stackstorm.url"),
])
def test_bad_settings_are_refused(url, hook, words):
    with pytest.raises(SettingsError, match=words.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        Client(url, hook)


def test_an_api_key_with_a_line_break_is_refused():
    with pytest.raises(SettingsError, match="line break"):
        Client("https://st2", api_key="abc\r\nX-Evil: 1")


# --- TLS ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 made with openssl (a real tool)."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is required (scripts/setup.d/20-handlers.sh installs it)"
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return str(cert), str(key)


@pytest.mark.integration
def test_tls_is_verified_by_default_and_a_self_signed_server_is_a_config_error(certificate):
    with st2_double.St2Double(api_key=API_KEY, tls=certificate) as double:
        delivery = client_for(double).post(DOC, "tls-1")
    assert double.url.startswith("https://")
    assert delivery.outcome == CONFIG
    assert "TLS verification failed" in delivery.reason and "stackstorm.verify" in delivery.reason


@pytest.mark.integration
def test_tls_with_the_ca_bundle_option_delivers(certificate):
    with st2_double.St2Double(api_key=API_KEY, tls=certificate) as double:
        delivery = client_for(double, verify=certificate[0]).post(DOC, "tls-2")
        assert delivery.ok and double.accepted()[0]["trace_tag"] == "tls-2"


@pytest.mark.integration
def test_tls_verification_can_be_switched_off_explicitly(certificate):
    with st2_double.St2Double(api_key=API_KEY, tls=certificate) as double:
        assert client_for(double, verify=False).post(DOC, "tls-3").ok


def test_a_missing_ca_bundle_is_a_config_error(st2):
    client = Client(st2.url.replace("http://", "https://"), api_key=API_KEY,
                    verify="/nonexistent/ca.pem")
    delivery = client.post(DOC, "tls-4")
    assert delivery.outcome == CONFIG and "does not exist" in delivery.reason


def test_plain_http_server_behind_an_https_url_is_a_config_error(st2):
    delivery = Client(st2.url.replace("http://", "https://"), api_key=API_KEY,
                      verify=False).post(DOC, "tls-5")
    assert delivery.outcome == CONFIG and "TLS error" in delivery.reason


def test_no_proxy_from_the_environment_is_used(st2, monkeypatch):
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    assert client_for(st2).post(DOC, "proxy-1").ok
    assert os.environ["http_proxy"]
