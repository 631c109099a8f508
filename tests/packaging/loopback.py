"""Loopback doubles for the packaging tests.

SensuAgentAPI follows the Sensu Go agent's events API (https://docs.sensu.io/sensu-go/latest/observability-pipeline/observe-schedule/agent/#events-api):
``POST /events`` with a JSON event (the check part; the agent adds its entity)
answers 202 and queues it; a body that is not JSON, has no ``check`` object, or
a check name outside ``[A-Za-z0-9_.-]`` answers 400; ``GET /healthz`` answers
200. ``fail_names`` makes the double answer 500 for those checks, the way an
agent that cannot queue does.

Receiver is a plain HTTP sink (chat/escalation webhooks of the StackStorm pack).
st2_double() starts the handlers' StackStorm double (tests/doubles/st2.py).
"""
import json
import re
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



def st2_double(api_key):
    """The handlers' StackStorm double (tests/doubles/st2.py: the documented
    webhook contract, error codes included), started in-process for a ``with``
    block. ``.url``; ``.accepted()`` lists the requests answered 202 as dicts
    with ``hook``, ``trace_tag`` and ``body``."""
    import importlib.util
    import os
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "doubles", "st2.py")
    spec = importlib.util.spec_from_file_location("autoremedy_tests_st2_double", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return _Started(module.St2Double(api_key=api_key, hooks=["autoremedy"]))


class _Started:
    def __init__(self, double):
        self.double = double

    def __enter__(self):
        return self.double.start()

    def __exit__(self, *exc):
        self.double.stop()
