"""The management API client over HTTPS, through the one TLS context
(autoremedy/clients/tls.py), against a loopback double serving a certificate
openssl made (tests/tlscerts.py): ``rabbitmq.verify`` as a CA bundle, false, and
an unknown CA refused with a line that says what to set."""
import pytest

from autoremedy.clients import rabbitmq

import rmq_helpers as rh
import tlscerts

OVERVIEW = {"node": "rabbit@tls", "object_totals": {"queues": 3}}


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return tlscerts.make(tmp_path_factory.mktemp("rmq-tls"))


@pytest.fixture
def https(certs):
    server = rh.Double(tls=(certs["cert"], certs["key"]))
    server.set("/api/overview", OVERVIEW)
    yield server
    server.close()


def api(url, verify):
    return rabbitmq.Api(url, "guest", "guest", verify=verify, timeout=3.0)


def test_the_url_is_https(https):
    assert https.url.startswith("https://127.0.0.1:")


def test_a_ca_bundle_is_trusted(https, certs):
    client = api(https.url, certs["ca"])
    assert client.get("overview") == OVERVIEW
    assert client.get("overview") == OVERVIEW and len(https.requests) == 2   # one pool, kept


def test_a_ca_bundle_is_trusted_alone_not_beside_the_system_cas(https, certs):
    client = api(https.url, certs["ca"])
    client.get("overview")
    context = client._pool.connection_pool_kw["ssl_context"]
    assert [ca["subject"] for ca in context.get_ca_certs()] == [((("commonName", "test CA"),),)]


@pytest.mark.parametrize("verify", ["other_ca", True])
def test_an_unknown_ca_is_refused_with_a_clear_line(https, certs, verify):
    client = api(https.url, certs[verify] if verify == "other_ca" else verify)
    with pytest.raises(rabbitmq.ApiUnavailable) as err:
        client.get("overview")
    text = str(err.value)
    assert text.startswith(f"management API {https.url} unreachable: TLS verification failed: ")
    assert "certificate" in text and text.endswith(
        "set rabbitmq.verify to the CA bundle that signed the management API's certificate")
    assert "\n" not in text and https.requests == []        # refused before any request


def test_verify_false_speaks_tls_without_checking_the_certificate(https):
    assert api(https.url, False).get("overview") == OVERVIEW


def test_verify_false_still_needs_tls(certs):
    plain = rh.Double()                       # a plain HTTP server behind an https:// URL
    plain.set("/api/overview", OVERVIEW)
    try:
        with pytest.raises(rabbitmq.ApiUnavailable, match="unreachable: TLS error: "):
            api(plain.url.replace("http://", "https://"), False).get("overview")
    finally:
        plain.close()


def test_a_missing_bundle_is_a_configuration_error_not_an_unreachable_node(https, tmp_path):
    missing = str(tmp_path / "absent.pem")
    with pytest.raises(rabbitmq.ApiError) as err:
        api(https.url, missing).get("overview")
    assert not isinstance(err.value, rabbitmq.ApiUnavailable)
    assert str(err.value) == f"rabbitmq.verify: CA bundle {missing} does not exist"


def test_settings_hand_verify_to_the_client(https, certs, make_config):
    from autoremedy.config import Config
    path = make_config({"rabbitmq": {"api_url": https.url, "verify": certs["ca"]}})
    assert rabbitmq.settings(Config.load(path, environ={}), environ={}).api().get("overview") == OVERVIEW
