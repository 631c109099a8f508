"""autoremedy.clients.tls.client_context: the one TLS client context (stackstorm, the
RabbitMQ management API and AMQP fallback, MySQL), each ``verify`` form against a real handshake
with a local server whose certificate openssl made."""
import os
import socket
import ssl
import threading

import pytest

from autoremedy.clients.tls import client_context

import tlscerts


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A CA, a server certificate it signed for 127.0.0.1 (CN 'db.internal'), and
    a CA directory hashed the way openssl's -CApath wants it (tests/tlscerts.py)."""
    return tlscerts.make(tmp_path_factory.mktemp("tls"))


def serve(certs, tls=True):
    """A one-connection server on 127.0.0.1: TLS with the CA-signed certificate,
    or plain TCP that answers with a line of text."""
    listener = socket.create_server(("127.0.0.1", 0))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(certs["cert"], certs["key"])

    def accept():
        conn, _ = listener.accept()
        with conn:
            try:
                if tls:
                    with server_ctx.wrap_socket(conn, server_side=True) as wrapped:
                        wrapped.sendall(b"hello\n")
                else:
                    conn.sendall(b"plain text, no TLS here\n")
                    conn.recv(1024)
            except (ssl.SSLError, OSError):
                pass                      # the client refused us: what some tests want
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    return listener, thread


def handshake(certs, context, host="127.0.0.1", tls=True):
    listener, thread = serve(certs, tls)
    try:
        with socket.create_connection(listener.getsockname(), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname=host) as wrapped:
                return wrapped.recv(16)
    finally:
        listener.close()
        thread.join(5)


def test_true_checks_against_the_system_cas_and_the_name(certs):
    context = client_context(True)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(certs, context)             # our CA is not a system CA


def test_a_bundle_is_trusted_and_the_name_still_checked(certs):
    assert handshake(certs, client_context(certs["ca"])) == b"hello\n"
    with pytest.raises(ssl.SSLCertVerificationError, match="match|mismatch"):
        handshake(certs, client_context(certs["ca"]), host="other.example")


def test_a_bundle_is_trusted_alone_not_added_to_the_system_cas(certs):
    context = client_context(certs["ca"])
    assert [ca["subject"] for ca in context.get_ca_certs()] == [((("commonName", "test CA"),),)]


def test_a_hashed_ca_directory_is_trusted(certs):
    assert handshake(certs, client_context(True, capath=certs["capath"])) == b"hello\n"


def test_chain_without_the_name_is_mysqls_verify_ca(certs):
    context = client_context(certs["ca"], check_hostname=False)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert handshake(certs, context, host="other.example") == b"hello\n"


def test_false_does_not_verify_but_never_falls_back_to_plain_text(certs):
    context = client_context(False)
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname
    assert handshake(certs, context, host="other.example") == b"hello\n"
    with pytest.raises(ssl.SSLError):
        handshake(certs, context, tls=False)


def test_a_missing_bundle_is_an_error_not_the_system_cas(tmp_path):
    with pytest.raises(FileNotFoundError):
        client_context(os.path.join(tmp_path, "absent.pem"))
