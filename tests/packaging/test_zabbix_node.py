"""zabbix-setup --via script wires the configuration the alert script reads
(autoremedy.zabbix_node), on real files and real users, without a Zabbix."""
import os
import pwd
import stat

import pytest
import yaml

from pkgenv import PACKAGING

from autoremedy import zabbix_node


def sample_text():
    with open(os.path.join(PACKAGING, "autoremedy.yaml.sample"), encoding="utf-8") as handle:
        return handle.read()


def test_edit_keeps_comments_and_changes_only_the_two_keys():
    text = sample_text()
    new = zabbix_node.edit_stackstorm(text, {"url": "https://st2.example.net",
                                             "api_key_file": "/etc/autoremedy/st2-api-key"})
    before, after = yaml.safe_load(text), yaml.safe_load(new)
    assert after["stackstorm"]["url"] == "https://st2.example.net"
    after["stackstorm"]["url"] = before["stackstorm"]["url"]
    assert after == before
    comments = [line for line in text.splitlines() if line.lstrip().startswith("#")]
    assert comments == [line for line in new.splitlines() if line.lstrip().startswith("#")]


@pytest.mark.parametrize("text", ["", "state_dir: /var/lib/x\n", "stackstorm:\n  webhook: w\nother: 1\n"])
def test_edit_adds_what_is_missing(text):
    new = zabbix_node.edit_stackstorm(text, {"url": "http://u", "api_key_file": "/k"})
    data = yaml.safe_load(new)
    assert data["stackstorm"]["url"] == "http://u" and data["stackstorm"]["api_key_file"] == "/k"


def test_edit_refuses_a_layout_it_cannot_keep():
    with pytest.raises(zabbix_node.NodeError, match="by hand"):
        zabbix_node.edit_stackstorm("stackstorm: {webhook: w}\n", {"url": "http://u"})


@pytest.fixture
def base():
    """pytest's tmp_path has 0700 parents: a directory the zabbix user can enter."""
    import shutil
    import tempfile
    path = tempfile.mkdtemp(prefix="ar-node-")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_wire_writes_url_and_key_then_verifies_as_the_alert_user(base):
    config = os.path.join(base, "autoremedy.yaml")
    key_file = os.path.join(base, "st2-api-key")
    with open(config, "w") as handle:
        handle.write(sample_text().replace("/etc/autoremedy/st2-api-key", key_file))
    lines = []
    zabbix_node.wire(config, "zabbix", "http://st2.example.net:9101", "s3cret", lines.append)
    assert lines[0] == f"node configuration {config}: stackstorm.url = http://st2.example.net:9101"
    assert lines[1].startswith(f"API key file {key_file}: written (root:")
    assert lines[2].startswith(f"node configuration {config}: verified for zabbix")
    st = os.stat(key_file)
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_uid == 0
    assert open(key_file).read() == "s3cret\n"
    # Idempotent: a second run changes nothing and says so.
    again = []
    zabbix_node.wire(config, "zabbix", "http://st2.example.net:9101", "s3cret", again.append)
    assert again[0].endswith("already http://st2.example.net:9101") and "kept" in again[1]


def test_verify_refuses_what_would_make_alerts_fall_back(base):
    config = os.path.join(base, "autoremedy.yaml")
    with open(config, "w") as handle:
        handle.write(sample_text())                       # url: "" as shipped
    os.chmod(config, 0o644)
    user = zabbix_node.User("zabbix")
    with pytest.raises(zabbix_node.NodeError, match="stackstorm.url is empty"):
        zabbix_node.verify(config, user)
    key_file = os.path.join(base, "key")
    with open(config, "w") as handle:
        handle.write(f"stackstorm:\n  url: http://st2\n  api_key_file: {key_file}\n")
    with pytest.raises(zabbix_node.NodeError, match="does not exist"):
        zabbix_node.verify(config, user)
    with open(key_file, "w") as handle:
        handle.write("k\n")
    os.chmod(key_file, 0o644)
    with pytest.raises(zabbix_node.NodeError, match="readable by everyone"):
        zabbix_node.verify(config, user)
    os.chmod(key_file, 0o600)                             # root only: zabbix cannot read it
    with pytest.raises(zabbix_node.NodeError, match="zabbix cannot read"):
        zabbix_node.verify(config, user)
    nobody = pwd.getpwnam("nobody")
    os.chown(key_file, nobody.pw_uid, nobody.pw_gid)
    with pytest.raises(zabbix_node.NodeError, match="owned by uid"):
        zabbix_node.verify(config, user)
    os.chown(key_file, 0, user.key_group())
    os.chmod(key_file, 0o640)
    zabbix_node.verify(config, user)
    os.chmod(config, 0o600)
    with pytest.raises(zabbix_node.NodeError, match="zabbix cannot read"):
        zabbix_node.verify(config, user)
