"""The Zabbix alert path's local fallback as Zabbix runs it: the alert script
as the real ``zabbix`` user, StackStorm unreachable, the remediation through the
packaged sudo gate (real sudo, the packaged sudoers drop-in) — so a root-owned
daemon can be brought back from an alert, as from the Sensu hook. sudo refusing
is an escalation with its reason; the audit log says the gate was used."""
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from privkit import ROOT, zabbix_argv

HOST = "cmp-07"           # the fixture alert's host: the process class acts on its own node


def daemon_config(node, gate, mode="auto", gate_command=None, settle="5s"):
    """A root daemon: its pid file lives in root's 0700 directory, where the
    zabbix user can neither write (start) nor read (check) it."""
    pidfile = os.path.join(node.outside, "svc.pid")
    start = ["/bin/sh", "-c", f"echo $$ > {pidfile}; exec /bin/sleep 600"]
    node.write_config({
        "hostname": HOST, "dry_run": False,
        "fallback": {"gate": mode, "gate_command": gate_command or gate["path"]},
        "routes": [{"source": "zabbix", "class": "process", "target": "svc"}],
        "remediations": {"process": {"enabled": True, "targets": {"svc": {
            "start": start, "check": {"pidfile": pidfile, "exe": os.path.realpath("/bin/sleep")},
            "settle": settle,
            "min_uptime": "1s"}}}}})
    shutil.copy(node.config, gate["config"])     # the gate reads root's copy
    return pidfile


def kill_daemon(pidfile):
    try:
        with open(pidfile) as handle:
            os.kill(int(handle.read().strip()), signal.SIGKILL)
    except (OSError, ValueError):
        pass


def audit(node, what):
    with open(os.path.join(node.state, "audit.log")) as handle:
        return [r for r in map(json.loads, handle) if r["what"] == what]


def verdict(ran):
    return ran.stdout.strip().splitlines()[-1]


def test_a_zabbix_alert_restarts_a_root_daemon_through_the_gate(node, gate):
    pidfile = daemon_config(node, gate)
    try:
        ran = node.run("zabbix", *zabbix_argv(), timeout=90)
        assert ran.returncode == 0, ran                      # kept for delivery: sent
        assert "internal error" not in ran.stderr and "Traceback" not in ran.stderr, ran
        assert verdict(ran).startswith("autoremedy: zabbix alert: kept for delivery "
                                       "(StackStorm: StackStorm is not configured"), ran.stdout
        assert "remediated locally: process svc: remediated: verified OK" in verdict(ran), ran
        assert "escalated" not in verdict(ran)
        # The daemon runs, as root, from root's pid file the zabbix user cannot read.
        with open(pidfile) as handle:
            pid = int(handle.read().strip())
        assert os.stat(f"/proc/{pid}").st_uid == 0
        # The spool entry carries the outcome StackStorm hears on replay.
        spool = os.path.join(node.state, "spool")
        [name] = [n for n in os.listdir(spool) if n.endswith(".json") and n[0] != "."]
        with open(os.path.join(spool, name)) as handle:
            entry = json.load(handle)
        assert [(m["class"], m["target"], m["outcome"]) for m in entry["local"]] == \
            [("process", "svc", "remediated")]
        assert entry["escalation"] is None
        # The audit log: the handler (zabbix) says it went through the gate; the
        # remediation itself is root's record, for the same event.
        [fallback] = audit(node, "fallback")
        assert fallback["via"] == "sudo-gate" and fallback["gate"] == gate["path"]
        assert fallback["gate_ran"] is True and fallback["outcome"] == "remediated"
        [run] = [r for r in audit(node, "remediation") if r["outcome"] == "remediated"]
        assert run["event_id"] == entry["id"] and run["pid"] != fallback["pid"]

        # A retry of the same alert by Zabbix: not run again, same answer.
        again = node.run("zabbix", *zabbix_argv(), timeout=60)
        assert again.returncode == 0 and "not run again" in again.stdout, again
        assert len([r for r in audit(node, "remediation") if r["outcome"] == "remediated"]) == 1
    finally:
        kill_daemon(pidfile)


def test_without_the_gate_the_zabbix_user_cannot_and_escalates(node, gate):
    """The defect this gate fixes: fallback.gate never, the same alert as zabbix
    cannot even read root's pid file, so it refuses and escalates."""
    pidfile = daemon_config(node, gate, mode="never", settle="1s")
    try:
        ran = node.run("zabbix", *zabbix_argv(), timeout=90)
        assert ran.returncode == 0, ran
        assert "escalated: process svc: refused: cannot tell the process state" in verdict(ran)
        assert "permission denied" in verdict(ran), ran.stdout
        assert not os.path.exists(pidfile)
        assert audit(node, "fallback") == []           # no gate record: ran here
    finally:
        kill_daemon(pidfile)


def test_sudo_refusing_the_gate_is_an_escalation_with_its_reason(node, gate, scratch):
    """A gate sudoers does not allow (here: the same script at another path):
    sudo -n refuses at once, and the alert says so and escalates."""
    elsewhere = os.path.join(scratch, "gate-not-in-sudoers")
    os.makedirs(elsewhere, mode=0o755, exist_ok=True)
    unlisted = os.path.join(elsewhere, "remediate")
    shutil.copy(gate["path"], unlisted)
    os.chmod(unlisted, 0o755)
    pidfile = daemon_config(node, gate, gate_command=unlisted)
    started = time.monotonic()
    ran = node.run("zabbix", *zabbix_argv(), timeout=60)
    assert time.monotonic() - started < 30           # -n: never waits for a password
    assert ran.returncode == 0, ran
    line = verdict(ran)
    assert "escalated: process svc: refused: sudo refused the gate (sudo -n " \
        f"{unlisted}): sudo: " in line, ran.stdout
    assert "ESCALATION" in ran.stderr, ran
    assert not os.path.exists(pidfile)
    [fallback] = audit(node, "fallback")
    assert fallback["via"] == "sudo-gate" and fallback["outcome"] == "refused"
    assert fallback["guard"] == "gate" and "sudo refused the gate" in fallback["reason"]
    [escalation] = audit(node, "escalation")
    assert "sudo refused the gate" in escalation["reason"]
    spool = os.path.join(node.state, "spool")
    [name] = [n for n in os.listdir(spool) if n.endswith(".json") and n[0] != "."]
    with open(os.path.join(spool, name)) as handle:
        entry = json.load(handle)
    assert "sudo refused the gate" in entry["escalation"]["reason"]


def test_the_event_guards_stop_it_before_the_gate(node, gate):
    """A maintenance file naming the event's host: judged by the handler with
    the event (the gate takes only class, target and id); sudo is never run."""
    pidfile = daemon_config(node, gate)
    maintenance = os.path.join(node.base, "maintenance")
    with open(maintenance, "w") as handle:
        handle.write(f"{HOST}\n")
    os.chmod(maintenance, 0o644)
    with open(node.config) as handle:
        data = json.load(handle)
    data["maintenance_file"] = maintenance
    node.write_config(data)
    shutil.copy(node.config, gate["config"])
    ran = node.run("zabbix", *zabbix_argv(), timeout=60)
    assert ran.returncode == 0, ran
    assert "escalated: process svc: refused: " in verdict(ran) and "maintenance" in verdict(ran)
    [fallback] = audit(node, "fallback")
    assert fallback["gate_ran"] is False and fallback["guard"] == "maintenance"
    assert audit(node, "remediation") == []          # the gate never ran
    assert not os.path.exists(pidfile)


# --- a clean-up of root's files -----------------------------------------------------

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
MiB = 1 << 20


@pytest.fixture(scope="module")
def future_gate(scratch, bundle, users):
    """The packaged gate and sudoers as the ``gate`` fixture installs them, its
    autoremedy running 10 days ahead (libfaketime, set inside the root-side
    wrapper: sudo resets the environment): the rotated logs written now are then
    old enough for the clean-up rule, by mtime and ctime alike."""
    from privkit import MAIN, PYTHON
    assert os.path.exists(LIBFAKETIME), f"{LIBFAKETIME} missing: run scripts/setup.d/50-node.sh"
    where = os.path.join(scratch, "future-gate")
    os.mkdir(where, 0o755)
    command = os.path.join(where, "autoremedy")
    with open(command, "w") as handle:
        handle.write(f"#!/bin/sh\nLD_PRELOAD={LIBFAKETIME} FAKETIME=+10d "
                     "FAKETIME_DONT_FAKE_MONOTONIC=1 NO_FAKE_STAT=1 FAKETIME_DONT_RESET=1 "
                     f"PYTHONPATH={bundle} exec {PYTHON} -S -c '{MAIN}' \"$@\"\n")
    os.chmod(command, 0o755)
    config = os.path.join(where, "autoremedy.yaml")
    with open(os.path.join(ROOT, "packaging", "sudoers", "remediate")) as handle:
        script = handle.read().replace("autoremedy=/usr/bin/autoremedy\n", f"autoremedy={command}\n") \
            .replace("config=/etc/autoremedy/autoremedy.yaml\n", f"config={config}\n")
    path = os.path.join(where, "remediate")
    with open(path, "w") as handle:
        handle.write(script)
    os.chmod(path, 0o755)
    with open(os.path.join(ROOT, "packaging", "sudoers", "autoremedy")) as handle:
        sudoers = handle.read().replace("/usr/libexec/autoremedy/remediate", path) \
            .replace("AUTOREMEDY_REMEDIATE", f"AUTOREMEDY_FUTURE_{os.getpid()}")
    staged = os.path.join(where, "sudoers")
    with open(staged, "w") as handle:
        handle.write(sudoers)
    os.chmod(staged, 0o440)
    check = subprocess.run(["visudo", "-c", "-f", staged], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    drop_in = f"/etc/sudoers.d/autoremedy-privtest-future-{os.getpid()}"
    subprocess.run(["install", "-m", "0440", staged, drop_in], check=True)
    try:
        yield {"path": path, "config": config}
    finally:
        os.unlink(drop_in)


@pytest.fixture
def full_mount(node):
    """A 10 MiB tmpfs in the node, 90% full of root's rotated logs (0600)."""
    mount = os.path.join(node.base, "var")
    os.mkdir(mount, 0o755)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=10m,mode=0755", "tmpfs", mount], check=True)
    try:
        logs = os.path.join(mount, "log")
        os.mkdir(logs, 0o755)
        old = []
        for name in ("syslog.1", "kern.log.2.gz", "daemon.log.1"):
            path = os.path.join(logs, name)
            with open(path, "wb") as handle:
                handle.write(b"\0" * (3 * MiB))
            os.chmod(path, 0o600)
            old.append(path)
        live = os.path.join(logs, "syslog")
        with open(live, "wb") as handle:
            handle.write(b"\0" * (MiB // 4))
        yield {"mount": mount, "logs": logs, "old": old, "live": live}
    finally:
        subprocess.run(["umount", "-l", mount], check=False)


def test_a_zabbix_alert_cleans_root_owned_files_through_the_gate(node, future_gate, full_mount):
    mount = full_mount["mount"]
    node.write_config({
        "hostname": HOST, "dry_run": False,
        "fallback": {"gate": "auto", "gate_command": future_gate["path"]},
        "routes": [{"source": "zabbix", "class": "disk", "target": mount}],
        "remediations": {"disk": {"enabled": True, "targets": {mount: {
            "warning": 80, "critical": 85, "target": 5,   # all three must go
            "rules": [{"type": "rotated-logs", "root": full_mount["logs"],
                       "older_than": "7d"}]}}}}})
    shutil.copy(node.config, future_gate["config"])
    ran = node.run("zabbix", *zabbix_argv(), timeout=120)
    assert ran.returncode == 0, ran
    assert "Traceback" not in ran.stderr and "internal error" not in ran.stderr, ran
    assert f"remediated locally: disk {mount}: remediated: verified OK" in verdict(ran), ran.stdout
    assert not any(os.path.exists(p) for p in full_mount["old"])     # root's files, gone
    assert os.path.exists(full_mount["live"])                       # the live log is kept
    [fallback] = audit(node, "fallback")
    assert fallback["via"] == "sudo-gate" and fallback["outcome"] == "remediated"
    assert fallback["target"] == mount and fallback["cls"] == "disk"
