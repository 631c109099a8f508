"""Loopback doubles for the packaging tests.

SensuAgentAPI follows the Sensu Go agent's events API (reference/sensu.md §4):
``POST /events`` with a JSON event (the check part; the agent adds its entity)
answers 202 and queues it; a body that is not JSON, has no ``check`` object, or
a check name outside ``[A-Za-z0-9_.-]`` answers 400; ``GET /healthz`` answers
200. ``fail_names`` makes the double answer 500 for those checks, the way an
agent that cannot queue does.

Receiver is a plain HTTP sink (chat/escalation webhooks of the StackStorm pack).
"""
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Base:
    def __init__(self):
        self.requests = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"   # keep-alive, like the real agent

            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.on_get(self)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with outer.lock:
                    outer.requests.append((self.path, dict(self.headers), body))
                outer.on_post(self, body)

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def reply(self, handler, code, payload):
        data = json.dumps(payload).encode() if payload is not None else b""
        handler.send_response(code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def on_get(self, handler):
        self.reply(handler, 404, {"message": "not found"})

    def on_post(self, handler, body):
        self.reply(handler, 200, {})

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class SensuAgentAPI(_Base):
    def __init__(self, fail_names=()):
        super().__init__()
        self.fail_names = set(fail_names)
        self.events = []

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/events"

    def on_get(self, handler):
        if handler.path == "/healthz":
            self.reply(handler, 200, {"ok": True})
        else:
            self.reply(handler, 404, {"message": "not found"})

    def on_post(self, handler, body):
        if handler.path != "/events":
            return self.reply(handler, 404, {"message": "not found"})
        try:
            event = json.loads(body)
        except ValueError:
            return self.reply(handler, 400, {"message": "request body is not valid JSON"})
        check = event.get("check") if isinstance(event, dict) else None
        name = ((check or {}).get("metadata") or {}).get("name") if isinstance(check, dict) else None
        if not isinstance(name, str) or not _NAME.match(name):
            return self.reply(handler, 400, {"message": "check name must match [A-Za-z0-9_.-]+"})
        if name in self.fail_names:
            return self.reply(handler, 500, {"message": "could not queue event"})
        with self.lock:
            self.events.append(event)
        self.reply(handler, 202, None)


class Receiver(_Base):
    """Accepts any POST with 200 and keeps the JSON bodies."""

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/hook"

    def bodies(self):
        return [json.loads(body) for _, _, body in self.requests]


class St2Webhooks(_Base):
    """StackStorm's webhook endpoint as reference/stackstorm.md §1-5 documents it:
    ``POST /api/v1/webhooks/<hook>`` (also ``/v1/webhooks/<hook>``) with the API
    key in ``St2-Api-Key``; 401 without a valid credential, 404 for a hook no rule
    registered, 400 for an unsupported content type or a body that is not JSON,
    202 with the request body echoed. Accepted requests are kept in ``received``
    as (hook, headers, body)."""

    def __init__(self, api_key, hooks=("autoremedy",)):
        super().__init__()
        self.api_key = api_key
        self.hooks = set(hooks)
        self.received = []

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def on_post(self, handler, body):
        path = handler.path.split("?", 1)[0]
        for prefix in ("/api/v1/webhooks/", "/v1/webhooks/", "/webhooks/"):
            if path.startswith(prefix):
                hook = path[len(prefix):].strip("/")
                break
        else:
            return self.reply(handler, 404, {"faultstring": "Not Found"})
        if handler.headers.get("St2-Api-Key") != self.api_key:
            return self.reply(handler, 401, {"faultstring": "Unauthorized - ApiKey with key_hash=... not found."})
        kind = (handler.headers.get("Content-Type") or "").split(";")[0].strip()
        if kind != "application/json":
            return self.reply(handler, 400, {"faultstring": f"Failed to parse request body: Unsupported Content-Type: {kind}"})
        if hook not in self.hooks:
            return self.reply(handler, 404, {"faultstring": f"Webhook {hook} not registered with st2"})
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return self.reply(handler, 400, {"faultstring": "Failed to parse request body"})
        with self.lock:
            self.received.append((hook, dict(handler.headers), data))
        self.reply(handler, 202, data)

    def accepted(self):
        """[{hook, trace_tag, body}] of the requests answered 202."""
        with self.lock:
            return [{"hook": h, "trace_tag": headers.get("St2-Trace-Tag"), "body": b}
                    for h, headers, b in self.received]


class St2Process:
    """The handlers' StackStorm double (tests/doubles/st2.py), run the way its
    docstring says: ``--port 0`` prints the port, ``--record FILE`` keeps one JSON
    line per request. Same interface as St2Webhooks (``url``, ``accepted()``)."""

    def __init__(self, script, api_key, record, hooks=("autoremedy",)):
        self.argv = [sys.executable, script, "--port", "0", "--api-key", api_key, "--record", str(record)]
        for hook in hooks:
            self.argv += ["--hook", hook]
        self.record = record

    def __enter__(self):
        import subprocess
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.port = int(self.proc.stdout.readline().strip())
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(10)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def accepted(self):
        out = []
        try:
            with open(self.record) as handle:
                for line in handle:
                    entry = json.loads(line)
                    if entry.get("status") == 202:
                        out.append({"hook": entry.get("hook"), "trace_tag": entry.get("trace_tag"),
                                    "body": entry.get("body")})
        except FileNotFoundError:
            pass
        return out


def st2_double(api_key, record, root):
    """The StackStorm double for end-to-end tests: the handlers' own
    (tests/doubles/st2.py) where it has landed, else St2Webhooks (same contract)."""
    import os
    script = os.path.join(root, "tests", "doubles", "st2.py")
    if os.path.exists(script):
        return St2Process(script, api_key, record)
    return St2Webhooks(api_key)
