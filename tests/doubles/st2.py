#!/usr/bin/env python3
"""A StackStorm webhook double on loopback, following StackStorm's webhook API
(https://docs.stackstorm.com/webhooks.html, st2api's webhooks controller).

StackStorm cannot run here; this stands in for st2api behind nginx, with the
documented contract and error codes (st2api/controllers/v1/webhooks.py, st2auth):

- ``POST /api/v1/webhooks/<hook>`` (also ``/v1/webhooks/<hook>`` and
  ``/webhooks/<hook>``, the st2api routes); hook names may contain ``/`` and are
  compared with leading/trailing ``/`` stripped. ``GET /api/v1/webhooks[/<hook>]``.
- Auth: the first credential present among header ``X-Auth-Token``, header
  ``St2-Api-Key``, query ``x-auth-token``, query ``st2-api-key``, cookie
  ``auth-token`` is the one checked; none or a bad one is **401**. RBAC denial of
  ``webhook_send`` is **403**.
- Body by Content-Type: ``application/json`` (charset allowed; empty = ``{}``),
  form-urlencoded / multipart (every value a list), missing = treated as JSON
  (the eventlet coercion), anything else **400** "Unsupported Content-Type";
  invalid JSON **400** "Failed to parse request body".
- Generic hook ``st2``: body must be an object with a known ``trigger`` (else 400);
  custom hooks must be registered (else **404** "Webhook <hook> not registered
  with st2").
- **202** echoes the parsed body, nothing more. Every error body is
  ``{"faultstring": "..."}``; anything else is 500 "Internal Server Error".
- ``St2-Trace-Tag`` becomes the trace tag (else ``webhook-<hook>-<uuid4hex>``); it
  and the credentials are removed from the stored headers. ``X-Request-ID`` is
  echoed, or generated.

Failure modes (switchable at run time with ``set_mode``):

    up         normal service
    down       the port is bound but not listening: connection refused
    blackhole  the port accepts connections (kernel backlog) and never answers:
               the client's *read* timeout fires
    drop       the listen backlog is full, SYNs are dropped: the client's
               *connect* timeout fires (a firewall DROP, without iptables)
    slow       answers after ``delay`` seconds
    error      answers ``fail_status`` (default 500) to the next ``fail_count``
               requests (all when None), then serves normally

Import it (``St2Double(api_key=..., hooks=[...]).start()``; ``.url``,
``.requests``, ``.accepted()``, ``.set_mode()``, ``.stop()``) or run it:

    python tests/doubles/st2.py --port 0 --api-key K --hook autoremedy --record FILE

which prints the port on the first line of stdout and serves until SIGTERM or
SIGINT. ``--down-for S`` starts down and comes up after S seconds; ``--mode down``
keeps the port reserved (connection refused) until SIGUSR1 brings it up (SIGUSR2
takes it down again), which is how ``scripts/demo.py`` drives it.
"""
import argparse
import json
import socket
import ssl
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

PREFIXES = ("/api/v1/webhooks", "/v1/webhooks", "/webhooks")
STRIPPED_HEADERS = ("st2-api-key", "x-auth-token", "cookie", "st2-trace-tag")
MODES = ("up", "down", "blackhole", "drop", "slow", "error")
REASONS = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
           504: "Gateway Timeout"}


class Fault(Exception):
    def __init__(self, status, faultstring):
        super().__init__(faultstring)
        self.status, self.faultstring = status, faultstring


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, double):
        handler = _Handler if double.nodelay else _NagleHandler
        super().__init__(("127.0.0.1", 0), handler, bind_and_activate=False)
        self.socket.close()             # the double owns the listening socket
        self.double = double

    def handle_error(self, request, client_address):
        pass                            # a client that hung up is not the double's problem

    def finish_request(self, request, client_address):
        # TLS per connection, in the connection's own thread (a slow handshake
        # must not stall the accept loop).
        if self.double.tls is not None:
            try:
                request = self.double.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        self.double._track(request, True)
        try:
            super().finish_request(request, client_address)
        finally:
            self.double._track(request, False)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"       # keep-alive, like nginx in front of st2api
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm
    # and the client's delayed ACK would add ~40 ms to every answer (nginx sets it).
    disable_nagle_algorithm = True
    server_version = "nginx"
    sys_version = ""
    timeout = 60

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.server.double._serve(self, "POST")

    def do_GET(self):
        self.server.double._serve(self, "GET")

    def do_PUT(self):
        self.server.double._serve(self, "PUT")


class _NagleHandler(_Handler):
    """A server that leaves Nagle on (``nodelay=False``): its split writes of
    headers and body meet the client's delayed ACK (docs/fleet.md, replay)."""
    disable_nagle_algorithm = False


class St2Double:
    def __init__(self, api_key=None, hooks=("autoremedy",), triggers=("autoremedy.event",),
                 port=0, host="127.0.0.1", auth=True, tokens=(), rbac_deny=(), record=None,
                 tls=None, mode="up", delay=0.0, fail_status=500, fail_count=None,
                 nodelay=True):
        self.nodelay = nodelay
        self.api_key = api_key
        self.hooks = {h.strip("/") for h in hooks}
        self.triggers = set(triggers)
        self.host = host
        self.auth = auth
        self.tokens = set(tokens)
        self.rbac_deny = {h.strip("/") for h in rbac_deny}
        self.record_path = record
        self.tls = None
        if tls:
            certfile, keyfile = tls
            self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.tls.load_cert_chain(certfile, keyfile)
        self.mode = mode
        self.delay = delay
        self.fail_status = fail_status
        self.fail_count = fail_count
        self.requests = []
        self._lock = threading.Lock()
        self._mode_lock = threading.Lock()
        self._record = open(record, "a", encoding="utf-8") if record else None
        self._server = _Server(self)
        self._thread = None
        self._fillers = []
        self._conns = set()
        self._sock = None
        self.port = port
        self._bind()

    # -- life cycle ---------------------------------------------------------------------
    @property
    def url(self):
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def start(self):
        self._apply(self.mode)
        return self

    def stop(self):
        with self._mode_lock:
            self._stop_serving()
            self._close_listener()
            self._cut_connections()
        if self._record:
            self._record.close()
            self._record = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def set_mode(self, mode, **settings):
        """Switch failure mode (and ``delay``/``fail_status``/``fail_count``) live."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        for key, value in settings.items():
            if key not in ("delay", "fail_status", "fail_count"):
                raise TypeError(f"unknown setting {key}")
            setattr(self, key, value)
        self._apply(mode)

    def _bind(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._sock = sock

    def _apply(self, mode):
        with self._mode_lock:
            serving = mode in ("up", "slow", "error")
            listening_changes = (self.mode in ("down", "blackhole", "drop")
                                 or mode in ("down", "blackhole", "drop")
                                 or self._thread is None)
            self.mode = mode
            if not listening_changes:
                return
            self._stop_serving()
            self._cut_connections()
            self._close_listener()
            self._bind()
            if mode == "drop":
                self._sock.listen(0)
                for _ in range(3):        # fill the backlog: later SYNs are dropped
                    filler = socket.socket()
                    filler.setblocking(False)
                    try:
                        filler.connect((self.host, self.port))
                    except (BlockingIOError, OSError):
                        pass
                    self._fillers.append(filler)
                time.sleep(0.05)
            elif mode != "down":
                self._sock.listen(128)
            if serving:
                self._server.socket = self._sock
                self._server.server_address = self._sock.getsockname()
                self._thread = threading.Thread(target=self._server.serve_forever,
                                                kwargs={"poll_interval": 0.05}, daemon=True)
                self._thread.start()

    def _stop_serving(self):
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None

    def _close_listener(self):
        for filler in self._fillers:
            filler.close()
        self._fillers = []
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _track(self, conn, add):
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def _cut_connections(self):
        """StackStorm going away also breaks the kept-alive connections."""
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- what it received ------------------------------------------------------------
    def accepted(self):
        """The requests answered 202, in arrival order."""
        with self._lock:
            return [r for r in self.requests if r["status"] == 202]

    def trace_tags(self):
        return [r["trace_tag"] for r in self.accepted()]

    def clear(self):
        with self._lock:
            self.requests.clear()

    # -- the contract -------------------------------------------------------------------
    def _serve(self, handler, method):
        started = time.time()
        parts = urlsplit(handler.path)
        query = parse_qs(parts.query)
        length = int(handler.headers.get("Content-Length") or 0)
        data = handler.rfile.read(length) if length > 0 else b""
        request_id = handler.headers.get("X-Request-ID") or uuid.uuid4().hex
        record = {"ts": started, "method": method, "path": parts.path, "hook": None,
                  "trace_tag": None, "request_id": request_id, "body": None}
        try:
            if self.mode == "slow" and self.delay:
                time.sleep(self.delay)
            if self.mode == "error":
                with self._lock:
                    failing = self.fail_count is None or self.fail_count > 0
                    if failing and self.fail_count is not None:
                        self.fail_count -= 1
                if failing:
                    code = self.fail_status
                    raise Fault(code, REASONS.get(code, "Internal Server Error"))
            hook = self._hook(parts.path)
            record["hook"] = hook
            self._authenticate(handler, query)
            if method == "GET":
                status, answer = self._get(hook)
            elif method == "POST":
                if hook is None:
                    raise Fault(404, "The resource could not be found.")
                status, answer = self._post(handler, hook, data, record)
            else:
                raise Fault(405, "The method is not allowed for the requested URL.")
        except Fault as fault:
            status, answer = fault.status, {"faultstring": fault.faultstring}
        except Exception:                       # the double's own bug is a 500, like st2's
            status, answer = 500, {"faultstring": "Internal Server Error"}
        record["status"] = status
        with self._lock:
            self.requests.append(record)
            if self._record:
                self._record.write(json.dumps(record, sort_keys=True, default=str) + "\n")
                self._record.flush()
        payload = json.dumps(answer).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.send_header("X-Request-ID", request_id)
            handler.end_headers()
            handler.wfile.write(payload)
        except OSError:
            handler.close_connection = True     # the client gave up (its read timeout)

    @staticmethod
    def _hook(path):
        for prefix in PREFIXES:
            if path == prefix or path.startswith(prefix + "/"):
                name = unquote(path[len(prefix):]).strip("/")
                return name
        return None

    def _authenticate(self, handler, query):
        if not self.auth:
            return
        cookies = {}
        for part in (handler.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name:
                cookies[name] = value
        sources = [("token", handler.headers.get("X-Auth-Token")),
                   ("key", handler.headers.get("St2-Api-Key")),
                   ("token", (query.get("x-auth-token") or [None])[0]),
                   ("key", (query.get("st2-api-key") or [None])[0]),
                   ("token", cookies.get("auth-token"))]
        for kind, value in sources:
            if value is None:
                continue
            # The first credential present is the only one checked (st2common/router.py).
            if kind == "key" and self.api_key is not None and value == self.api_key:
                return
            if kind == "token" and value in self.tokens:
                return
            if kind == "key":
                import hashlib
                digest = hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()
                raise Fault(401, f"Unauthorized - ApiKey with key_hash={digest} not found.")
            raise Fault(401, "Unauthorized - Token with token " + value[:8] + "... not found.")
        raise Fault(401, "Unauthorized - One of Token or API key required.")

    def _get(self, hook):
        if hook is None:
            raise Fault(404, "The resource could not be found.")
        registered = [{"type": "core.st2.webhook", "parameters": {"url": h}} for h in sorted(self.hooks)]
        if hook == "":
            return 200, registered
        if hook not in self.hooks:
            raise Fault(404, f"Webhook {hook} not registered with st2")
        return 200, {"type": "core.st2.webhook", "parameters": {"url": hook}}

    def _post(self, handler, hook, data, record):
        if hook in self.rbac_deny:
            raise Fault(403, f'User "autoremedy" doesn\'t have required permission '
                             f'"webhook_send" on resource "webhook:{hook}"')
        body = self._parse(handler.headers.get("Content-Type"), data)
        record["body"] = body
        if hook == "st2":
            if not isinstance(body, dict):
                raise Fault(400, "The request body must be a JSON object for the st2 webhook.")
            trigger = body.get("trigger")
            if not trigger:
                raise Fault(400, "Trigger not specified.")
            if trigger not in self.triggers:
                raise Fault(400, f'Trigger type "{trigger}" not found.')
            if not isinstance(body.get("payload", {}), dict):
                raise Fault(400, "Trigger payload validation failed: payload must be an object.")
        elif hook not in self.hooks:
            raise Fault(404, f"Webhook {hook} not registered with st2")
        tag = handler.headers.get("St2-Trace-Tag") or f"webhook-{hook}-{uuid.uuid4().hex}"
        record["trace_tag"] = tag
        record["headers"] = {k: v for k, v in handler.headers.items()
                             if k.lower() not in STRIPPED_HEADERS}
        return 202, body

    @staticmethod
    def _parse(content_type, data):
        kind = (content_type or "").split(";", 1)[0].strip().lower()
        # No Content-Type at all is coerced to JSON (st2's eventlet server); text/plain sent
        # explicitly is not.
        if content_type is None or kind == "application/json":
            if not data.strip():
                return {}
            try:
                return json.loads(data)
            except ValueError:
                raise Fault(400, "Failed to parse request body") from None
        if kind == "application/x-www-form-urlencoded":
            return parse_qs(data.decode("utf-8", "replace"), keep_blank_values=True)
        if kind == "multipart/form-data":
            from email.parser import BytesParser
            message = BytesParser().parsebytes(
                b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + data)
            out = {}
            for part in message.walk():
                name = part.get_param("name", header="content-disposition")
                if name:
                    text = (part.get_payload(decode=True) or b"").decode("utf-8", "replace")
                    out.setdefault(name, []).append(text)
            return out
        raise Fault(400, f'Failed to parse request body: Unsupported Content-Type: "{content_type}"')


def main(argv=None):
    import signal
    p = argparse.ArgumentParser(description="StackStorm webhook double (loopback)")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--api-key")
    p.add_argument("--token", action="append", default=[], help="valid X-Auth-Token (repeatable)")
    p.add_argument("--no-auth", action="store_true", help="[auth] enable = False")
    p.add_argument("--hook", action="append", default=[], help="registered hook (repeatable)")
    p.add_argument("--trigger", action="append", default=[], help="known trigger type for 'st2'")
    p.add_argument("--rbac-deny", action="append", default=[], help="hook the key may not send to")
    p.add_argument("--record", help="append one JSON line per request to FILE")
    p.add_argument("--mode", choices=MODES, default="up")
    p.add_argument("--delay", type=float, default=0.0, help="seconds, for --mode slow")
    p.add_argument("--fail-status", type=int, default=500)
    p.add_argument("--fail-count", type=int, help="with --mode error: fail this many, then serve")
    p.add_argument("--down-for", type=float, default=0.0,
                   help="start down (connection refused), come up after this many seconds")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    args = p.parse_args(argv)
    double = St2Double(api_key=args.api_key, hooks=args.hook or ["autoremedy"],
                       triggers=args.trigger or ["autoremedy.event"], port=args.port,
                       host=args.host, auth=not args.no_auth, tokens=args.token,
                       rbac_deny=args.rbac_deny, record=args.record,
                       tls=(args.tls_cert, args.tls_key) if args.tls_cert else None,
                       mode="down" if args.down_for else args.mode, delay=args.delay,
                       fail_status=args.fail_status, fail_count=args.fail_count)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    signal.signal(signal.SIGINT, lambda *a: done.set())
    # Mode switches run off the signal handler (they join the serving thread).
    up_mode = "up" if args.mode == "down" else args.mode
    switch = lambda mode: threading.Thread(target=double.set_mode, args=(mode,)).start()  # noqa: E731
    signal.signal(signal.SIGUSR1, lambda *a: switch(up_mode))
    signal.signal(signal.SIGUSR2, lambda *a: switch("down"))
    double.start()
    print(double.port, flush=True)
    sys.stderr.write(f"st2 double: {double.url}/api/v1/webhooks/ mode {double.mode}\n")
    if args.down_for:
        if not done.wait(args.down_for):
            double.set_mode(args.mode)
            sys.stderr.write(f"st2 double: up ({args.mode})\n")
    done.wait()
    double.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
