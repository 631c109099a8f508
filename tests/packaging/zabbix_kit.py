"""The real Zabbix the packaging tests share: the stack brought up once per session
(tests/packaging/conftest.py, fixture ``zabbix``) and the operator's steps on it
(zabbix-setup, a host linked to the node template, the alert script's
configuration), used by test_pkg_zabbix.py, test_zabbix_docs.py and
test_zabbix_e2e.py. The stack itself is zabbix_stack.py."""
import contextlib
import os
import pwd
import subprocess
import sys
import time

import yaml

from pkgenv import AUTOREMEDY, PACKAGING, machine_lock, need

ZABBIX = os.path.join(PACKAGING, "zabbix")
ADMIN = {"AUTOREMEDY_ZABBIX_PASSWORD": "zabbix"}     # the frontend's stock Admin password (setup_cmd's env)
API_KEY = "ci-api-key"


def base_config(stack):
    """The stack's node configuration as test_pkg_zabbix.py expects it: one watched
    process that never runs (ar-dead), remediation planned only (dry_run)."""
    return {
        "state_dir": stack.path("state"),
        "checks": {"process": {"watch": [{"name": "ar-dead", "cmdline": stack.token}]}},
        # The node hook's --target must be in the allowlist before any probe runs
        # (handlers/hook.py), as on an operator's node. dry_run: a hook that could
        # not forward would only plan the restart.
        "remediations": {"process": {"enabled": True, "dry_run": True, "targets": {"ar-dead": {
            "start": [sys.executable, "-c", "import time; time.sleep(600)"],
            "check": {"cmdline": stack.token}}}}},
    }


@contextlib.contextmanager
def running_stack(unpacked_asset, artefacts):
    """Zabbix server + agent + frontend API, the scripts run from the unpacked Sensu
    asset as the zabbix user runs them; AUTOREMEDY_CONFIG (``stack.config``) is the
    node configuration the agent's checks and the alert script read."""
    for tool in ("/usr/sbin/zabbix_server", "/usr/sbin/zabbix_agentd", "zabbix_get", "php", "mariadb"):
        need(tool)
    from zabbix_stack import Stack
    base = artefacts / "zabbix"
    (base / "state").mkdir(parents=True)
    config = base / "autoremedy.yaml"
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "AUTOREMEDY_CONFIG": str(config)}
    stack = Stack(base, str(unpacked_asset / "bin" / "autoremedy"), env)
    stack.token = f"ar-ci-daemon-{os.getpid()}"
    stack.config = config
    config.write_text(yaml.safe_dump(base_config(stack)))
    # One Zabbix per machine (fixed ports, the shared database, the frontend's
    # /etc/zabbix/zabbix.conf.php): another session's stack is waited for.
    with machine_lock("zabbix"):
        try:
            stack.start(PACKAGING)
        except Exception:
            stack.stop()
            raise
        try:
            yield stack
        finally:
            stack.stop()


def setup_cmd(*extra, env=None):
    """`autoremedy zabbix-setup` against the stack's frontend, the definitions from the checkout."""
    from zabbix_stack import API_URL
    return subprocess.run([AUTOREMEDY, "zabbix-setup", "--url", API_URL, "--source", ZABBIX, *extra],
                          capture_output=True, text=True, env=dict(os.environ, **(env or {})))


def wire_alert_script(zabbix, url):
    """What an operator's Zabbix server has for `--via script`: the configuration
    the alert script reads (the stack's AUTOREMEDY_CONFIG) names StackStorm and an
    API key file the zabbix user can read and nobody else. zabbix-setup verifies it
    (and fails, exit 4, while an alert would fall back for lack of it)."""
    key = zabbix.path("st2.key")
    with open(key, "w") as handle:
        handle.write(f"{API_KEY}\n")
    user = pwd.getpwnam("zabbix")
    os.chown(key, user.pw_uid, user.pw_gid)
    os.chmod(key, 0o600)
    config = yaml.safe_load(zabbix.config.read_text())
    config["stackstorm"] = {"url": url, "api_key_file": key}
    zabbix.config.write_text(yaml.safe_dump(config))
    return ["--node-config", str(zabbix.config)]


def reload_config_cache(zabbix):
    """The server picks up new actions, media and hosts now, not after CacheUpdateFrequency."""
    subprocess.run(["/usr/sbin/zabbix_server", "-c", zabbix.path("zabbix_server.conf"), "-R",
                    "config_cache_reload"], capture_output=True)


def host_with_template(api, macros, templates=("autoremedy node",)):
    """The agent's host, linked to the node template only (what an operator links
    to every node)."""
    from zabbix_stack import AGENT_PORT, HOSTNAME
    forget_host(api)
    group = api.hostgroup.get(filter={"name": ["Linux servers"]}, output=["groupid"])[0]["groupid"]
    linked = [{"templateid": t["templateid"]}
              for t in api.template.get(filter={"host": list(templates)}, output=["templateid"])]
    assert len(linked) == len(templates)
    host = api.host.create(host=HOSTNAME, groups=[{"groupid": group}], templates=linked,
                           interfaces=[{"type": 1, "main": 1, "useip": 1, "ip": "127.0.0.1", "dns": "",
                                        "port": str(AGENT_PORT)}],
                           macros=[{"macro": k, "value": v} for k, v in macros.items()])
    return host["hostids"][0]


def forget_host(api):
    """The agent's host deleted, if an earlier module left it (every module that
    links templates uses the same host name, the agent's)."""
    from zabbix_stack import HOSTNAME
    for old in api.host.get(filter={"host": [HOSTNAME]}, output=["hostid"]):
        api.host.delete(old["hostid"])


def settle_alerts(api, timeout=60):
    """Wait (bounded, best effort) until Zabbix holds no alert still to be sent
    (status 0 "not sent" or 3 "new"): an alert of an earlier module's host that the
    alerters had already taken would otherwise run against the next module's
    StackStorm double. Returns what is still pending (empty when settled)."""
    deadline = time.monotonic() + timeout
    while True:
        pending = api.alert.get(filter={"status": [0, 3]}, output=["alertid", "eventid", "status"])
        if not pending or time.monotonic() > deadline:
            return pending
        time.sleep(0.5)


def newest_event(api):
    """The highest event id Zabbix has given so far (0 on a new database): events
    raised later belong to whatever was set up after this call."""
    found = api.event.get(output=["eventid"], sortfield=["eventid"], sortorder="DESC", limit=1)
    return int(found[0]["eventid"]) if found else 0


def problem_id(event):
    """The problem's Zabbix event id that a forwarded event belongs to: its own for
    a problem, the incident's for a recovery or an update."""
    extra = event.get("extra") or {}
    incident = extra.get("incident_id") or ""
    if incident.startswith("zabbix-"):
        return int(incident.split("-")[1])
    return int(extra["event_id"]) if str(extra.get("event_id", "")).isdigit() else None


def updates_of(st2, eventid):
    """The bodies at the StackStorm double that are updates of problem ``eventid``."""
    return [a["body"] for a in st2.accepted() if a["body"]["event"]["action"] == "update"
            and a["body"]["event"]["extra"].get("incident_id") == f"zabbix-{eventid}"]


def event_started(api, eventid):
    """The problem's start as the handler reads {EVENT.DATE} {EVENT.TIME}: local time."""
    return int(api.event.get(eventids=eventid, output=["clock"])[0]["clock"])


def history(api, hostid, key, kind):
    """The newest value of item ``key`` on the host (history ``kind``: 0 float, 3 unsigned, 4 text)."""
    items = api.item.get(hostids=hostid, filter={"key_": key}, output=["itemid", "state", "error"])
    if not items:
        return None
    values = api.history.get(itemids=items[0]["itemid"], history=kind, sortfield="clock", sortorder="DESC", limit=1)
    return values[0]["value"] if values else None


def fake_daemon(argv0):
    """A process the process check finds by ``--cmdline argv0`` (anchored: argv[0] is the token)."""
    return subprocess.Popen([argv0, "-c", "import time; time.sleep(600)"], executable=sys.executable)


def stop(proc):
    proc.kill()
    proc.wait()
