"""A TLS client context from a ``verify`` setting: one way for every client.

``verify`` says how the server's certificate is checked, the same word in every
section that has it (``stackstorm.verify``, ``rabbitmq.verify``, MySQL's
``ssl-ca``/``ssl-capath`` and ``ssl-mode``):

* ``True``: against the system's CAs, the host name included;
* a path: against the CAs in that bundle only (not the system's as well: a
  private CA is pinned, not added to hundreds of public ones);
* ``False``: not checked — encrypted, not authenticated. The context still
  speaks TLS only: a client handed it never falls back to plain text (PyMySQL
  refuses a server without TLS when given a context, which is why its
  ``required`` mode passes one rather than no ``ssl`` argument at all).

Callers keep what is theirs: whether a missing bundle is their configuration
error (stackstorm, the RabbitMQ management API), client certificates and ciphers (mysql).
"""
import ssl


def client_context(verify=True, capath=None, check_hostname=True):
    """An ``ssl.SSLContext`` for a client. ``capath``: a hashed CA directory
    (openssl's -CApath) trusted with, or instead of, the system's CAs the way
    ``ssl.create_default_context`` combines them. ``check_hostname=False``
    checks the chain but not the name (MySQL's ``verify-ca``). A bundle that
    does not exist raises FileNotFoundError."""
    if verify is False:
        # No verification: the system's CAs would not be used, so not loaded.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    cafile = verify if isinstance(verify, str) else None
    context = ssl.create_default_context(cafile=cafile, capath=capath)
    context.check_hostname = check_hostname
    return context
