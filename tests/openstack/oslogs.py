"""Real-looking nova / neutron / RabbitMQ logs around one incident, for `autoremedy collect`.

The incident: a server boot whose VIF never gets plugged because the Open
vSwitch agent lost its AMQP connection. One global request id crosses
nova-api, nova-compute and neutron-server; the port UUID crosses nova-compute,
neutron-server and the agent; the agent's AMQP client port crosses the agent
and RabbitMQ. Formats follow oslo.log's default ``logging_context_format_string``
(``%(asctime)s.%(msecs)03d %(process)d %(levelname)s %(name)s [%(global_request_id)s
%(request_id)s %(user_identity)s] %(instance)s%(message)s``; tracebacks repeat
the prefix on every line) and RabbitMQ 3.9+ (``<ISO time with offset> [level] <pid> msg``).
"""
import os
import time
import uuid

INSTANCE = "6f9a3c2e-1b4d-4e8f-9a7b-2c3d4e5f6a7b"
PORT = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"
GLOBAL_REQ = "req-11111111-2222-4333-8444-555555555555"
API_REQ = "req-aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
COMPUTE_REQ = "req-c0c0c0c0-c0c0-4c0c-8c0c-c0c0c0c0c0c0"
NEUTRON_REQ = "req-0e0e0e0e-0e0e-4e0e-8e0e-0e0e0e0e0e0e"
UNRELATED_REQ = "req-dddddddd-dddd-4ddd-8ddd-dddddddddddd"
AGENT_REQ = "req-9a9a9a9a-9a9a-49a9-89a9-9a9a9a9a9a9a"
USER = "3b7e9f2a8c4d4e6f8a1b2c3d4e5f6a7b 9c8d7e6f5a4b4c3d8e2f1a0b9c8d7e6f - default default"
CLIENT_PORT = 54321


def local(ts):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"


def utc_iso(ts):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1e6) % 1000000:06d}+00:00"


def oslo(ts, pid, level, name, message, glob=None, req=None, instance=None):
    ctx = f"[{glob or 'None'} {req} {USER}] " if req else "[-] "
    inst = f"[instance: {instance}] " if instance else ""
    return f"{local(ts)} {pid} {level} {name} {ctx}{inst}{message}"


def incident(t0):
    """{source name: [lines]} for an incident at ``t0`` plus noise before and after."""
    nova_api, nova_compute, neutron, agent, rabbit = [], [], [], [], []
    # noise well outside a 15 minute window
    for k in range(5):
        old = t0 - 7200 + k * 60
        nova_compute.append(oslo(old, 3001, "INFO", "nova.compute.resource_tracker",
                                 "Final resource view: name=cmp1.example phys_ram=262144MB used_ram=8192MB"))
        rabbit.append(f"{utc_iso(old)} [info] <0.900.0> accepting AMQP connection <0.900.0> "
                      f"(10.0.0.9:4{k}000 -> 10.0.0.5:5672)")
    nova_api.append(oslo(t0 - 120, 2211, "INFO", "nova.api.openstack.requestlog",
                         '10.0.0.2 "POST /v2.1/servers" status: 202 len: 403 microversion: 2.79 time: 0.412',
                         GLOBAL_REQ, API_REQ))
    neutron.append(oslo(t0 - 110, 1800, "INFO", "neutron.wsgi",
                        f'10.0.0.3 "PUT /v2.0/ports/{PORT} HTTP/1.1" status: 200  len: 1212 time: 0.31',
                        GLOBAL_REQ, NEUTRON_REQ))
    nova_compute.append(oslo(t0 - 100, 3001, "INFO", "nova.compute.claims", "Claim successful on node cmp1.example",
                             GLOBAL_REQ, COMPUTE_REQ, INSTANCE))
    rabbit.append(f"{utc_iso(t0 - 95)} [error] <0.1234.0> closing AMQP connection <0.1234.0> "
                  f"(10.0.0.9:48000 -> 10.0.0.5:5672 - neutron-openvswitch-agent:7:abc, vhost: '/', "
                  "user: 'neutron'):")
    rabbit.append(f"{utc_iso(t0 - 95)} [error] <0.1234.0> missed heartbeats from client, timeout: 60s")
    agent.append(oslo(t0 - 90, 4100, "ERROR", "oslo.messaging._drivers.impl_rabbit",
                      "[2c9f] AMQP server on 10.0.0.5:5672 is unreachable: timed out. Trying again in 1 seconds.",
                      None, "req-9a9a9a9a-9a9a-49a9-89a9-9a9a9a9a9a9a"))
    nova_compute.append(oslo(t0 - 80, 3001, "INFO", "nova.virt.libvirt.driver", "Creating image(s)",
                             GLOBAL_REQ, COMPUTE_REQ, INSTANCE))
    neutron.append(oslo(t0 - 70, 1800, "INFO", "neutron.plugins.ml2.plugin",
                        f"Port {PORT} bound to host cmp1 with vif_type ovs", GLOBAL_REQ, NEUTRON_REQ))
    agent.append(oslo(t0 - 30, 4100, "INFO", "oslo.messaging._drivers.impl_rabbit",
                      f"[2c9f] Reconnected to AMQP server on 10.0.0.5:5672 via [amqp] client with port {CLIENT_PORT}.",
                      None, "req-9a9a9a9a-9a9a-49a9-89a9-9a9a9a9a9a9a"))
    rabbit.append(f"{utc_iso(t0 - 30)} [info] <0.1300.0> accepting AMQP connection <0.1300.0> "
                  f"(10.0.0.9:{CLIENT_PORT} -> 10.0.0.5:5672)")
    agent.append(oslo(t0 - 20, 4100, "WARNING", "neutron.plugins.ml2.drivers.openvswitch.agent.ovs_neutron_agent",
                      f"Device {PORT} not defined on plugin or binding failed", None,
                      "req-9b9b9b9b-9b9b-49b9-89b9-9b9b9b9b9b9b"))
    nova_compute.append(oslo(t0, 3001, "WARNING", "nova.virt.libvirt.driver",
                             f"Timeout waiting for [('network-vif-plugged', '{PORT}')] for instance with "
                             "vm_state building and task_state spawning.", GLOBAL_REQ, COMPUTE_REQ, INSTANCE))
    trace = ["Instance failed to spawn: nova.exception.VirtualInterfaceCreateException: Virtual Interface creation failed",
             "Traceback (most recent call last):",
             '  File "/usr/lib/python3/dist-packages/nova/compute/manager.py", line 2743, in _build_resources',
             "    yield resources",
             "nova.exception.VirtualInterfaceCreateException: Virtual Interface creation failed"]
    for text in trace:
        nova_compute.append(oslo(t0 + 1, 3001, "ERROR", "nova.compute.manager", text,
                                 GLOBAL_REQ, COMPUTE_REQ, INSTANCE))
    neutron.append(oslo(t0 + 2, 1800, "ERROR", "neutron.notifiers.nova",
                        f"Failed to notify nova on events: [{{'server_uuid': '{INSTANCE}', 'name': "
                        f"'network-vif-deleted', 'tag': '{PORT}'}}]", GLOBAL_REQ, NEUTRON_REQ))
    # an unrelated, healthy request inside the window
    other = str(uuid.UUID(int=7))
    nova_api.append(oslo(t0 + 30, 2211, "INFO", "nova.api.openstack.requestlog",
                         f'10.0.0.2 "GET /v2.1/servers/{other}" status: 200 len: 1780 microversion: 2.79 time: 0.05',
                         None, "req-dddddddd-dddd-4ddd-8ddd-dddddddddddd"))
    # busy, healthy traffic around the incident: requests that touch nothing of it
    for k in range(NOISE_REQUESTS):
        ts = t0 - 600 + k * 20
        req = f"req-{k:08x}-eeee-4eee-8eee-eeeeeeeeeeee"
        nova_api.append(oslo(ts, 2211, "INFO", "nova.api.openstack.requestlog",
                             f'10.0.0.2 "GET /v2.1/servers/{uuid.UUID(int=1000 + k)}" status: 200 len: 1780 '
                             f'microversion: 2.79 time: 0.05', None, req))
    # noise after the window
    for k in range(3):
        nova_compute.append(oslo(t0 + 3600 + k, 3001, "INFO", "nova.compute.manager",
                                 "Running instance usage audit for host cmp1"))
    return {"nova-api": nova_api, "nova-compute": nova_compute, "neutron-server": neutron,
            "neutron-openvswitch-agent": agent, "rabbitmq": rabbit}


FILES = {"nova-api": "nova/nova-api.log", "nova-compute": "nova/nova-compute.log",
         "neutron-server": "neutron/server.log",
         "neutron-openvswitch-agent": "neutron/neutron-openvswitch-agent.log",
         "rabbitmq": "rabbitmq/rabbit@ctl1.log"}

NOISE_REQUESTS = 40

# counted from incident(): what `collect` must find in a +-15 minute window
ERROR_LINES = 1 + 2 + 5 + 1       # agent AMQP error, 2 rabbit errors, 5 traceback lines, neutron notify


def write(root, t0):
    """Write the incident's logs under ``root`` (like /var/log); return the sources config."""
    sources = []
    for name, lines in incident(t0).items():
        path = os.path.join(root, FILES[name])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        fmt = "rabbitmq" if name == "rabbitmq" else "oslo"
        sources.append({"name": name, "path": path, "format": fmt})
    return sources


def big_log(path, t0, lines=120000):
    """A large oslo log ending after t0: the window is found by bisecting, not reading it all."""
    start = t0 - lines * 0.1
    with open(path, "w") as handle:
        for i in range(lines):
            ts = start + i * 0.1
            handle.write(oslo(ts, 3001, "DEBUG", "nova.compute.manager",
                              f"noise line {i} about nothing in particular, padding padding padding") + "\n")
            if i % 5000 == 0:
                handle.write("    a continuation line without a timestamp\n")
        handle.write(oslo(t0 + 1, 3001, "ERROR", "nova.compute.manager", "the needle", GLOBAL_REQ, COMPUTE_REQ,
                          INSTANCE) + "\n")
    return path
