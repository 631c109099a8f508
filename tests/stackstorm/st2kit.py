"""The StackStorm pack under StackStorm's own engine, from the tests' side.

``Engine`` talks to conduct.py running under ``.venv-orquesta`` (orquesta 1.2.0,
scripts/setup.d/50-stackstorm.sh): ``conduct`` a workflow with scripted action
executions, ``enforce`` the pack's rules on a webhook payload, ``transitions``
of a workflow spec. One engine process serves the whole session.

The result helpers build action results in the shapes StackStorm's runners
return:

- ``remote``: remote-shell-cmd (ParallelSSHClient, st2common/runners/parallel_ssh.py):
  a dict keyed by host, each ``{stdout, stderr, return_code, succeeded, failed}``;
- ``local``: local-shell-cmd (local_runner/base.py): the same, not keyed;
- both runners pass ``stdout``/``stderr`` through ``jsonify.json_loads`` (KEYS_TO_TRANSFORM):
  text that parses as JSON arrives parsed;
- ``script``: python-script (python_runner.py): ``{result, stdout, stderr, exit_code}``,
  status failed when ``run`` returned ``(False, …)`` or raised;
- ``ask``: core.ask (the inquirer runner): ``pending`` until answered, then
  succeeded with ``{schema, roles, users, route, ttl, response}``, or ``timeout``.
"""
import json
import os
import subprocess
import threading

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PACK = os.path.join(ROOT, "packaging", "stackstorm", "autoremedy")
ORQUESTA_PYTHON = os.path.join(ROOT, ".venv-orquesta", "bin", "python")


def load(path):
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def workflow_text(name):
    with open(os.path.join(PACK, "actions", "workflows", name), encoding="utf-8") as handle:
        return handle.read()


def rules():
    folder = os.path.join(PACK, "rules")
    return {n[:-5]: load(os.path.join(folder, n)) for n in sorted(os.listdir(folder))
            if n.endswith(".yaml")}


def actions():
    """{"autoremedy.<name>": metadata} plus the core actions the workflows use."""
    folder = os.path.join(PACK, "actions")
    out = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".yaml"):
            meta = load(os.path.join(folder, name))
            out[f"{meta['pack']}.{meta['name']}"] = meta
    return out


def pack_config(**overrides):
    """The pack's configuration as StackStorm builds it: the schema's defaults,
    then the operator's values."""
    schema = load(os.path.join(PACK, "config.schema.yaml"))
    config = {k: v.get("default") for k, v in schema.items()}
    config.update(overrides)
    return config


def _json_loads(value):
    """st2common.util.jsonify.json_loads on one key: parsed when it parses."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _shell(stdout, stderr, code):
    return {"stdout": _json_loads(stdout), "stderr": _json_loads(stderr), "return_code": code,
            "succeeded": code == 0, "failed": code != 0}


def remote(host, stdout="", code=0, stderr=""):
    return {"status": "succeeded" if code == 0 else "failed",
            "result": {host: _shell(stdout, stderr, code)}}


def local(stdout="", code=0, stderr=""):
    return {"status": "succeeded" if code == 0 else "failed", "result": _shell(stdout, stderr, code)}


def script(result=None, ok=True, stdout="", stderr=""):
    return {"status": "succeeded" if ok else "failed",
            "result": {"result": result, "stdout": stdout, "stderr": stderr,
                       "exit_code": 0 if ok else 1}}


def ask(response=None, timeout=False, route="autoremedy", ttl=30):
    if timeout:
        then = {"status": "timeout", "result": None}
    else:
        then = {"status": "succeeded",
                "result": {"schema": {}, "roles": [], "users": [], "route": route, "ttl": ttl,
                           "response": response}}
    return {"status": "pending", "then": then}


class Engine:
    def __init__(self):
        if not os.path.exists(ORQUESTA_PYTHON):
            raise RuntimeError(f"{ORQUESTA_PYTHON} missing: run scripts/setup.d/50-stackstorm.sh "
                               "(make test does)")
        self.proc = subprocess.Popen([ORQUESTA_PYTHON, os.path.join(HERE, "conduct.py")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=HERE)
        self.lock = threading.Lock()

    def request(self, **payload):
        with self.lock:
            self.proc.stdin.write(json.dumps(payload) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the orquesta engine process died")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def conduct(self, workflow, inputs, results, definition=None):
        return self.request(op="conduct", definition=definition or workflow_text(workflow),
                            input=inputs, results=results)

    def transitions(self, workflow, definition=None):
        return self.request(op="transitions",
                            definition=definition or workflow_text(workflow))["transitions"]

    def inspect(self, workflow):
        return self.request(op="inspect", definition=workflow_text(workflow))["inspect"]

    def enforce(self, body, config=None, rule_set=None, headers=None):
        payload = {"headers": headers or {"Content-Type": "application/json"}, "body": body}
        return self.request(op="enforce", rules=rule_set or rules(), actions=actions(),
                            config=config or pack_config(), payload=payload)["enforced"]

    def command(self, action_ref, params, config=None):
        return self.request(op="command", meta=actions()[action_ref], params=params,
                            config=config or pack_config())["command"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


# -- python-script actions with their real code ------------------------------------------------

def run_python_action(ref, params, config):
    """Run a python-script action the way st2's python runner does: the pack's
    ``actions/`` on sys.path, the class found in the entry point instantiated
    with the pack config, ``run(**parameters)`` (defaults filled from the
    metadata); ``(ok, result)`` → status. StackStorm's ``Action`` base is a
    stand-in with ``config`` and ``logger`` (st2common/runners/base_action.py)."""
    import importlib.util
    import inspect
    import logging
    import sys
    import types
    meta = actions()[ref]
    assert meta["runner_type"] == "python-script", ref
    params = dict({k: v.get("default") for k, v in meta.get("parameters", {}).items()
                   if "default" in v}, **params)
    saved = {k: sys.modules.get(k) for k in ("st2common", "st2common.runners",
                                              "st2common.runners.base_action")}
    saved_lib = {k: v for k, v in sys.modules.items() if k == "lib" or k.startswith("lib.")}
    base = types.ModuleType("st2common.runners.base_action")

    class Action:
        def __init__(self, config=None):
            self.config = config or {}
            self.logger = logging.getLogger(f"st2.actions.{ref}")

    base.Action = Action
    folder = os.path.join(PACK, "actions")
    try:
        sys.modules.update({"st2common": types.ModuleType("st2common"),
                            "st2common.runners": types.ModuleType("st2common.runners"),
                            "st2common.runners.base_action": base})
        for name in saved_lib:
            del sys.modules[name]
        sys.path.insert(0, folder)
        spec = importlib.util.spec_from_file_location(f"pack_{meta['name']}",
                                                      os.path.join(folder, meta["entry_point"]))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        klass = next(v for v in vars(module).values() if inspect.isclass(v)
                     and issubclass(v, Action) and v is not Action
                     and v.__module__ == module.__name__)
        try:
            out = klass(config).run(**params)
        except Exception as exc:      # the runner reports a raised exception as failed
            return {"status": "failed", "result": {"result": None, "stdout": "",
                                                   "stderr": f"{type(exc).__name__}: {exc}",
                                                   "exit_code": 1}}
    finally:
        sys.path.remove(folder)
        for name in [k for k in sys.modules if k == "lib" or k.startswith("lib.")]:
            del sys.modules[name]
        sys.modules.update(saved_lib)
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    ok, result = out if isinstance(out, tuple) else (True, out)
    return {"status": "succeeded" if ok else "failed",
            "result": {"result": result, "stdout": "", "stderr": "", "exit_code": 0 if ok else 1}}


class Receiver:
    """A chat/paging webhook on loopback that keeps what it receives."""

    def __init__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                received.append(json.loads(self.rfile.read(length) or b"null"))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
