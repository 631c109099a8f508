"""Queue-name patterns and oslo.messaging shapes, without a broker: exact
patterns read back, the PCRE-vs-Python gap as one config error naming the key,
the shapes of oslo.messaging's queues, and the check's verdicts for them."""
import argparse
import re

import pytest

from autoremedy.clients import oslo_queues, queue_patterns, rabbitmq
from autoremedy.checks import rabbitmq_queues as rq
from autoremedy.config import Config, ConfigError
from autoremedy.contract.ranges import Range
from autoremedy.contract.result import Status

NAMES = ["notifications.info", "a b", "x|y", "q(1)", "né", "tab\\x", "^$", "reply_ab", "a\nb", "dot.*"]


def test_an_exact_pattern_matches_exactly_its_names_and_reads_back():
    pattern = queue_patterns.exact_pattern(NAMES)
    assert queue_patterns.exact_names(pattern) == sorted(NAMES)
    regex = re.compile(pattern)
    assert all(regex.search(n) for n in NAMES)
    for other in ("notificationsXinfo", "dot.x", "a", "notifications.info.overflow", "xnotifications.info"):
        assert not regex.search(other), other
    assert queue_patterns.exact_pattern(["notifications.info"]) == r"^notifications\.info$"
    assert queue_patterns.dialect_problem(pattern) is None       # it reads the same in PCRE


@pytest.mark.parametrize("pattern, names", [
    (r"^(?:a|b\.c)$", ["a", "b.c"]),
    (r"^(a|b)$", ["a", "b"]),
    (r"^a\.b$", ["a.b"]),
    (r"^a.b$", None),             # '.' is any character
    (r"^a|b$", None),             # (^a)|(b$): not exact
    (r"^a\d$", None),
    ("^a$|", None),
    ("notifications", None),
    (r"^a\$", None),
])
def test_exact_names_reads_only_exact_patterns(pattern, names):
    assert queue_patterns.exact_names(pattern) == names


@pytest.mark.parametrize("pattern, problem", [
    (r"^[[:lower:]_]+$|^notifications\.info$", "POSIX class [:lower:]"),
    ("a++", "possessive quantifier"),
    (r"^notifications\Z", r"\Z"),
    ("(?a)x", "inline flag (?a): Python only"),
    ("a{,3}", "{,n}"),
    ("(?>a)", "atomic group"),
    (r"a\v", r"\v"),
    ("[a[b]", "'[' inside a character class"),
    ("[a--b]", "set operation"),
])
def test_patterns_that_mean_something_else_to_pcre_are_named(pattern, problem):
    assert problem in queue_patterns.dialect_problem(pattern)


@pytest.mark.parametrize("pattern", [
    r"^(versioned_)?notifications\.(info|warn|error)$", r"^reply_[0-9a-f]{32}$", "(?i)^billing",
    r"[]a]", r"[^]a]", r"^metering\.sample$", r"\d+\w*\s?", r"(?P<n>x)",
])
def test_portable_patterns_pass(pattern):
    assert queue_patterns.dialect_problem(pattern) is None


def test_a_pcre_only_pattern_is_a_config_error_naming_the_key(make_config):
    path = make_config({"rabbitmq": {"queue_policies": {"loose": {
        "pattern": r"^[[:lower:]_]+$|^notifications\.info$", "action": "cap", "max_length": 1}}}})
    with pytest.raises(ConfigError) as err:
        rabbitmq.settings(Config.load(path, environ={}), environ={})
    assert str(err.value).endswith("rabbitmq.queue_policies.loose.pattern: means something else to "
                                   "RabbitMQ (PCRE) than to Python: POSIX class [:lower:]: PCRE reads a "
                                   "character class, Python literal characters")


def test_rpc_queues_is_protect_or_allow(make_config):
    path = make_config({"rabbitmq": {"queue_policies": {"p": {
        "pattern": "x", "action": "cap", "max_length": 1, "rpc_queues": "yes"}}}})
    with pytest.raises(ConfigError, match=r"queue_policies.p.rpc_queues: 'yes' is not one of protect, allow"):
        rabbitmq.settings(Config.load(path, environ={}), environ={})


def test_oslo_shapes():
    kinds, topics = oslo_queues.classify([
        "compute", "compute.node1", "compute.n2.example.com", "compute_fanout_4f1e", "reply_9a0b",
        "notifications.info", "versioned_notifications.error", "billing.events",
        "billing.events.overflow", "cinder-volume", "cinder-volume.h@lvm"])
    assert kinds == {
        "compute": "topic", "compute.node1": "server", "compute.n2.example.com": "server",
        "compute_fanout_4f1e": "fanout", "reply_9a0b": "reply", "notifications.info": "notification",
        "versioned_notifications.error": "notification", "billing.events": None,
        "billing.events.overflow": None,        # no fanout queue makes billing.events a topic
        "cinder-volume": None, "cinder-volume.h@lvm": None}
    assert topics["compute.n2.example.com"] == "compute"
    assert oslo_queues.server_label("compute", "node1") == "nova-compute on node1"


def test_the_consumer_history_remembers_when_a_server_lost_its_consumer(tmp_path):
    history = oslo_queues.ConsumerHistory(str(tmp_path / "h.json"), forget=100)
    kinds = {("/", "compute.node1"): "server", ("/", "billing"): None}
    row = {"vhost": "/", "name": "compute.node1", "consumers": 1}
    assert history.update([row, {"vhost": "/", "name": "billing", "consumers": 0}], kinds, 10) == {
        "/\0compute.node1": {"seen": 10, "at": 10}}
    row["consumers"] = 0
    assert history.update([row], kinds, 20)["/\0compute.node1"] == {"seen": 10, "lost": 20, "at": 20}
    assert history.update([row], kinds, 50)["/\0compute.node1"]["lost"] == 20      # since then
    row["consumers"] = None                                  # not counted yet: nothing changes
    assert history.update([row], kinds, 60)["/\0compute.node1"]["lost"] == 20
    assert history.update([], kinds, 500) == {} and history.read() == {}          # forgotten


def rules(**over):
    args = argparse.Namespace(warning=Range.parse("1000"), critical=Range.parse("10000"),
                              ready_warning=None, ready_critical=None, unacked_warning=None,
                              unacked_critical=None, no_consumers="warning", no_consumers_min=1,
                              stuck_consumers="off", growth_warning=None, growth_critical=None,
                              drain_warning=None, drain_critical=None, drain_min=100,
                              rpc_server_gone="critical", rpc_grace=60.0, orphaned="report")
    for key, value in over.items():
        setattr(args, key, value)
    return rq.Rules(args)


def row(messages=0, consumers=0, expires=None):
    return {"vhost": "/", "name": "q", "messages": messages, "ready": messages, "unacked": 0,
            "consumers": consumers, "ack_rate": 0.0, "deliver_rate": 0.0, "expires": expires}


SERVER = {"kind": "server", "label": "nova-compute on node1"}


@pytest.mark.parametrize("queue, info, over, status, reasons", [
    (row(0, 1), SERVER, {}, Status.OK, []),
    (row(0), {**SERVER, "lost_for": 5.0}, {}, Status.WARNING, ["RPC server gone 5s (nova-compute on node1?)"]),
    (row(0), {**SERVER, "lost_for": 120.0}, {}, Status.CRITICAL,
     ["RPC server gone 2.0m (nova-compute on node1?)"]),
    (row(0), SERVER, {}, Status.WARNING, ["RPC server gone (nova-compute on node1?)"]),   # since unknown
    (row(1500), {**SERVER, "lost_for": 120.0}, {}, Status.CRITICAL,
     ["RPC server gone 2.0m (nova-compute on node1?)", "1500 msgs (warn >1000)"]),
    (row(0), {"kind": "topic", "lost_for": 0.0}, {"rpc_grace": 0.0}, Status.CRITICAL,
     ["no RPC server consumes this topic 0s"]),
    (row(5), SERVER, {"rpc_server_gone": "off"}, Status.WARNING, ["5 msgs, no consumers"]),
    (row(5000, expires=1800.0), {"kind": "fanout", "expires_in": 1500.0}, {}, Status.OK, []),
    (row(5000, expires=1800.0), {"kind": "fanout", "expires_in": 1500.0}, {"orphaned": "warning"},
     Status.WARNING, ["orphaned, expires in 25.0m", "5000 msgs (warn >1000)"]),
    (row(5000), {"kind": "fanout"}, {}, Status.WARNING, ["5000 msgs (warn >1000)", "no consumers"]),
    (row(50), {"kind": "notification"}, {}, Status.WARNING, ["50 msgs, no consumers"]),
])
def test_judge_oslo_shapes(queue, info, over, status, reasons):
    assert rq.judge(queue, rules(**over), None, info) == (status, reasons)
