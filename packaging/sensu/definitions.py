"""Generate the Sensu Go resources (go/autoremedy.yaml) and their Sensu Classic
equivalents (classic/autoremedy.json) from the classes' manifests (the "sensu"
entries of checks/<class>.py, read by packaging/tools/class_manifests.py).

    $ python3 packaging/sensu/definitions.py          # rewrites both files

One table, two dialects: the checks, hooks, handler and filter must say the same
thing in both (a test keeps the committed files equal to this output).

Where things run (Sensu Go docs: checks and hooks run on the agent, handlers on the backend): checks and hooks on the agent, the
handler and filters on the backend. So node-scoped remediation is triggered by a
*check hook* (`autoremedy handle hook <class> ...`, which re-runs the check on the
node and forwards or falls back locally), and every event also goes through the
pipe handler (`autoremedy handle sensu`) to StackStorm. API-scoped classes run
as proxy checks on agents subscribed to `autoremedy-central`, round robin.
"""
import json
import os
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.append(os.path.join(os.path.dirname(HERE), "tools"))
import class_manifests  # noqa: E402  (packaging/tools/class_manifests.py)
ASSET = "autoremedy"
HANDLER = "autoremedy"
FILTER = "autoremedy-occurrences"
INTERVAL = 60


def table(manifests):
    """(name, class, check arguments (Sensu Go tokens), Classic tokens (None: same),
    subscriptions, hook statuses, proxy entity (API-scoped classes), remediation
    target) per Sensu check, from the classes' manifests ("sensu" in checks/<class>.py).
    The target is a key of remediations.<class>.targets: the hook's --target and
    the autoremedy_target label the StackStorm rules read."""
    return [(c["name"], m["name"], c["args"], c.get("classic_args"), c["subscriptions"], c["hooks"],
             c.get("proxy"), c.get("target"))
            for m in class_manifests.by_order(manifests, "sensu") for c in m["sensu"]]


CHECKS = table(class_manifests.manifests())

# First occurrence, then every 60th (an hour at a 60 s interval), and every
# resolution: the repeated-events filter of the Sensu docs (https://docs.sensu.io/sensu-go/latest/observability-pipeline/observe-filter/filters/).
OCCURRENCES_GO = "event.check.occurrences == 1 || event.check.occurrences % 60 == 0"
OCCURRENCES_CLASSIC = "eval: value == 1 || value % 60 == 0"


def command(cls, args):
    return " ".join(p for p in ("autoremedy check", cls, args) if p)


def hook_command(cls, args, target):
    """`handle hook` re-runs the check here (same options) and remediates
    ``target`` when StackStorm is unreachable."""
    return " ".join(p for p in ("autoremedy handle hook", cls, f"--target {target}" if target else "", args) if p)


def labels(cls, target):
    out = {"autoremedy_class": cls}
    if target:
        out["autoremedy_target"] = target
    return out


def go_resources():
    docs = []
    for name, cls, args, _, subs, hook_on, proxy, target in CHECKS:
        spec = {
            "command": command(cls, args),
            "interval": INTERVAL,
            "timeout": 30,
            "publish": True,
            "subscriptions": subs,
            "runtime_assets": [ASSET],
            "handlers": [HANDLER],
            "output_metric_format": "nagios_perfdata",
        }
        if proxy:
            spec.update({"proxy_entity_name": proxy, "round_robin": True})
        if hook_on:
            spec["check_hooks"] = [{status: [f"{name}-hook"]} for status in hook_on]
        docs.append({"type": "CheckConfig", "api_version": "core/v2",
                     "metadata": {"name": name, "labels": labels(cls, target)}, "spec": spec})
        if hook_on:
            docs.append({"type": "HookConfig", "api_version": "core/v2", "metadata": {"name": f"{name}-hook"},
                         "spec": {"command": hook_command(cls, args, target), "timeout": 120, "stdin": False,
                                  "runtime_assets": [ASSET]}})
    docs.append({"type": "CheckConfig", "api_version": "core/v2",
                 "metadata": {"name": "autoremedy-batch", "labels": {"autoremedy_class": "batch"}},
                 "spec": {"command": "autoremedy check batch --sensu", "interval": INTERVAL, "timeout": 30,
                          "publish": False, "subscriptions": ["autoremedy-batch"], "runtime_assets": [ASSET],
                          "handlers": [HANDLER]}})
    docs.append({"type": "Handler", "api_version": "core/v2", "metadata": {"name": HANDLER},
                 "spec": {"type": "pipe", "command": "autoremedy handle sensu", "timeout": 30,
                          "filters": ["is_incident", FILTER], "runtime_assets": [ASSET],
                          "env_vars": ["AUTOREMEDY_ST2_URL=https://st2.example.net",
                                       "AUTOREMEDY_ST2_API_KEY_FILE=/etc/sensu/autoremedy-st2-api-key",
                                       "AUTOREMEDY_STATE_DIR=/var/lib/sensu/autoremedy"]}})
    docs.append({"type": "EventFilter", "api_version": "core/v2", "metadata": {"name": FILTER},
                 "spec": {"action": "allow", "expressions": [OCCURRENCES_GO]}})
    return docs


def classic_resources():
    checks = {}
    for name, cls, args, classic_args, subs, hook_on, proxy, target in CHECKS:
        check = {"command": command(cls, classic_args if classic_args is not None else args),
                 "subscribers": subs, "interval": INTERVAL, "timeout": 30, "handlers": ["autoremedy"],
                 # Custom check attributes reach the handler like Sensu Go's labels.
                 **labels(cls, target)}
        if proxy:
            check["source"] = proxy
        if hook_on:
            check["hooks"] = {status: {"command": hook_command(cls, args, target), "timeout": 120}
                              for status in hook_on}
        checks[name] = check
    return {
        "checks": checks,
        "handlers": {"autoremedy": {"type": "pipe", "command": "autoremedy handle sensu", "timeout": 30,
                                    "severities": ["ok", "warning", "critical", "unknown"],
                                    "filters": [FILTER]}},
        "filters": {FILTER: {"attributes": {"occurrences": OCCURRENCES_CLASSIC}}},
    }


GO_HEADER = """\
# autoremedy for Sensu Go: checks for every class, the check hooks that run the
# node-side handle path, the StackStorm pipe handler and the occurrences filter.
# Generated by packaging/sensu/definitions.py. Create the asset first
# (`make asset` writes autoremedy-asset.yaml), then: sensuctl create -f autoremedy.yaml
# The batch alternative (one process for every node check, results posted to the
# agent API) is `autoremedy-batch`: publish it instead of the per-class node checks.
"""


class _Dumper(yaml.SafeDumper):
    """No &anchors / *aliases for the lists the checks share."""

    def ignore_aliases(self, data):
        return True


def render_go():
    return GO_HEADER + "---\n" + yaml.dump_all(go_resources(), Dumper=_Dumper, sort_keys=False, width=120)


def render_classic():
    return json.dumps(classic_resources(), indent=2, sort_keys=False) + "\n"


def main():
    with open(os.path.join(HERE, "go", "autoremedy.yaml"), "w") as handle:
        handle.write(render_go())
    with open(os.path.join(HERE, "classic", "autoremedy.json"), "w") as handle:
        handle.write(render_classic())


if __name__ == "__main__":
    sys.exit(main())
