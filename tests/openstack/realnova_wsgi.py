"""Serve a WSGI application of the Nova venv on loopback, and Nova's stand-in auth filter.

    python realnova_wsgi.py MODULE:ATTRIBUTE fd:N     # serve on an inherited listening socket
    python realnova_wsgi.py MODULE:ATTRIBUTE PORT     # bind the port itself

Nova 34 and Placement 16 ship no ``nova-api``/``placement-api`` commands, only
WSGI modules (``nova.wsgi.osapi_compute:application``,
``placement.wsgi.api:application``, ``keystone.wsgi.api:application``); the
stdlib's threading WSGI server is enough for a test cloud. Nova parses
``sys.argv`` when its app is imported, so argv is cleared first.

``fd:N``: the harness binds and listens on the port itself and hands the socket
down (``pass_fds``), so no other process can take the port between the choice
and the serving (a free port picked, then bound seconds later by a service
whose start is slow, was a race with other test sessions on the machine).

``FakeAuth`` is the paste filter put in the place of keystonemiddleware's
``authtoken`` when no real Keystone runs (Nova 34 has no ``noauth2``): it
accepts only the harness's token and sets the headers ``authtoken`` would set
for a project-scoped admin.
"""
import importlib
import os
import socket
import sys
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer


class FakeAuth:
    def __init__(self, app, token):
        self.app, self.token = app, token

    def __call__(self, environ, start_response):
        if environ.get("HTTP_X_AUTH_TOKEN") != self.token:
            start_response("401 Unauthorized", [("Content-Type", "application/json"),
                                                ("WWW-Authenticate", "Keystone uri='stub'")])
            return [b'{"error": {"code": 401, "message": "The request you have made requires authentication."}}']
        for key, value in {"X_IDENTITY_STATUS": "Confirmed", "X_USER_ID": "admin", "X_USER_NAME": "admin",
                           "X_USER_DOMAIN_ID": "default", "X_PROJECT_ID": "admin",
                           "X_PROJECT_NAME": "admin", "X_PROJECT_DOMAIN_ID": "default",
                           "X_ROLES": "admin,member,reader", "X_TENANT_ID": "admin"}.items():
            environ["HTTP_" + key] = value
        return self.app(environ, start_response)


def fake_auth_factory(global_conf, **local_conf):
    token = local_conf.get("token") or os.environ["REALNOVA_TOKEN"]
    return lambda app: FakeAuth(app, token)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 64


class _Quiet(WSGIRequestHandler):
    def log_message(self, fmt, *args):   # Nova's request_log middleware logs every call
        pass


def listening(where, server_class, handler_class):
    """A ``server_class`` serving ``where``: ``fd:N`` (an inherited listening socket) or a port."""
    if not where.startswith("fd:"):
        return server_class(("127.0.0.1", int(where)), handler_class)
    sock = socket.socket(fileno=int(where[3:]))
    server = server_class(sock.getsockname(), handler_class, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.server_address = sock.getsockname()
    if isinstance(server, WSGIServer):        # what WSGIServer.server_bind would have set
        server.server_name, server.server_port = "localhost", server.server_address[1]
        server.setup_environ()
    return server


def main():
    target, where = sys.argv[1], sys.argv[2]
    sys.argv = sys.argv[:1]
    module, _, attr = target.partition(":")
    app = getattr(importlib.import_module(module), attr)
    server = listening(where, _Server, _Quiet)
    server.set_app(app)
    server.serve_forever()


if __name__ == "__main__":
    main()
