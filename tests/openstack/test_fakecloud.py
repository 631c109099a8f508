"""The double answers the way Nova does (https://docs.openstack.org/api-ref/compute/, nova's
nova/api/openstack/compute/schemas/evacuate.py; the evacuation sequence of Masakari's
masakari/engine/drivers/taskflow/host_failure.py), through the real SDK."""
import pytest
from openstack import exceptions as sdkexc

# This file drives the SDK directly (not through autoremedy.clients.cloud, which silences
# the SDK's own deprecation chatter), so its warnings are not ours to fail on.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::PendingDeprecationWarning")


def connect(cloud, tmp_path, microversion=None):
    import openstack.config
    path = cloud.fake.clouds_yaml(tmp_path / "clouds.yaml")
    extra = {"compute_default_microversion": microversion} if microversion else {}
    region = openstack.config.OpenStackConfig(config_files=[path], load_envvars=False).get_one(
        cloud="fake", **extra)
    return openstack.connection.Connection(config=region)


@pytest.fixture
def dead_host(cloud):
    cloud.add_compute("cmp1", alive=False)
    cloud.add_compute("cmp2")
    return cloud.add_server("cmp1")


def status_of(call):
    with pytest.raises(sdkexc.HttpException) as err:
        call()
    return err.value.status_code, str(err.value)


def test_the_sdk_negotiates_the_servers_maximum_and_evacuate_rejects_force(cloud, dead_host, tmp_path):
    conn = connect(cloud, tmp_path)
    code, text = status_of(lambda: conn.compute.evacuate_server(dead_host, force=True))
    assert code == 400 and "Additional properties are not allowed ('force'" in text
    assert cloud.requests[-1][2] == (2, 95)      # the SDK posts at the negotiated version


def test_force_is_accepted_only_when_pinned_into_2_29_to_2_67(cloud, dead_host, tmp_path):
    conn = connect(cloud, tmp_path, "2.29")
    conn.compute.evacuate_server(dead_host, force=True)
    assert cloud.requests[-1][2] == (2, 29) and cloud.requests[-1][3] == {"evacuate": {"force": True}}


def test_on_shared_storage_is_required_before_2_14_and_rejected_after(cloud, dead_host, tmp_path):
    old = connect(cloud, tmp_path, "2.11")
    code, text = status_of(lambda: old.compute.evacuate_server(dead_host))
    assert code == 400 and "'onSharedStorage' is a required property" in text
    new = connect(cloud, tmp_path, "2.53")
    code, _ = status_of(lambda: new.compute.evacuate_server(dead_host, on_shared_storage=True))
    assert code == 400


def test_evacuating_from_a_live_service_or_a_busy_instance_is_refused(cloud, tmp_path):
    cloud.add_compute("cmp1")
    cloud.add_compute("cmp2")
    up = cloud.add_server("cmp1")
    conn = connect(cloud, tmp_path, "2.53")
    code, text = status_of(lambda: conn.compute.evacuate_server(up))
    assert code == 400 and "Compute service of cmp1 is still in use." in text
    cloud.hosts["cmp1"]["alive"] = False
    busy = cloud.add_server("cmp1", vm_state="building", task_state="spawning")
    code, text = status_of(lambda: conn.compute.evacuate_server(busy))
    assert code == 409 and "vm_state building" in text


def test_unforcing_is_refused_while_evacuated_instances_remain(cloud, dead_host, tmp_path):
    import time
    conn = connect(cloud, tmp_path, "2.53")
    service = list(conn.compute.services(binary="nova-compute", host="cmp1"))[0]
    conn.compute.update_service_forced_down(service, "cmp1", "nova-compute", True)
    conn.compute.evacuate_server(dead_host)
    deadline = time.monotonic() + 10
    while cloud.migrations[-1]["status"] != "done" and time.monotonic() < deadline:
        time.sleep(0.05)
    code, _ = status_of(lambda: conn.compute.update_service_forced_down(service, "cmp1", "nova-compute", False))
    assert code == 400
    assert [m.status for m in conn.compute.migrations(migration_type="evacuation")] == ["done"]


def test_the_host_filter_trap_is_real(cloud, dead_host, tmp_path):
    """Why the code lists with compute_host=: host= sends ?host= but filters the
    result again client-side on an attribute that is never set (openstacksdk 4.22, measured)."""
    conn = connect(cloud, tmp_path, "2.53")
    assert list(conn.compute.servers(details=True, all_projects=True, host="cmp1")) == []
    assert [s.id for s in conn.compute.servers(details=True, all_projects=True, compute_host="cmp1")] == [dead_host]


def test_keystone_needs_its_token_and_the_legacy_service_routes_work(cloud, dead_host, tmp_path):
    import requests
    assert requests.get(f"{cloud.fake.url}/compute/v2.1/os-services", timeout=5).status_code == 401
    conn = connect(cloud, tmp_path, "2.11")          # below 2.53: PUT /os-services/force-down
    conn.compute.update_service_forced_down(None, "cmp1", "nova-compute", True)
    conn.compute.disable_service(None, "cmp1", "nova-compute", disabled_reason="legacy")
    svc = cloud.service_of("cmp1")
    assert svc["forced_down"] and svc["disabled_reason"] == "legacy"
    assert cloud.calls("PUT", "/os-services/force-down") and cloud.calls("PUT", "/os-services/disable-log-reason")
