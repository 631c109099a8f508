"""`autoremedy check compute-node` against the fake cloud, ping/IPMI fakes and the Sensu API double."""
import json
import socket

import pytest

from fakecloud import keepalive_event

from autoremedy.cli import run_check
from autoremedy.checks import compute_node as cn
from autoremedy.contract.result import Status


def check(path, *argv):
    result, _ = run_check("compute-node", ["--config", path, *argv])
    return result


def test_all_services_up_is_ok(cloud, computes, os_config):
    computes(4)
    result = check(os_config())
    assert result.status is Status.OK, result
    assert result.summary == "all 4 nova-compute service(s) up"


def test_a_dead_host_is_critical_and_named_with_its_instance_count(cloud, computes, os_config):
    computes(5, dead=["cmp2"])
    for _ in range(7):
        cloud.add_server("cmp2")
    cloud.add_server("cmp1")
    result = check(os_config())
    assert result.status is Status.CRITICAL
    assert result.summary.startswith("cmp2 dead (service down, unreachable), 7 instance(s)")
    assert {m.label: m.value for m in result.metrics}["instances_on_dead"] == 7
    assert result.data["dead"] == ["cmp2"]


def test_a_down_service_on_a_live_host_is_a_warning_not_an_evacuation(cloud, computes, os_config):
    computes(4, alive_but_down=["cmp3"])
    result = check(os_config())
    assert result.status is Status.WARNING
    assert "cmp3 nova-compute down but host alive" in result.summary
    assert "do not evacuate" in result.summary


def test_half_the_computes_down_is_reported_as_a_partition(cloud, computes, os_config):
    computes(4, dead=["cmp1", "cmp2"])
    result = check(os_config())
    assert result.status is Status.CRITICAL
    assert result.summary.startswith("probable partition: 2 of 4 computes down")
    assert result.data["partition"] is True


def test_a_passing_sensu_keepalive_means_alive(cloud, computes, os_config, tmp_path):
    computes(4, dead=["cmp1", "cmp4"])
    cloud.sensu_events[("prod", "cmp1.example")] = keepalive_event("cmp1.example", 0, "prod")
    cloud.sensu_events[("prod", "cmp4.example")] = keepalive_event("cmp4.example", 2, "prod")
    key = tmp_path / "sensu.key"
    key.write_text(cloud.sensu_key + "\n")
    path = os_config({"openstack": {"sensu": {"url": cloud.fake.url, "namespace": "prod",
                                              "entity": "{host}.example", "api_key_file": str(key)}}})
    result = check(path, "--max-down-share", "0.9")
    by_host = {h["host"]: h for h in result.data["hosts"]}
    assert by_host["cmp1"]["verdict"] == cn.ALIVE and by_host["cmp1"]["keepalive"] == 0
    assert by_host["cmp4"]["verdict"] == cn.DEAD and by_host["cmp4"]["keepalive"] == 2
    assert "keepalive failing" in result.summary


def test_sensu_keepalive_needs_the_api_key(cloud, tmp_path):
    key = tmp_path / "wrong.key"
    key.write_text("not-the-key")
    conf = {"url": cloud.fake.url, "namespace": "default", "api_key_file": str(key)}
    assert cn.keepalive(conf, "cmp1") == (None, "sensu answered 401")
    key.write_text(cloud.sensu_key)
    assert cn.keepalive(conf, "nobody") == (None, "no keepalive event")


def test_powered_off_by_ipmi_is_dead_and_a_silent_bmc_is_said(cloud, computes, os_config, fakebin):
    computes(6, dead=["cmp1", "cmp2"])
    fakebin.power("bmc-cmp1", "off")
    path = os_config({"openstack": {"compute": {
        "ipmi": {"user": "admin", "password_file": "/etc/autoremedy/ipmi.pw", "address": "bmc-{host}"}}}})
    result = check(path)
    by_host = {h["host"]: h for h in result.data["hosts"]}
    assert by_host["cmp1"]["power"] == "off" and by_host["cmp1"]["verdict"] == cn.DEAD
    assert by_host["cmp2"]["power"] is None and "power unknown (BMC silent)" in by_host["cmp2"]["evidence"]
    argv = fakebin.calls("ipmitool")[0]
    assert argv[argv.index("-f") + 1] == "/etc/autoremedy/ipmi.pw" and "-P" not in argv


def test_a_fenced_empty_host_is_ok_and_says_awaiting_repair(cloud, computes, os_config):
    computes(4, dead=["cmp1"])
    svc = cloud.service_of("cmp1")
    svc.update(forced_down=True, status="disabled",
               disabled_reason=cn.DISABLED_REASON_PREFIX + ", evacuated by autoremedy")
    result = check(os_config())
    assert result.status is Status.OK
    assert "cmp1 fenced, 0 instance(s) (awaiting repair)" in result.summary


def test_unreachable_cloud_is_unknown_with_a_reason(make_config, tmp_path):
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text("clouds:\n  gone:\n    auth_type: v3password\n    auth:\n"
                      "      auth_url: http://127.0.0.1:9/v3\n      username: a\n      password: b\n"
                      "      project_name: p\n      user_domain_name: Default\n      project_domain_name: Default\n")
    path = make_config({"openstack": {"cloud": "gone", "clouds_yaml": str(clouds), "timeout": 2}})
    result = check(path)
    assert result.status is Status.UNKNOWN
    assert "listing nova-compute services" in result.summary and "\n" not in result.summary


def test_a_bad_openstack_section_is_unknown_naming_the_key(make_config):
    path = make_config({"openstack": {"cloud": "x", "compute": {"max_down_shar": 0.5}}})
    result = check(path)
    assert result.status is Status.UNKNOWN
    assert "openstack.compute.max_down_shar: unknown key" in result.summary


@pytest.mark.parametrize("answer, expected", [
    ("connect", True), (ConnectionRefusedError(), True), (socket.timeout(), False), (OSError(113, "No route"), False)])
def test_tcp_probe_treats_a_refusal_as_a_sign_of_life(answer, expected):
    class Sock:
        def close(self):
            pass

    def connect(addr, timeout):
        if answer == "connect":
            return Sock()
        raise answer
    assert cn.tcp("10.0.0.1", 22, 1, connect=connect) is expected


@pytest.mark.integration
def test_cli_nagios_output_and_exit_code(cloud, computes, os_config, run_cli, env_for):
    computes(5, dead=["cmp4"])
    cloud.add_server("cmp4")
    ran = run_cli("check", "compute-node", "--config", os_config(), env=env_for)
    assert ran.returncode == 2, ran
    first = ran.stdout.splitlines()[0]
    assert first.startswith("COMPUTE-NODE CRITICAL: cmp4 dead (service down, unreachable), 1 instance(s)")
    assert "'dead'=1;;0;0" in first and "'instances_on_dead'=1;;;0" in first
    zbx = run_cli("check", "compute-node", "--config", os_config(), "--format", "zabbix", "--field", "dead",
                  env=env_for)
    assert zbx.returncode == 0 and zbx.stdout.strip() == "1"


def test_zabbix_discovery_lists_the_computes(cloud, computes, os_config, run_cli, env_for):
    computes(3)
    ran = run_cli("check", "compute-node", "--config", os_config(), "--discover", env=env_for)
    assert ran.returncode == 0
    assert [row["{#OS.COMPUTE}"] for row in json.loads(ran.stdout)] == ["cmp1", "cmp2", "cmp3"]
