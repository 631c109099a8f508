"""Generate the StackStorm pack's per-class rules and the two rules that list the
classes (unhandled.yaml, untargeted.yaml) from the classes' manifests (the
"stackstorm" entry of checks/<class>.py).

    $ python3 packaging/tools/pack_rules.py      # rewrites packaging/stackstorm/autoremedy/rules/

The other rules (cannot_check, resolved, update, ...) are written by hand: they
do not depend on the classes. A test keeps the committed rules equal to this
output. Written as text, not through a YAML dumper: the rules carry comments for
the operator who reads them (StackStorm rule criteria:
https://docs.stackstorm.com/rules.html#criteria-comparison).
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.append(HERE)
import class_manifests  # noqa: E402  (packaging/tools/class_manifests.py)

RULES = os.path.join(class_manifests.PROJECT, "packaging", "stackstorm", "autoremedy", "rules")
TARGET = "{{ trigger.body.event.labels.autoremedy_target }}"

HEAD = """\
---
name: {name}
pack: autoremedy
description: {description}
enabled: true
trigger:
  type: core.st2.webhook
  parameters:
    url: autoremedy
criteria:
  # An update of a problem (a Zabbix acknowledgement, comment, severity change,
  # closing) is not a new failure: update.yaml takes it.
  trigger.body.event.action:
    type: nequals
    pattern: update
"""
NOT_UNKNOWN = """\
  trigger.body.event.labels.autoremedy_status:
    type: nequals
    pattern: "3"
"""
FAILURE = """\
  trigger.body.event.status:
    type: inside
    pattern: [1, 2]
""" + NOT_UNKNOWN
HAS_TARGET = """\
  # The action renders the target: without it the enforcement would fail under
  # StrictUndefined and nothing would happen (untargeted.yaml escalates instead).
  trigger.body.event.labels.autoremedy_target:
    type: exists
"""


def quoted(text):
    """A YAML double-quoted scalar (the rules' text has no backslash or quote to escape)."""
    assert '"' not in text and "\\" not in text, text
    return f'"{text}"'


def comment(text, indent="  "):
    return "".join(f"{indent}# {line}\n" for line in text.split("\n")) if text else ""


def class_rule(manifest):
    cls, rule = manifest["name"], manifest["stackstorm"]
    status = rule["status"]
    out = [HEAD.format(name=cls.replace("-", "_"), description=quoted(rule["description"])),
           f"  trigger.body.event.labels.autoremedy_class:\n    type: equals\n    pattern: {cls}\n",
           comment(rule.get("status_comment")),
           "  trigger.body.event.status:\n"
           + (f"    type: inside\n    pattern: {status}\n" if isinstance(status, list)
              else f"    type: equals\n    pattern: {status}\n")]
    if not rule.get("takes_unknown"):
        out.append(NOT_UNKNOWN)
    out.append(HAS_TARGET)
    action = rule.get("action")
    if action:
        params = {"event": "{{ trigger.body.event }}", **action["parameters"]}
        ref = action["ref"]
    else:
        # The pack's remediate workflow: StackStorm first, on the node for a node
        # class (scope), through the API otherwise; the check re-run with check_args.
        params = {"event": "{{ trigger.body.event }}",
                  "remediated_locally": "{{ trigger.body.autoremedy.remediated_locally }}",
                  "cls": cls, "host": "{{ trigger.body.event.host }}", "target": TARGET,
                  "scope": manifest["scope"], "check_args": rule["check_args"]}
        ref = "autoremedy.remediate"
    out.append(f"action:\n  ref: {ref}\n  parameters:\n")
    for key, value in params.items():
        shown = value if (value == cls or key == "scope") else quoted(value)
        out.append(f"    {key}: {shown}\n")
    return "".join(out)


def class_list(manifests):
    return "[" + ", ".join(f"'{m['name']}'" for m in manifests) + "]"


def unhandled(manifests):
    return (HEAD.format(name="unhandled", description=quoted(
        "A failure with no registered remediation: collect the logs around it, draw the graph, escalate."))
        + f"  trigger.body.event.labels.autoremedy_class:\n    type: ninside\n    pattern: {class_list(manifests)}\n"
        + FAILURE
        + "action:\n  ref: autoremedy.collect_and_draw\n  parameters:\n"
          '    event: "{{ trigger.body.event }}"\n    host: "{{ trigger.body.event.host }}"\n')


def untargeted(manifests):
    reason = ("{{ trigger.body.event.labels.autoremedy_class }} failure without an autoremedy_target label: "
              "nothing was remediated (check the check's labels or the Zabbix trigger's tags)")
    return (HEAD.format(name="untargeted", description=quoted(
        "A failure of a class with a remediation but no autoremedy_target label: nothing can be remediated, "
        "a human must look."))
        + f"  trigger.body.event.labels.autoremedy_class:\n    type: inside\n    pattern: {class_list(manifests)}\n"
        + FAILURE
        + "  trigger.body.event.labels.autoremedy_target:\n    type: nexists\n"
        + f"action:\n  ref: autoremedy.escalate\n  parameters:\n    reason: {quoted(reason)}\n"
          '    event: "{{ trigger.body.event }}"\n')


def rules(manifests=None):
    """{file name: text} of every generated rule."""
    found = class_manifests.manifests() if manifests is None else manifests
    ruled = class_manifests.by_order(found, "stackstorm")
    out = {f"{m['name'].replace('-', '_')}.yaml": class_rule(m) for m in ruled}
    out["unhandled.yaml"] = unhandled(ruled)
    out["untargeted.yaml"] = untargeted(ruled)
    return out


def main():
    for name, text in rules().items():
        with open(os.path.join(RULES, name), "w") as handle:
            handle.write(text)


if __name__ == "__main__":
    sys.exit(main())
