"""Conduct an Orquesta workflow with StackStorm's own engine (orquesta 1.2.0).

Runs under ``.venv-orquesta/bin/python`` (scripts/setup.d/50-stackstorm.sh), not
the bundle's venv: orquesta pins jsonschema 2.6 and networkx 1.11. The tests
talk to it over stdin/stdout, one JSON request per line, one JSON reply per
line (tests/stackstorm/engine.py starts it once per session).

A request names a workflow definition, its input, and the scripted action
executions, per task, in the shapes StackStorm's runners return. The driver
plays StackStorm's workflow engine: it asks the conductor for the next tasks,
records the action and the rendered input of each, feeds RUNNING then the
scripted status and result, pauses on a ``pending`` execution (``core.ask``)
and resumes the workflow when the inquiry is answered or times out — the order
st2's workflow service uses (st2common/services/workflows.py). The reply holds
every task executed with its input, the transitions taken, the workflow's
status, output and errors.
"""
import json
import sys


def _shims():
    """orquesta 1.2.0 and its networkx 1.11 predate Python 3.10."""
    import collections
    import collections.abc
    import fractions
    import math
    fractions.gcd = math.gcd                      # networkx 1.11
    for name in collections.abc.__all__:          # collections.Mapping & co.
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
    from orquesta.utils import parameters
    # A global inline flag in the middle of a pattern is an error since 3.11.
    parameters.REGEX_INLINE_PARAMS = (parameters.REGEX_INLINE_PARAMS
                                      .replace("(?i)true", "(?i:true)")
                                      .replace("(?i)false", "(?i:false)"))


_shims()

from orquesta import conducting, events, statuses  # noqa: E402
from orquesta.specs import native  # noqa: E402

import rules_engine  # noqa: E402  (beside this file)


class ScriptError(Exception):
    pass


def inspect(definition):
    """Spec errors as orquesta reports them (empty dict: none)."""
    return native.WorkflowSpec(definition).inspect()


def transitions(definition):
    """Every edge of the composed workflow graph (what the conductor evaluates):
    source, target, the edge key the conductor records when the transition is
    taken (``<target>__t<key>``), its criteria and which ``next`` item it is."""
    from orquesta.composers import native as composer
    graph = composer.WorkflowComposer.compose(native.WorkflowSpec(definition))
    out = []
    for source, target, key, data in graph._graph.edges(keys=True, data=True):
        out.append({"task": source, "do": target, "id": f"{source}->{target}__t{key}",
                    "when": data.get("criteria"), "index": data.get("ref")})
    return out


def conduct(request):
    spec = native.WorkflowSpec(request["definition"])
    errors = spec.inspect()
    if errors:
        return {"status": "invalid", "inspect": errors}
    script = {k: list(v) for k, v in (request.get("results") or {}).items()}
    conductor = conducting.WorkflowConductor(spec, inputs=request.get("input") or {})
    conductor.request_workflow_status(statuses.RUNNING)
    executed, statuses_seen = [], []
    for _ in range(request.get("max_steps", 200)):
        tasks = conductor.get_next_tasks()
        if not tasks:
            break
        for task in tasks:
            task_id, route = task["id"], task["route"]
            for action in task["actions"]:
                executed.append({"task": task_id, "action": action["action"],
                                 "input": action["input"]})
                if action["action"] in ("core.noop",) and task_id not in script:
                    steps = [{"status": "succeeded", "result": None}]
                else:
                    steps = script.get(task_id)
                    if not steps:
                        raise ScriptError(f"no execution scripted for task {task_id!r} "
                                          f"({action['action']})")
                    steps = [steps.pop(0)]
                _forward(conductor, task_id, route, steps[0], statuses_seen)
    conductor.render_workflow_output()        # what st2's workflow service does at the end
    state = conductor.workflow_state
    taken = []
    for entry in state.sequence:
        for key, value in (entry.get("next") or {}).items():
            if value:
                taken.append(f"{entry['id']}->{key}")
    return {"status": conductor.get_workflow_status(),
            "output": conductor.get_workflow_output(),
            "errors": conductor.errors,
            "executed": executed,
            "sequence": [e["id"] for e in state.sequence],
            "taken": taken,
            "paused": statuses_seen,
            "unused": {k: v for k, v in script.items() if v}}


def _forward(conductor, task_id, route, step, seen):
    conductor.update_task_state(task_id, route, events.ActionExecutionEvent(statuses.RUNNING))
    status = step["status"]
    if status == statuses.PENDING:
        # core.ask: the inquiry is pending, the workflow pauses until a response
        # (or the TTL's expiry) completes the execution and resumes it.
        conductor.update_task_state(task_id, route, events.ActionExecutionEvent(statuses.PENDING))
        seen.append(conductor.get_workflow_status())
        then = step["then"]
        conductor.update_task_state(task_id, route, events.ActionExecutionEvent(
            then["status"], result=then.get("result")))
        conductor.request_workflow_status(statuses.RESUMING)
        return
    conductor.update_task_state(task_id, route, events.ActionExecutionEvent(
        status, result=step.get("result")))


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            op = request.get("op", "conduct")
            if op == "conduct":
                reply = conduct(request)
            elif op == "inspect":
                reply = {"inspect": inspect(request["definition"])}
            elif op == "transitions":
                reply = {"transitions": transitions(request["definition"])}
            elif op == "enforce":
                reply = {"enforced": rules_engine.enforce(request["rules"], request["actions"],
                                                          request["config"], request["payload"])}
            elif op == "command":
                reply = {"command": rules_engine.render_command(request["meta"], request["params"],
                                                                request["config"])}
            else:
                reply = {"error": f"unknown op {op!r}"}
        except Exception as exc:  # the test shows it; the driver keeps serving
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply, default=str) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
