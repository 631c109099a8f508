"""Fake ``ping``, ``ipmitool`` and ``virsh`` executables for the subprocess boundary.

autoremedy.contract.execute runs programs with a clean environment whose PATH comes from
``AUTOREMEDY_EXEC_PATH``; the tests put this directory first on it. Each fake
reads its state from a JSON file next to it (the clean environment carries no
variables), so a test changes the world by rewriting that file, and every call
is appended to ``calls.log`` for assertions.

- ping: ``{"ping": {"<address>": true|false}}``; unknown addresses get no reply.
  Exit 0 on reply, 1 on none (iputils' codes).
- ipmitool: ``{"power": {"<bmc>": "on"|"off"|"silent"}}``; ``chassis power
  status|off|on``; "silent" = BMC unreachable (exit 1).
- virsh: ``{"domains": [{"uuid", "name", "state"}]}``; ``list --all`` (table),
  ``list --all --uuid``, ``list --all --name``, ``domstate``, ``dominfo``.
- systemctl: records the call, exits 0; ``restart <unit>`` of a unit in
  ``{"restart_hooks": {"<unit>": "<url>"}}`` first POSTs to that URL (the fake
  cloud's nova-compute restart, fakecloud.py) and removes the domains of the
  instances whose delete it resumed.
"""
import json
import os
import stat
import sys

PING = r'''
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
state = json.load(open(os.path.join(here, "state.json")))
open(os.path.join(here, "calls.log"), "a").write(json.dumps(["ping"] + sys.argv[1:]) + "\n")
address = sys.argv[-1]
if state.get("ping", {}).get(address):
    print(f"PING {address}: 3 packets transmitted, 3 received, 0% packet loss")
    sys.exit(0)
print(f"PING {address}: 3 packets transmitted, 0 received, 100% packet loss")
sys.exit(1)
'''

IPMITOOL = r'''
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
path = os.path.join(here, "state.json")
state = json.load(open(path))
open(os.path.join(here, "calls.log"), "a").write(json.dumps(["ipmitool"] + sys.argv[1:]) + "\n")
args = sys.argv[1:]
bmc = args[args.index("-H") + 1]
power = state.setdefault("power", {}).get(bmc, "silent")
if power == "silent":
    sys.stderr.write(f"Error: Unable to establish IPMI v2 / RMCP+ session\n")
    sys.exit(1)
if args[-3:] == ["chassis", "power", "status"]:
    print(f"Chassis Power is {power}")
elif args[-3:] == ["chassis", "power", "off"]:
    state["power"][bmc] = "off"
    json.dump(state, open(path, "w"))
    print("Chassis Power Control: Down/Off")
elif args[-3:] == ["chassis", "power", "on"]:
    state["power"][bmc] = "on"
    json.dump(state, open(path, "w"))
    print("Chassis Power Control: Up/On")
else:
    sys.stderr.write("unsupported\n")
    sys.exit(1)
'''

VIRSH = r'''
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
state = json.load(open(os.path.join(here, "state.json")))
open(os.path.join(here, "calls.log"), "a").write(json.dumps(["virsh"] + sys.argv[1:]) + "\n")
args = [a for a in sys.argv[1:] if a not in ("-r", "--readonly", "-q", "--quiet")]
if state.get("virsh_error"):
    sys.stderr.write("error: failed to connect to the hypervisor\n")
    sys.exit(1)
domains = state.get("domains", [])
running = [d for d in domains if d["state"] == "running"]
if args and args[0] == "list":
    shown = domains if "--all" in args else running
    if "--uuid" in args:
        print("\n".join(d["uuid"] for d in shown) + ("\n" if shown else ""))
    elif "--name" in args:
        print("\n".join(d["name"] for d in shown) + ("\n" if shown else ""))
    else:
        print(" Id   Name                State")
        print("-----------------------------------")
        for i, d in enumerate(shown, 1):
            ident = str(i) if d["state"] in ("running", "paused") else "-"
            print(f" {ident:<4} {d['name']:<19} {d['state']}")
        print()
    sys.exit(0)
if args and args[0] in ("domstate", "dominfo", "domuuid"):
    key = args[1]
    for d in domains:
        if key in (d["uuid"], d["name"]):
            if args[0] == "domstate":
                print(d["state"]); print()
            elif args[0] == "domuuid":
                print(d["uuid"]); print()
            else:
                print(f"Name:           {d['name']}")
                print(f"UUID:           {d['uuid']}")
                print(f"State:          {d['state']}")
                print()
            sys.exit(0)
    sys.stderr.write(f"error: failed to get domain '{key}'\n")
    sys.exit(1)
sys.stderr.write("error: unknown command\n")
sys.exit(1)
'''

SYSTEMCTL = r'''
import json, os, sys, urllib.request
here = os.path.dirname(os.path.abspath(__file__))
path = os.path.join(here, "state.json")
open(os.path.join(here, "calls.log"), "a").write(json.dumps(["systemctl"] + sys.argv[1:]) + "\n")
args = sys.argv[1:]
state = json.load(open(path))
url = state.get("restart_hooks", {}).get(args[-1]) if args[:1] == ["restart"] else None
if url:
    with urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=10) as r:
        resumed = json.load(r).get("resumed", [])
    # the driver's part of the resumed deletes: their domains are destroyed
    state = json.load(open(path))
    state["domains"] = [d for d in state.get("domains", []) if d["uuid"] not in resumed]
    json.dump(state, open(path + ".tmp", "w"))
    os.replace(path + ".tmp", path)
sys.exit(0)
'''


class FakeBin:
    def __init__(self, directory):
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        for name, body in (("ping", PING), ("ipmitool", IPMITOOL), ("virsh", VIRSH),
                           ("systemctl", SYSTEMCTL)):
            path = os.path.join(self.dir, name)
            with open(path, "w") as handle:
                handle.write(f"#!{sys.executable}\n{body}")
            os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        self.state = {"ping": {}, "power": {}, "domains": []}
        self.save()

    @property
    def path(self):
        return f"{self.dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    def save(self):
        tmp = os.path.join(self.dir, "state.json.tmp")
        with open(tmp, "w") as handle:
            json.dump(self.state, handle)
        os.replace(tmp, os.path.join(self.dir, "state.json"))

    def load(self):
        with open(os.path.join(self.dir, "state.json")) as handle:
            self.state = json.load(handle)
        return self.state

    def ping(self, address, answers):
        self.load()
        self.state["ping"][address] = answers
        self.save()

    def power(self, bmc, state):
        self.load()
        self.state["power"][bmc] = state
        self.save()

    def domains(self, domains):
        self.load()
        self.state["domains"] = domains
        self.save()

    def restart_hook(self, unit, url):
        """``systemctl restart <unit>`` POSTs to ``url`` (fakecloud: a nova-compute restart)."""
        self.load()
        self.state.setdefault("restart_hooks", {})[unit] = url
        self.save()

    def calls(self, program=None):
        path = os.path.join(self.dir, "calls.log")
        if not os.path.exists(path):
            return []
        with open(path) as handle:
            rows = [json.loads(line) for line in handle]
        return [r for r in rows if program is None or r[0] == program]
