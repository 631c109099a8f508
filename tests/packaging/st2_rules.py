"""Which of the pack's rules fire for a webhook body: StackStorm's rules engine
semantics from tests/stackstorm (rules_engine.py under the orquesta venv), so
the packaging and Zabbix tests use the same evaluator as the rule-chain tests."""
import atexit
import importlib.util
import os

HERE = os.path.dirname(os.path.abspath(__file__))
_engine = None


def _st2kit():
    path = os.path.join(os.path.dirname(HERE), "stackstorm", "st2kit.py")
    spec = importlib.util.spec_from_file_location("st2kit_for_packaging", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def matching_rules(body):
    """Sorted rule file names whose criteria match ``body`` (``trigger.body``)."""
    global _engine
    if _engine is None:
        _engine = _st2kit().Engine()
        atexit.register(_engine.close)
    return sorted(f"{e['rule']}.yaml" for e in _engine.enforce(body))
