"""The node as the agents run it: sensu and zabbix handle events, root replays,
all in one state directory (root:autoremedy 2770). No event is lost and no audit
line dropped, whoever created a directory first."""
import grp
import json
import os
import stat

from privkit import API_KEY, sensu_event, st2_settings, zabbix_argv


def spooled(node):
    spool = os.path.join(node.state, "spool")
    return sorted(n for n in os.listdir(spool) if n.endswith(".json") and n[0] != ".")


def audit_pids(node):
    with open(os.path.join(node.state, "audit.log")) as handle:
        return [json.loads(line) for line in handle]


def test_users_spool_and_audit_after_root_made_every_directory(node, st2):
    node.write_config({"stackstorm": st2_settings(st2)})
    env = {"AUTOREMEDY_ST2_API_KEY": API_KEY}
    st2.set_mode("down")
    # Root first, as the replay timer would be on a fresh node: it makes spool/,
    # its locks, the breaker and the audit log — with root's umask 022.
    ran = node.run("root", "replay", env=env)
    assert ran.returncode == 0 and "spool empty" in ran.stdout, ran
    ran = node.run("root", "handle", "sensu", input=sensu_event(), env=env)
    assert "cannot spool" not in ran.stderr and "internal error" not in ran.stderr, ran
    for user in ("zabbix", "sensu"):
        if user == "zabbix":
            ran = node.run(user, *zabbix_argv(), env=env)
        else:
            ran = node.run(user, "handle", "sensu", input=sensu_event(check=f"by-{user}"), env=env)
        assert ran.returncode in (0, 1), ran
        assert "cannot spool" not in ran.stderr, ran.stderr
        assert "audit log" not in ran.stderr, ran.stderr          # no record lost
        assert "internal error" not in ran.stderr, ran.stderr
    assert len(spooled(node)) == 3
    writers = {r["pid"] for r in audit_pids(node) if r["what"] == "spool" or r["what"] == "forward"}
    assert len(writers) == 3                  # root, zabbix and sensu each audited

    # Whoever made it, everything is the group's: directories 2770, files g+rw.
    gid = grp.getgrnam("autoremedy").gr_gid
    for rel, st in node.tree().items():
        assert st.st_gid == gid, rel
        if stat.S_ISDIR(st.st_mode):
            assert stat.S_IMODE(st.st_mode) == 0o2770, (rel, oct(st.st_mode))
        else:
            assert stat.S_IMODE(st.st_mode) & 0o060 == 0o060, (rel, oct(st.st_mode))

    # The replay service (root) delivers what the users spooled.
    st2.set_mode("up")
    ran = node.run("root", "replay", env=env)
    assert ran.returncode == 0, ran
    assert "3 delivered" in ran.stdout and spooled(node) == []
    assert len(st2.requests) == 3


def test_user_first_then_root_then_user(node, st2):
    """The other order: zabbix makes the directories, root uses them, zabbix again."""
    node.write_config({"stackstorm": st2_settings(st2)})
    env = {"AUTOREMEDY_ST2_API_KEY": API_KEY}
    st2.set_mode("down")
    assert node.run("zabbix", *zabbix_argv(), env=env).returncode in (0, 1)
    assert node.run("root", "replay", "--max-time", "1s", env=env).returncode == 1
    ran = node.run("sensu", "handle", "sensu", input=sensu_event(), env=env)
    assert ran.returncode in (0, 1) and "cannot spool" not in ran.stderr, ran
    assert len(spooled(node)) == 2
    st2.set_mode("up")
    ran = node.run("sensu", "replay", env=env)          # any member may replay
    assert ran.returncode == 0 and "2 delivered" in ran.stdout, ran


def test_older_root_made_0750_directories_are_repaired_by_root(node, st2):
    """A state directory left by an older version (root-made spool/ 0750, files
    0640): the next root run makes it the group's again."""
    spool = os.path.join(node.state, "spool")
    os.mkdir(spool, 0o750)
    os.chmod(spool, 0o750)
    log = os.path.join(node.state, "audit.log")
    with open(log, "w"):
        pass
    os.chmod(log, 0o640)
    node.write_config({"stackstorm": st2_settings(st2)})
    env = {"AUTOREMEDY_ST2_API_KEY": API_KEY}
    st2.set_mode("down")
    assert node.run("root", "replay", env=env).returncode == 0
    assert stat.S_IMODE(os.stat(spool).st_mode) == 0o2770
    ran = node.run("zabbix", *zabbix_argv(), env=env)
    assert ran.returncode in (0, 1) and "cannot spool" not in ran.stderr, ran
    assert len(spooled(node)) == 1


def test_checks_and_node_hooks_as_each_user(node, st2):
    pidfile = os.path.join(node.base, "svc.pid")
    node.write_config({"stackstorm": st2_settings(st2), "remediations": {"process": {
        "enabled": True, "targets": {"svc": {"start": ["/bin/true"],
                                             "check": {"pidfile": pidfile}, "settle": "1s"}}}}})
    env = {"AUTOREMEDY_ST2_API_KEY": API_KEY}
    for user in ("sensu", "zabbix"):
        ran = node.run(user, "check", "disk", "--path", "/", "-w", "101", "-c", "101")
        assert ran.returncode == 0 and ran.stdout.startswith("DISK OK"), ran
        ran = node.run(user, "check", "process", "--pidfile", pidfile)
        assert ran.returncode == 2 and f"pidfile {pidfile} is missing" in ran.stdout, ran
        st2.set_mode("up")
        ran = node.run(user, "handle", "hook", "process", "--target", "svc",
                       "--pidfile", pidfile, env=env)
        assert ran.returncode == 0 and "delivered to StackStorm" in ran.stdout, ran
        # StackStorm down: the guarded local fallback runs as the user; /bin/true
        # does not bring the daemon back, so the first one fails and escalates.
        # The second user's run of the same incident meets the first one's
        # record in the shared guard ledger: one remediation per event, whoever.
        st2.set_mode("down")
        ran = node.run(user, "handle", "hook", "process", "--target", "svc",
                       "--pidfile", pidfile, env=env)
        assert "internal error" not in ran.stderr and "event kept in the spool" in ran.stdout, ran
        if user == "sensu":
            assert ran.returncode == 1 and "local process svc: failed" in ran.stdout, ran
        else:
            assert ran.returncode == 0 and "already handled" in ran.stdout, ran
    assert len(spooled(node)) == 1          # one incident, one entry, whoever ran the hook
    st2.set_mode("up")
    ran = node.run("root", "replay", env=env)
    assert ran.returncode == 0 and "1 delivered" in ran.stdout, ran
