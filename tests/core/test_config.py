import pytest

from autoremedy.config import Config, ConfigError, Duration, Map, env_overrides, section, state_dir


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return str(path)


def test_missing_default_file_means_defaults(monkeypatch):
    monkeypatch.setattr("autoremedy.config.DEFAULT_PATH", "/nonexistent/autoremedy.yaml")
    config = Config.load(environ={})
    assert config.path is None and config.get("stackstorm.url") == "" and config.dry_run is False
    assert config.get("stackstorm.connect_timeout") <= 2 and config.get("stackstorm.read_timeout") <= 5


def test_an_explicit_missing_file_is_an_error():
    with pytest.raises(ConfigError, match="no such configuration file"):
        Config.load("/nonexistent/x.yaml", environ={})


@pytest.mark.parametrize("text,message", [
    ("stackstorm: {urll: x}", "stackstorm.urll: unknown key"),
    ("stackstorm: {connect_timeout: soon}", "stackstorm.connect_timeout: expected a number, got 'soon'"),
    ("guards: {rate_limit: {max: yes}}", "guards.rate_limit.max: expected an integer, got True"),
    ("guards: {rate_limit: {per: 3 fortnights}}", "guards.rate_limit.per: invalid duration"),
    ("dry_run: 3", "dry_run: expected true or false"),
    ("- a\n- b", "the top level must be a mapping"),
    ("a: [b", "not valid YAML (line"),
    ("routes: [{check: x, klass: y}]", "routes[0].klass: unknown key"),
])
def test_bad_configuration_names_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        Config.load(write(tmp_path, text), environ={})
    assert message in str(err.value)
    assert str(tmp_path) in str(err.value)


def test_environment_overrides_the_file(tmp_path):
    path = write(tmp_path, "stackstorm: {url: https://file, webhook: w}\nstate_dir: /from/file\n")
    env = {"AUTOREMEDY_ST2_URL": "https://env", "AUTOREMEDY_STATE_DIR": "/from/env",
           "AUTOREMEDY_DRY_RUN": "yes", "AUTOREMEDY_ST2_VERIFY": "/etc/ca.pem"}
    config = Config.load(path, environ=env)
    assert config.get("stackstorm.url") == "https://env"
    assert config.get("stackstorm.webhook") == "w"
    assert config.state_dir == "/from/env" and config.dry_run is True
    assert config.get("stackstorm.verify") == "/etc/ca.pem"
    assert env_overrides({"AUTOREMEDY_ST2_VERIFY": "false"})["stackstorm"]["verify"] is False


def test_config_from_environment_variable(tmp_path):
    path = write(tmp_path, "state_dir: /x\n")
    assert Config.load(environ={"AUTOREMEDY_CONFIG": path}).state_dir == "/x"
    assert state_dir({"AUTOREMEDY_CONFIG": path}) == "/x"
    assert state_dir({"AUTOREMEDY_STATE_DIR": "/y", "AUTOREMEDY_CONFIG": path}) == "/y"


def test_durations_and_sizes_are_converted(tmp_path):
    config = Config.load(write(tmp_path, "guards: {rate_limit: {max: 2, per: 15m}}\n"), environ={})
    assert config.get("guards.rate_limit") == {"max": 2, "per": 900.0}


def test_class_guards_overlay_the_defaults(tmp_path):
    config = Config.load(write(tmp_path, "remediations: {disk: {guards: {rate_limit: {max: 1}}}}\n"),
                         environ={})
    guards = config.guards("disk")
    assert guards["rate_limit"]["max"] == 1 and guards["rate_limit"]["per"] == 3600.0
    assert guards["global_cap"]["max"] == 10


def test_api_key_from_environment_or_file_never_argv(tmp_path):
    key = tmp_path / "key"
    key.write_text("s3cret\n")
    config = Config.load(write(tmp_path, f"stackstorm: {{api_key_file: {key}}}\n"), environ={})
    assert config.st2_api_key() == "s3cret"
    env = {"AUTOREMEDY_ST2_API_KEY": "fromenv"}
    assert Config.load(write(tmp_path, f"stackstorm: {{api_key_file: {key}}}\n"), environ=env).st2_api_key() == "fromenv"
    missing = Config.load(write(tmp_path, "stackstorm: {api_key_file: /nonexistent}\n"), environ={})
    with pytest.raises(ConfigError, match="api_key_file /nonexistent"):
        missing.st2_api_key()


# --- configmod.section: the one way a module reads its section ------------------

SCHEMA = {"timeout": Duration, "hosts": Map({"port": int}), "name": str}
DEFAULTS = {"timeout": 5.0, "hosts": {"a": {"port": 1}}}


def test_an_absent_section_is_its_defaults_and_they_stay_untouched(tmp_path):
    config = Config.load(write(tmp_path, "state_dir: /tmp\n"), environ={})
    got = section(config, "nested.part", SCHEMA, DEFAULTS)
    assert got == DEFAULTS and got is not DEFAULTS
    got["hosts"]["a"]["port"] = 2
    assert DEFAULTS["hosts"]["a"]["port"] == 1
    assert section(config, "nested.part", SCHEMA) == {}


def test_a_dotted_section_is_validated_and_merged_over_the_defaults(tmp_path):
    config = Config({"state_dir": "/tmp", "openstack": {"part": {"timeout": "1m",
                                                                  "hosts": {"b": {"port": 2}}}}})
    got = section(config, "openstack.part", SCHEMA, DEFAULTS)
    assert got == {"timeout": 60.0, "hosts": {"a": {"port": 1}, "b": {"port": 2}}}


def test_errors_name_the_file_and_the_dotted_key(tmp_path):
    path = write(tmp_path, "state_dir: /tmp\nrabbitmq: {part: {hosts: {b: {port: x}}}}\n")
    with pytest.raises(ConfigError) as err:
        section(Config.load(path, environ={}), "rabbitmq.part", SCHEMA, DEFAULTS)
    assert str(err.value) == f"{path}: rabbitmq.part.hosts.b.port: expected an integer, got 'x'"
    with pytest.raises(ConfigError, match=r"^configuration: rabbitmq: expected a mapping, got list$"):
        section(Config({"rabbitmq": [1]}), "rabbitmq", SCHEMA)


def test_the_rules_across_keys_run_on_the_merged_section_and_their_errors_name_the_file(tmp_path):
    seen = []

    def rules(merged):
        seen.append(merged)
        if merged["timeout"] > 10:
            raise ConfigError("mysql.timeout: more than the 10 s allowed")

    path = write(tmp_path, "state_dir: /tmp\nmysql: {timeout: 1m}\n")
    with pytest.raises(ConfigError) as err:
        section(Config.load(path, environ={}), "mysql", SCHEMA, DEFAULTS, rules=rules)
    assert str(err.value) == f"{path}: mysql.timeout: more than the 10 s allowed"
    assert seen == [{"timeout": 60.0, "hosts": {"a": {"port": 1}}}]
