"""Records of the ids in a bundle and their disagreements with the logs.

Fast cases through a stand-in of the openstacksdk proxies the fetcher calls
(compute.get_server / server_actions / get_server_action / migrations,
network.get_port, block_storage.get_volume); real Nova answers the same calls in
test_records_real_nova.py."""
from types import SimpleNamespace as NS

from autoremedy.collection import records
from autoremedy.collection.collect import Row

INSTANCE = "6f9a3c2e-1b4d-4e8f-9a7b-2c3d4e5f6a7b"
PORT = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"
VOLUME = "7c7c7c7c-1111-4222-8333-444444444444"
REQ = "req-c0c0c0c0-c0c0-4c0c-8c0c-c0c0c0c0c0c0"


class NotFoundException(Exception):
    status_code = 404


class Conn:
    def __init__(self, servers=(), ports=(), volumes=(), actions=None):
        self.servers = {s.id: s for s in servers}
        self.ports = {p.id: p for p in ports}
        self.volumes = {v.id: v for v in volumes}
        self.actions = actions or {}
        self.compute = NS(get_server=self._get(self.servers), server_actions=self._actions,
                          get_server_action=self._action, migrations=lambda **kw: [])
        self.network = NS(get_port=self._get(self.ports))
        self.block_storage = NS(get_volume=self._get(self.volumes))

    @staticmethod
    def _get(table):
        def get(ident):
            if ident not in table:
                raise NotFoundException(f"No Resource found for {ident}")
            return table[ident]
        return get

    def _actions(self, server):
        return [NS(action=a["action"], request_id=a["request_id"], start_time="t", message=None,
                   user_id="u") for a in self.actions.get(server, [])]

    def _action(self, request_id, server):
        action = next(a for a in self.actions[server] if a["request_id"] == request_id)
        return NS(events=action["events"])


def row(service, host, level, *ids):
    return Row(service, host, 0.0, "line", level, "oslo", {i: "x" for i in ids})


def server(status="ACTIVE", host="cmp1", task=None, fault=None):
    return NS(id=INSTANCE, name="vm", status=status, vm_state=status.lower(), task_state=task,
              power_state=1, compute_host=host, updated_at="t", fault=fault)


def test_an_untyped_uuid_is_tried_as_server_then_port_then_volume():
    conn = Conn(ports=[NS(id=PORT, status="ACTIVE", binding_host_id="cmp1", device_id=INSTANCE,
                          device_owner="compute:nova", network_id="n")])
    fetcher = records.Fetcher(conn)
    got = records.fetch(fetcher, {PORT: "resource"})
    assert got[PORT]["kind"] == "port" and got[PORT]["record"]["binding_host_id"] == "cmp1"
    assert fetcher.calls == 2


def test_the_host_in_the_logs_and_the_host_in_nova_disagree():
    got = records.fetch(records.Fetcher(Conn(servers=[server(host="cmp5")])), {INSTANCE: "instance"})
    found = records.disagreements(got, [row("nova-compute", "cmp3", "INFO", INSTANCE)])
    assert [(d["rule"], d["text"]) for d in found] == [
        ("host", f"nova-compute on cmp3 logs about instance {INSTANCE}; Nova says its host is cmp5")]


def test_an_error_nova_records_but_the_logs_do_not_show_and_the_reverse():
    faulty = server(status="ERROR", fault={"message": "No valid host was found."})
    got = records.fetch(records.Fetcher(Conn(servers=[faulty])), {INSTANCE: "instance"})
    found = records.disagreements(got, [row("nova-compute", "cmp1", "INFO", INSTANCE)])
    assert found[0]["text"] == (f"Nova says instance {INSTANCE} is ERROR (No valid host was found.); "
                                "no error line in the window mentions it")
    got = records.fetch(records.Fetcher(Conn(servers=[server()])), {INSTANCE: "instance"})
    found = records.disagreements(got, [row("nova-compute", "cmp1", "ERROR", INSTANCE)])
    assert found[0]["rule"] == "error hidden" and "Nova says ACTIVE with no task and no fault" in found[0]["text"]
    # agreement: both say error
    got = records.fetch(records.Fetcher(Conn(servers=[faulty])), {INSTANCE: "instance"})
    assert records.disagreements(got, [row("nova-compute", "cmp1", "ERROR", INSTANCE)]) == []


def test_an_action_that_failed_for_a_request_whose_lines_show_no_error():
    actions = {INSTANCE: [{"action": "reboot", "request_id": REQ,
                           "events": [{"event": "compute_reboot_instance", "result": "Error"}]}]}
    got = records.fetch(records.Fetcher(Conn(servers=[server()], actions=actions)), {INSTANCE: "instance"})
    assert got[INSTANCE]["record"]["actions"][0]["events"][0]["result"] == "Error"
    found = records.disagreements(got, [row("nova-api", "ctl", "INFO", REQ, INSTANCE)])
    assert [d["rule"] for d in found] == ["action"] and "compute_reboot_instance" in found[0]["text"]


def test_a_port_down_under_an_active_instance_and_bound_elsewhere():
    port = NS(id=PORT, status="DOWN", binding_host_id="cmp9", device_id=INSTANCE, device_owner="compute:nova",
              network_id="n")
    got = records.fetch(records.Fetcher(Conn(servers=[server()], ports=[port])),
                        {INSTANCE: "instance", PORT: "port"})
    rules = sorted(d["text"] for d in records.disagreements(got, []))
    assert rules == [f"port {PORT} is DOWN while its instance {INSTANCE} is ACTIVE",
                     f"port {PORT} is bound to cmp9; its instance runs on cmp1"]


def test_a_volume_in_error_and_ids_the_cloud_does_not_know():
    vol = NS(id=VOLUME, status="error_detaching", attachments=[])
    got = records.fetch(records.Fetcher(Conn(volumes=[vol])), {VOLUME: "volume", PORT: "port"})
    assert PORT not in got
    assert records.disagreements(got, []) == [{"id": VOLUME, "rule": "volume",
                                               "text": f"volume {VOLUME} is error_detaching"}]


def test_fetching_is_bounded():
    fetcher = records.Fetcher(Conn(servers=[server()]))
    ids = {f"{i:08d}-0000-4000-8000-000000000000": "resource" for i in range(80)}
    records.fetch(fetcher, ids, max_records=5)
    assert fetcher.calls == 5 * 3      # five ids tried, each as server, port and volume
    fetcher = records.Fetcher(Conn(servers=[server()]))
    got = records.fetch(fetcher, dict(ids, **{INSTANCE: "instance"}), max_records=1)
    assert list(got) == [INSTANCE]     # instances first


def test_an_api_failure_is_kept_with_the_id_not_raised():
    class Broken(Conn):
        def __init__(self):
            super().__init__()
            self.compute = NS(get_server=self._boom)

        @staticmethod
        def _boom(ident):
            raise RuntimeError("500 Internal Server Error")
    got = records.fetch(records.Fetcher(Broken()), {INSTANCE: "instance"})
    assert got[INSTANCE] == {"kind": "server", "error": "RuntimeError: 500 Internal Server Error"}
