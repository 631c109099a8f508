"""The rabbitmq: configuration section: defaults, environment, secrets, and one
clear error naming the key for every bad policy."""
import pytest

from autoremedy.clients import rabbitmq
from autoremedy.config import Config, ConfigError


def settings(make_config, section, environ=None):
    path = make_config({"rabbitmq": section})
    return rabbitmq.settings(Config.load(path, environ={}), environ=environ or {})


def test_defaults_are_the_local_broker_and_rabbitmqs_own_guest(make_config):
    s = settings(make_config, {})
    assert s.api_url == "http://127.0.0.1:15672"
    assert (s.user, s.password) == ("guest", "guest")
    assert s.start_command == ["rabbitmq-server", "-detached"]
    assert s.boot_timeout == 20.0 and s.queue_policies == {}


def test_the_environment_overrides_url_user_and_node(make_config):
    s = settings(make_config, {"api_url": "http://a:15672", "user": "x"},
                 {"AUTOREMEDY_RABBITMQ_URL": "https://b:15671", "AUTOREMEDY_RABBITMQ_USER": "monitor",
                  "AUTOREMEDY_RABBITMQ_NODE": "rabbit@b", "AUTOREMEDY_RABBITMQ_PASSWORD": "pw"})
    assert (s.api_url, s.user, s.node_name, s.password) == ("https://b:15671", "monitor", "rabbit@b", "pw")


@pytest.mark.parametrize("env, file_text, expected", [
    ({"AUTOREMEDY_RABBITMQ_PASSWORD": "from-env"}, "from-file", "from-env"),
    ({}, "from-file\n", "from-file"),
])
def test_the_password_comes_from_the_environment_or_a_file_never_argv(make_config, tmp_path, env, file_text, expected):
    secret = tmp_path / "secret"
    secret.write_text(file_text)
    s = settings(make_config, {"user": "monitor", "password_file": str(secret)}, env)
    assert s.password == expected


def test_a_user_other_than_guest_gets_no_default_password(make_config):
    assert settings(make_config, {"user": "monitor"}).password == ""


def test_an_unreadable_password_file_names_the_key(make_config, tmp_path):
    s = settings(make_config, {"user": "monitor", "password_file": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match=r"rabbitmq.password_file .*missing: No such file"):
        s.password


def test_paths_follow_the_nodes_environment(make_config):
    s = settings(make_config, {"node_env": {"RABBITMQ_NODENAME": "rmq@h", "RABBITMQ_MNESIA_BASE": "/d/m",
                                            "RABBITMQ_LOG_BASE": "/d/l", "RABBITMQ_PID_FILE": "/d/p"}})
    assert (s.node_name, s.mnesia_path, s.log_path, s.pid_path) == (
        "rmq@h", "/d/m/rmq@h", "/d/l/rmq@h.log", "/d/p")
    assert s.baseline_path.endswith("/rabbitmq/rmq@h.definitions.json")


def test_the_node_name_defaults_to_rabbitmq_env_conf(make_config, tmp_path, monkeypatch):
    conf = tmp_path / "rabbitmq-env.conf"
    conf.write_text("# comment\nNODENAME=rabbit@ctl1\nERL_EPMD_ADDRESS=127.0.0.1\n")
    monkeypatch.setattr(rabbitmq, "ENV_CONF", str(conf))
    s = settings(make_config, {})
    assert s.node_name == "rabbit@ctl1"
    assert s.mnesia_path == "/var/lib/rabbitmq/mnesia/rabbit@ctl1"


@pytest.mark.parametrize("policy, message", [
    ({"action": "cap", "max_length": 1}, "queue_policies.p.pattern: required"),
    ({"pattern": "(", "action": "cap", "max_length": 1}, "queue_policies.p.pattern: invalid regex"),
    ({"pattern": "x", "action": "delete"}, "queue_policies.p.action: 'delete' is not one of cap, move, purge"),
    ({"pattern": "x", "action": "cap"}, "a cap needs max_length, max_length_bytes or message_ttl"),
    ({"pattern": "x", "action": "cap", "max_length": 1, "overflow": "drop-tail"},
     "queue_policies.p.overflow: 'drop-tail' is not one of"),
    ({"pattern": "x", "action": "move", "move_via": "ftp"}, "queue_policies.p.move_via: 'ftp'"),
    ({"pattern": "x", "action": "purge"}, "purge deletes messages; it needs disposable: true"),
    ({"pattern": "x", "action": "move", "overflow_queue": "parking"}, "overflow_queue: must contain {name}"),
    ({"pattern": "x", "action": "cap", "max_length": "many"}, "queue_policies.p.max_length: expected an integer"),
    ({"pattern": "x", "action": "cap", "message_ttl": "soon"}, "queue_policies.p.message_ttl: invalid duration"),
    ({"pattern": "x", "action": "cap", "max_length": 1, "colour": "red"}, "queue_policies.p.colour: unknown key"),
])
def test_bad_policies_are_one_clear_error_naming_the_key(make_config, policy, message):
    with pytest.raises(ConfigError) as err:
        settings(make_config, {"queue_policies": {"p": policy}})
    assert message in str(err.value)
    assert str(err.value).count("\n") == 0


def test_unknown_keys_and_bad_urls_are_refused(make_config):
    with pytest.raises(ConfigError, match=r"rabbitmq.passwd: unknown key"):
        settings(make_config, {"passwd": "x"})
    with pytest.raises(ConfigError, match=r"expected http\(s\)://host:port"):
        settings(make_config, {"api_url": "localhost:15672"}).api()


def test_durations_and_sizes_are_human(make_config):
    s = settings(make_config, {"boot_timeout": "1m", "queue_policies": {"p": {
        "pattern": "x", "action": "cap", "max_length_bytes": "1G", "message_ttl": "1h"}}})
    assert s.boot_timeout == 60.0
    assert s.queue_policies["p"]["max_length_bytes"] == 1024 ** 3
    assert s.queue_policies["p"]["message_ttl"] == 3600.0
