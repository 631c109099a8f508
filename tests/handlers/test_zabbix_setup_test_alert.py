"""`zabbix-setup --via webhook --test`: the test alert runs the webhook media type's own
JavaScript in zabbix_js (Zabbix's runtime, zabbix-server package) with the parameters
setup gives it, and says what StackStorm answered. (`--via script --test` runs through
a real Zabbix in tests/packaging/test_zabbix_docs.py.)"""
import os
import shutil

import pytest

from autoremedy import zabbix_setup

from handlerkit import API_KEY


@pytest.fixture
def args(tmp_path, st2):
    if not (shutil.which("zabbix_js") or os.path.exists("/usr/sbin/zabbix_js")):
        pytest.fail("zabbix_js (zabbix-server package) is needed to run the webhook's JavaScript")
    key = tmp_path / "st2-api-key"
    key.write_text(API_KEY + "\n")
    return zabbix_setup.parser().parse_args([
        "--url", "http://zbx.example/zabbix", "--via", "webhook", "--test",
        "--st2-url", st2.url, "--st2-api-key-file", str(key)])


def mediatypes():
    return zabbix_setup.load_definitions(zabbix_setup.source_dir(None))[1]


def test_the_webhook_test_alert_reaches_stackstorm_as_a_notice(args, st2):
    said = []
    zabbix_setup.test_alert(args, mediatypes(), report=said.append)
    assert said and said[-1].startswith("test alert: webhook: ") and said[-1].endswith("OK"), said
    [got] = [a["body"] for a in st2.accepted()]
    event = got["event"]
    assert event["source"] == "zabbix" and event["labels"].get("autoremedy_test") == "zabbix-setup", got
    assert event["check"] == "autoremedy zabbix-setup test alert", got
    assert got["autoremedy"]["local"] == [] and not got["autoremedy"]["remediated_locally"]


def test_stackstorm_down_fails_the_test_alert_in_one_line(args, st2):
    st2.set_mode("down")
    said = []
    with pytest.raises(zabbix_setup.TestFailed, match="the test alert did not reach StackStorm"):
        zabbix_setup.test_alert(args, mediatypes(), report=said.append)
    assert said and said[-1].startswith("test alert: webhook: ") and not said[-1].endswith("OK"), said
    assert st2.accepted() == []


def test_a_wrong_api_key_is_refused_and_said(args, st2, tmp_path):
    (tmp_path / "st2-api-key").write_text("not-the-key\n")
    said = []
    with pytest.raises(zabbix_setup.TestFailed):
        zabbix_setup.test_alert(args, mediatypes(), report=said.append)
    assert "401" in said[-1] or "403" in said[-1], said
