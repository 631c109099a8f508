"""StackStorm's rules engine, as far as the pack's rules need it.

Runs in the orquesta venv beside conduct.py (it needs Jinja2, which StackStorm
ships). Each piece follows st2's own code, cited per function; nothing here is
looser than StackStorm:

- matching: ``st2reactor/rules/filter.py`` (``RuleFilter._check_criterion``:
  the payload value is the first jsonpath match or None; an operator that raises
  means "no match") with the operators of ``st2common/operators.py``;
- rendering the rule's action parameters: ``st2reactor/rules/datatransform.py``
  → ``st2common/util/jinja.py`` ``render_values`` (each value rendered as a string
  with ``StrictUndefined``, ``trim_blocks`` and ``lstrip_blocks``; a value that did
  not change keeps its type);
- the action's parameters: ``st2common/util/param.py`` (defaults that are Jinja
  templates rendered with the other parameters and ``config_context``; immutable
  parameters always take their default) and casting by the parameter's type with
  ``st2common/util/casts.py`` (object/array: JSON, else a Python literal;
  boolean: the literal of the capitalised string; integer: ``int()``).
"""
import ast
import fnmatch
import json
import re

import jinja2

NONE_MAGIC_VALUE = "%*****__%NONE%__*****%"


class EnforcementError(Exception):
    """What StackStorm would log as a failed rule enforcement."""


# -- matching -----------------------------------------------------------------------------

def _lookup(payload, key):
    """``trigger.a.b`` → payload['a']['b'] (jsonpath-rw ``find`` on a dotted path:
    a missing key gives no match, so the value is None)."""
    parts = key.split(".")
    if parts[0] != "trigger":
        return None
    value = payload
    for part in parts[1:]:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _none_false(fn):
    def op(value, pattern):
        if pattern is None:
            return False
        return fn(value, pattern)
    return op


OPERATORS = {
    "equals": _none_false(lambda v, p: v == p), "eq": _none_false(lambda v, p: v == p),
    "nequals": lambda v, p: v != p, "neq": lambda v, p: v != p,
    "iequals": _none_false(lambda v, p: v.lower() == p.lower()),
    "contains": _none_false(lambda v, p: p in v),
    "icontains": _none_false(lambda v, p: p.lower() in v.lower()),
    "ncontains": _none_false(lambda v, p: p not in v),
    "startswith": _none_false(lambda v, p: v.startswith(p)),
    "endswith": _none_false(lambda v, p: v.endswith(p)),
    "matchwildcard": _none_false(lambda v, p: fnmatch.fnmatch(v, p)),
    "regex": _none_false(lambda v, p: re.search(p, v) is not None),
    "iregex": _none_false(lambda v, p: re.search(p, v, re.IGNORECASE) is not None),
    "lt": _none_false(lambda v, p: v < p), "gt": _none_false(lambda v, p: v > p),
    "exists": lambda v, p: v is not None, "nexists": lambda v, p: v is None,
    "inside": _none_false(lambda v, p: v in p), "in": _none_false(lambda v, p: v in p),
    "ninside": _none_false(lambda v, p: v not in p), "nin": _none_false(lambda v, p: v not in p),
}


def matches(rule, payload):
    if not rule.get("enabled"):
        return False          # st2: a rule without enabled: true never fires
    criteria = rule.get("criteria") or {}
    if criteria and not payload:
        return False
    for key, criterion in criteria.items():
        if "type" not in criterion:
            return False
        op = OPERATORS.get(criterion["type"].lower())
        if op is None:
            raise EnforcementError(f"Invalid operator: {criterion['type']}")
        try:
            if not op(_lookup(payload, key), criterion.get("pattern")):
                return False
        except Exception:     # st2 logs "There might be a problem with criteria" → no match
            return False
    return True


# -- rendering ---------------------------------------------------------------------------

def environment():
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters["use_none"] = lambda v: NONE_MAGIC_VALUE if v is None else v
    env.filters["to_json_string"] = lambda v, indent=None, sort_keys=False: json.dumps(
        v, indent=indent, sort_keys=sort_keys)
    env.tests["in"] = lambda item, seq: item in seq
    return env


def render_values(mapping, context):
    env = environment()
    out = {}
    for key, value in (mapping or {}).items():
        complex_value = isinstance(value, (dict, list))
        text = json.dumps(value) if complex_value else (value if isinstance(value, str) else str(value))
        try:
            rendered = env.from_string(text).render(dict(context, __context=context))
        except Exception as exc:
            raise EnforcementError(f"failed to render parameter {key!r} ({text!r}): "
                                   f"{type(exc).__name__}: {exc}") from None
        if rendered == text:
            out[key] = value
            continue
        out[key] = json.loads(rendered) if complex_value else rendered
    return out


def _cast_none(x):
    return None if isinstance(x, str) and x == NONE_MAGIC_VALUE else x


def _cast_object(x):
    x = _cast_none(x)
    if isinstance(x, str):
        try:
            return json.loads(x)
        except ValueError:
            return ast.literal_eval(x)
    return x


def _cast_boolean(x):
    x = _cast_none(x)
    return ast.literal_eval(x.capitalize()) if isinstance(x, str) else x


CASTS = {"array": _cast_object, "object": _cast_object, "boolean": _cast_boolean,
         "integer": lambda x: int(_cast_none(x)), "number": lambda x: float(_cast_none(x)),
         "string": lambda x: _cast_none(x)}


def cast(value, schema):
    if value is None or not schema or not schema.get("type"):
        return value
    fn = CASTS.get(schema["type"])
    if fn is None:
        return value
    try:
        return fn(value)
    except Exception as exc:
        raise EnforcementError(f"cannot cast {value!r} to {schema['type']}: {exc}") from None


def action_parameters(meta, live, config):
    """The parameters an execution of ``meta`` gets from ``live`` (the rule's
    rendered values): live values cast, then defaults (rendered when they are
    templates, with ``config_context`` and the other parameters), immutable ones
    always from their default. Required parameters must end up set; a ``pattern``
    or ``enum`` that does not match is the API's validation error."""
    schema = meta.get("parameters") or {}
    unknown = set(live) - set(schema)
    if unknown:
        raise EnforcementError(f"unexpected parameters {sorted(unknown)} for {meta['name']}")
    params = {k: cast(v, schema[k]) for k, v in live.items() if not schema[k].get("immutable")}
    pending = {k: s for k, s in schema.items() if k not in params and "default" in s}
    env = environment()
    for _ in range(len(pending) + 1):
        for name, spec in list(pending.items()):
            default = spec["default"]
            if not isinstance(default, str) or "{" not in default:
                params[name] = default
                del pending[name]
                continue
            try:
                rendered = env.from_string(default).render(dict(params, config_context=config))
            except jinja2.UndefinedError:
                continue          # depends on a parameter not rendered yet
            params[name] = cast(rendered, spec)
            del pending[name]
    if pending:
        raise EnforcementError(f"cannot render defaults {sorted(pending)} of {meta['name']}")
    for name, spec in schema.items():
        if spec.get("required") and params.get(name) in (None, ""):
            raise EnforcementError(f"'{name}' is a required property of {meta['name']}")
        value = params.get(name)
        if spec.get("pattern") and isinstance(value, str) and not re.search(spec["pattern"], value):
            raise EnforcementError(f"{name}={value!r} does not match {spec['pattern']!r}")
        if spec.get("enum") and value not in spec["enum"]:
            raise EnforcementError(f"{name}={value!r} is not one of {spec['enum']}")
    return params


def enforce(rules, actions, config, payload):
    """Every rule that matches ``payload`` (the core.st2.webhook trigger's
    {headers, body}) and what its enforcement would start."""
    out = []
    for name, rule in sorted(rules.items()):
        if not matches(rule, payload):
            continue
        ref = rule["action"]["ref"]
        entry = {"rule": name, "action": ref}
        try:
            context = {"trigger": payload}
            live = render_values(rule["action"].get("parameters") or {}, context)
            meta = actions.get(ref)
            if meta is None:
                raise EnforcementError(f"action {ref} is not registered")
            entry["params"] = action_parameters(meta, live, config)
        except EnforcementError as exc:
            entry["error"] = str(exc)
        out.append(entry)
    return out


def render_command(meta, params, config):
    """A shell-cmd action's final ``cmd`` (an immutable template), as the runner
    receives it."""
    template = meta["parameters"]["cmd"]["default"]
    return environment().from_string(template).render(dict(params, config_context=config))
