"""The galera rule routes UNKNOWN too: a crashed node's own check cannot connect,
and when the whole cluster crashes every check is UNKNOWN. The remediation reads
every node itself and only acts on a proven crash (docs/mysql.md); the
verification judges the whole cluster (``check galera --cluster TARGET``)."""
import pytest

from test_rule_chain import post, sensu_go, zabbix_alert  # noqa: F401 (post is a fixture)


@pytest.mark.parametrize("status, expected", [(2, ["galera"]), (3, ["galera"]),
                                              (1, [])])
def test_galera_failures_and_unknowns_reach_the_galera_rule(engine, post, status, expected):  # noqa: F811
    body = post("sensu", sensu_go(status, autoremedy_class="galera", autoremedy_target="openstack-db"))
    enforced = engine.enforce(body)
    assert [e["rule"] for e in enforced] == expected, enforced
    assert [e for e in enforced if "error" in e] == []
    for entry in enforced:
        if entry["rule"] == "galera":
            assert (entry["params"]["cls"], entry["params"]["target"], entry["params"]["check_args"]) == \
                ("galera", "openstack-db", "--cluster openstack-db")


def test_a_zabbix_galera_node_that_cannot_be_checked_reaches_the_galera_rule(engine, post):  # noqa: F811
    body = post("zabbix", zabbix_alert("1", autoremedy_class="galera", autoremedy_target="openstack-db",
                                       autoremedy_status="3"))
    assert "galera" in [e["rule"] for e in engine.enforce(body)]
