"""The StackStorm webhook client (https://docs.stackstorm.com/webhooks.html; the
routes, codes and headers are those of StackStorm/st2's
st2api/st2api/controllers/v1/webhooks.py and st2common/st2common/router.py).

``POST <url>/api/v1/webhooks/<name>`` (or ``<url>/webhooks/<name>`` when the URL
already ends in ``/v1``, i.e. straight to st2api on :9101) with exactly one
credential, ``St2-Api-Key``, and ``St2-Trace-Tag: <event id>``. The body is the
normalised event, the raw one and our marks (``body()``); for the generic ``st2``
hook it is wrapped as ``{"trigger": ..., "payload": ...}``.

Verdicts (``Delivery.outcome``):

- ``delivered``   2xx (st2 documents 202 and echoes the body);
- ``config``      400/401/403/404 and other 4xx, a TLS verification failure, a bad
                  URL: a human must fix the configuration. Loud, never "sent";
- ``unreachable`` connection refused/reset, DNS failure, connect or read timeout,
                  5xx, 408/429. A timeout means "delivery unknown": st2 may hang
                  ~100 s retrying its own broker (messaging.connection_retries=10 x
                  connection_retry_wait=10 s, st2common/st2common/config.py), so
                  the event stays spooled.

Why the standard library (http.client) rather than requests: a handler is one
process per event and its start-up is paid on every event:
requests adds ~100 ms of imports to each event for features a single POST does not
use. One HTTPConnection is kept alive for a whole replay. Proxy variables from the
monitor's environment are ignored on purpose: StackStorm is an internal service
and an Internet proxy must not carry (or stall) remediation events.

The API key is never put on argv, in a URL, in a log line or in an error message.
"""
import json
import os
import time
import uuid

from autoremedy import __version__, redact

DELIVERED, CONFIG, UNREACHABLE = "delivered", "config", "unreachable"
MAX_RESPONSE = 1 << 20        # st2 echoes our body; never read an unbounded answer
_CONFIG_CODES = range(400, 500)
_TRANSIENT_4XX = (408, 429)


class Delivery:
    """What one POST achieved."""

    __slots__ = ("outcome", "code", "reason", "request_id", "elapsed")

    def __init__(self, outcome, code=None, reason="", request_id=None, elapsed=0.0):
        self.outcome, self.code, self.reason = outcome, code, reason
        self.request_id, self.elapsed = request_id, elapsed

    @property
    def ok(self):
        return self.outcome == DELIVERED

    def line(self):
        """'HTTP 202, request 9f..., 12 ms' (+ ': reason')."""
        code = f"HTTP {self.code}" if self.code else "no answer"
        rid = f", request {self.request_id}" if self.request_id else ""
        text = f"{code}{rid}, {self.elapsed * 1000:.0f} ms"
        return f"{text}: {self.reason}" if self.reason else text

    def __repr__(self):
        return f"Delivery({self.outcome}: {self.line()})"


class SettingsError(ValueError):
    """The stackstorm section cannot make a client (bad URL, bad key, bad name)."""


def endpoint(url, webhook):
    """(scheme, host, port, path) of the webhook URL; SettingsError when unusable."""
    from urllib.parse import quote, urlsplit
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"stackstorm.url {redact.text(url)!r} must be "
                            "http(s)://host[:port][/path]")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise SettingsError("stackstorm.url must not carry credentials, a query or a fragment "
                            "(the API key goes in stackstorm.api_key_file)")
    hook = webhook.strip("/")       # st2 strips them when the rule registers (webhooks.py)
    if not hook or ".." in hook.split("/") or any(c in hook for c in " ?#%\\\r\n\t"):
        raise SettingsError(f"stackstorm.webhook {webhook!r} is not a webhook name")
    base = parts.path.rstrip("/")
    prefix = base + ("/webhooks/" if base.endswith("/v1") else "/api/v1/webhooks/")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise SettingsError(f"stackstorm.url {redact.text(url)!r}: {exc}") from None
    return parts.scheme, parts.hostname, port, prefix + quote(hook, safe="/")


def body(event_dict, raw, marks):
    """The JSON document StackStorm's rules see as ``trigger.body`` (docs/handlers.md)."""
    return {"event": event_dict, "raw": raw, "autoremedy": marks}


class Client:
    """One StackStorm endpoint, one kept-alive connection."""

    def __init__(self, url, webhook="autoremedy", api_key=None, verify=True,
                 connect_timeout=2.0, read_timeout=5.0, trigger="autoremedy.event"):
        self.scheme, self.host, self.port, self.path = endpoint(url, webhook)
        self.url = f"{self.scheme}://{self.host}:{self.port}{self.path}"
        self.generic = webhook.strip("/") == "st2"
        self.trigger = trigger
        if api_key is not None and (not api_key or any(c in api_key for c in "\r\n\0")):
            raise SettingsError("the StackStorm API key is empty or holds a line break")
        if api_key is not None:
            try:
                api_key.encode("latin-1")        # what http.client sends a header as
            except UnicodeEncodeError:
                raise SettingsError("the StackStorm API key holds characters an HTTP header "
                                    "cannot carry (not latin-1)") from None
        self.api_key = api_key
        self.verify = verify
        self.connect_timeout = float(connect_timeout)
        self.read_timeout = float(read_timeout)
        self._conn = None
        self._phase = "connect"

    @classmethod
    def from_config(cls, config):
        """A Client, or None when StackStorm is not configured (= unreachable)."""
        st2 = config.get("stackstorm") or {}
        if not st2.get("url"):
            return None
        return cls(st2["url"], st2.get("webhook", "autoremedy"), config.st2_api_key(),
                   st2.get("verify", True), st2.get("connect_timeout", 2.0),
                   st2.get("read_timeout", 5.0), st2.get("trigger", "autoremedy.event"))

    # -- connection ------------------------------------------------------------------
    def _connect(self):
        import http.client
        if self.scheme == "https":
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.connect_timeout,
                                               context=self._tls_context())
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.connect_timeout)
        conn.connect()                              # connect (and TLS handshake) timeout
        conn.sock.settimeout(self.read_timeout)     # then each read may take this long
        _tcp_options(conn.sock)
        return conn

    def _tls_context(self):
        from autoremedy.clients.tls import client_context
        if isinstance(self.verify, str) and not os.path.isfile(self.verify):
            raise SettingsError(f"stackstorm.verify: CA bundle {self.verify} does not exist")
        return client_context(self.verify)

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- delivery --------------------------------------------------------------------
    def post(self, document, trace_tag):
        """POST one document (a dict); never raises for network or HTTP trouble."""
        payload = {"trigger": self.trigger, "payload": document} if self.generic else document
        data = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "St2-Trace-Tag": trace_tag, "X-Request-ID": uuid.uuid4().hex,
                   "User-Agent": f"autoremedy/{__version__}"}
        if self.api_key:
            headers["St2-Api-Key"] = self.api_key
        started = time.monotonic()
        reused = self._conn is not None
        import http.client
        failures = (OSError, http.client.HTTPException)
        try:
            return self._exchange(data, headers, started)
        except failures as exc:
            self.close()
            stale = isinstance(exc, (http.client.RemoteDisconnected, ConnectionResetError,
                                     BrokenPipeError))
            if reused and stale:
                # A kept-alive connection the server had closed (nginx's idle
                # timeout): usually the request never reached StackStorm, so retry
                # once on a fresh connection. Had it arrived, StackStorm gets it
                # twice with the same trace tag: at least once, never lost.
                try:
                    return self._exchange(data, headers, started)
                except failures as again:
                    self.close()
                    return self._failed(again, started)
            return self._failed(exc, started)
        except SettingsError as exc:
            self.close()
            return Delivery(CONFIG, None, str(exc), elapsed=time.monotonic() - started)

    def _exchange(self, data, headers, started):
        if self._conn is None:
            self._phase = "connect"
            self._conn = self._connect()
        self._phase = "read"
        self._conn.request("POST", self.path, body=data, headers=headers)
        _quickack(self._conn.sock)
        response = self._conn.getresponse()
        length = response.getheader("Content-Length")
        if length and length.isdigit() and int(length) > MAX_RESPONSE:
            text = b""
            self.close()
        else:
            text = response.read(MAX_RESPONSE + 1)
            if len(text) > MAX_RESPONSE or response.will_close:
                self.close()
        return self._verdict(response.status, text, response.getheader("X-Request-ID"),
                             time.monotonic() - started)

    def _verdict(self, code, text, request_id, elapsed):
        if 200 <= code < 300:
            return Delivery(DELIVERED, code, "", request_id, elapsed)
        fault = _faultstring(text)
        if code in _CONFIG_CODES and code not in _TRANSIENT_4XX:
            hint = {401: "check the API key (stackstorm.api_key_file / AUTOREMEDY_ST2_API_KEY)",
                    403: "RBAC denies webhook_send on this hook for the key's user",
                    404: f"no rule registers the webhook {self.path.rsplit('/webhooks/', 1)[-1]!r}"
                         " (install the autoremedy pack, or fix stackstorm.webhook)",
                    400: "StackStorm refused the body (unknown trigger type or bad payload)"
                    }.get(code, "StackStorm refused the request")
            return Delivery(CONFIG, code, f"{fault or 'refused'}; {hint}", request_id, elapsed)
        return Delivery(UNREACHABLE, code, fault or "server error", request_id, elapsed)

    def _failed(self, exc, started):
        import http.client
        import socket
        import ssl
        elapsed = time.monotonic() - started
        if isinstance(exc, ssl.SSLCertVerificationError):
            return Delivery(CONFIG, None, f"TLS verification failed: {exc.verify_message}; "
                            "set stackstorm.verify to the CA bundle that signed StackStorm's "
                            "certificate", elapsed=elapsed)
        if isinstance(exc, ssl.SSLError):
            return Delivery(CONFIG, None, f"TLS error: {exc.reason or exc} (is the URL's scheme "
                            "right?)", elapsed=elapsed)
        if isinstance(exc, (TimeoutError, socket.timeout)):
            phase = self._phase
            limit = self.connect_timeout if phase == "connect" else self.read_timeout
            return Delivery(UNREACHABLE, None, f"{phase} timeout after {limit:g}s "
                            "(delivery unknown: kept in the spool)", elapsed=elapsed)
        if isinstance(exc, socket.gaierror):
            return Delivery(UNREACHABLE, None, f"cannot resolve {self.host}: {exc.strerror}",
                            elapsed=elapsed)
        if isinstance(exc, http.client.HTTPException) and not isinstance(exc, OSError):
            return Delivery(UNREACHABLE, None, f"bad HTTP answer: {type(exc).__name__}",
                            elapsed=elapsed)
        if isinstance(exc, ConnectionRefusedError):
            return Delivery(UNREACHABLE, None, f"connection refused by {self.host}:{self.port}",
                            elapsed=elapsed)
        text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return Delivery(UNREACHABLE, None, f"{type(exc).__name__}: {text}", elapsed=elapsed)


# --- socket options: a server that leaves Nagle on -------------------------------------
# A server that writes an answer's headers and body in two writes without
# TCP_NODELAY (Nagle on) holds the body back until the client ACKs the headers;
# the client's kernel delays that ACK (up to 40 ms on Linux) waiting for data to
# piggyback it on, and there is none: ~40 ms per event, 22 events/s on one
# connection (measured: docs/fleet.md). The client cannot turn the server's
# Nagle off, but it can ACK at once: TCP_QUICKACK, which Linux clears again
# after a while, so it is set anew before each answer is read. TCP_NODELAY on
# our side keeps our own small writes (a request after a kept-alive pause)
# from the mirror-image wait.

def _tcp_options(sock):
    import socket
    raw = getattr(sock, "_sock", sock)      # an SSLSocket is a socket too
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass
    _quickack(sock)


def _quickack(sock):
    import socket
    option = getattr(socket, "TCP_QUICKACK", None)      # Linux only
    if option is None or sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, option, 1)
    except OSError:
        pass


def _faultstring(text):
    """st2 error bodies are {"faultstring": "..."} (st2common/middleware/error_handling.py)."""
    try:
        value = json.loads(text)
    except (ValueError, TypeError):
        snippet = text[:200].decode("utf-8", "replace").strip() if text else ""
        return " ".join(snippet.split())
    if isinstance(value, dict) and isinstance(value.get("faultstring"), str):
        return " ".join(value["faultstring"].split())[:300]
    return ""


def document(entry_data, event_dict, raw, hostname, replayed=False):
    """The body StackStorm's rules see as ``trigger.body`` (docs/handlers.md)."""
    local = entry_data.get("local") or []
    escalation = entry_data.get("escalation")
    marks = {"version": __version__, "handler_host": hostname,
             "spooled_at": entry_data.get("spooled_at"),
             "attempt": int(entry_data.get("attempts", 0)) + 1, "replayed": replayed,
             "remediated_locally": any(item.get("outcome") == "remediated" for item in local),
             "local": local, "escalated": bool(escalation), "escalation": escalation}
    return body(event_dict, raw, marks)
