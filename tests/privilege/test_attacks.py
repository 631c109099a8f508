"""The zabbix user attacks root through the shared state directory.

Every name root opens there is taken from a run of the code itself (a clean
root flow: handlers with StackStorm down, a dead letter, the node hook, a dry
remediation through the guards, a replay), never listed by hand. Then, as
zabbix, something is planted at each of those names — a symbolic link to a
root-only file or directory, a hard link, a FIFO, a directory where a file
belongs — and the same root flow runs again. Root must not create or modify any
file outside the state directory, must not put a byte of a root-only file in
any output or any file the group can read, must not hang, and must lose no
event (each one is delivered, spooled, or the handler exits non-zero so the
monitor retries).
"""
import os
import stat

import pytest

from privkit import API_KEY, sensu_event, st2_settings

SECRET = b"ROOT-ONLY-7f3a9c1e"
LABELS = {"autoremedy_class": "process", "autoremedy_target": "svc"}


def configure(node, st2):
    node.write_config({
        "hostname": "sensu-centos",
        # forwarder delivery: handlers read the forwarder's heartbeat (none runs
        # here, so they deliver themselves) — one more name they open.
        "stackstorm": dict(st2_settings(st2), delivery="forwarder"),
        "remediations": {"process": {"enabled": True, "targets": {"svc": {
            "start": ["/bin/true"], "check": {"pidfile": os.path.join(node.base, "svc.pid")},
            "settle": "1s"}}}},
    })


def root_flow(node, st2):
    """What root does on a node; returns the CompletedProcesses."""
    env = {"AUTOREMEDY_ST2_API_KEY": API_KEY, "AUTOREMEDY_DRY_RUN": "1"}
    st2.set_mode("down")
    ran = [
        node.run("root", "handle", "sensu", input=sensu_event(labels=LABELS), env=env,
                 timeout=30),
        node.run("root", "handle", "sensu", input="{not json", env=env, timeout=30),
        node.run("root", "handle", "hook", "process", "--target", "svc", "--dry-run",
                 "--pidfile", os.path.join(node.base, "svc.pid"), env=env, timeout=30),
        node.run("root", "remediate", "process", "--dry-run", "svc", env=env, timeout=30),
        node.run("root", "status", env=env, timeout=30),
    ]
    st2.set_mode("up")
    ran.append(node.run("root", "replay", "--max-time", "5s", env=env, timeout=30))
    return ran


@pytest.fixture(scope="module")
def opened_names(tmp_path_factory, scratch, bundle, users):
    """Every name in the state directory after a clean root flow (the code's own
    list of what it opens), directories first."""
    import tempfile
    from privkit import Node, st2_double
    base = tempfile.mkdtemp(prefix="names-", dir=scratch)
    os.chmod(base, 0o755)
    node = Node(base, bundle, *users)
    double = st2_double().St2Double(api_key=API_KEY, hooks=["autoremedy"]).start()
    try:
        configure(node, double)
        for ran in root_flow(node, double):
            assert "internal error" not in ran.stderr, ran
        tree = node.tree()
    finally:
        double.stop()
    dirs = sorted(rel for rel, st in tree.items() if stat.S_ISDIR(st.st_mode))
    files = sorted(rel for rel, st in tree.items() if stat.S_ISREG(st.st_mode)
                   and ".tmp-" not in rel)
    # What a handler reads only while `replay --follow` runs: named by the code.
    from autoremedy.pipeline import forwarder
    files.append(os.path.join("spool", forwarder.HEARTBEAT))
    # Names that differ run to run (time-stamped entries) are planted by shape:
    # the spool entry and dead letter names are what a replay reads.
    for wanted in ("audit.log", "breaker.json", "spool", "deadletter", "guard",
                   "hook/incidents.json"):
        assert any(r == wanted or r.startswith(wanted + "/") for r in dirs + files), wanted
    return dirs, files


def as_zabbix(node, path):
    """Make the planted entry zabbix's (what zabbix itself could have made)."""
    os.lchown(path, node.uids["zabbix"], node.gid)


def outside_snapshot(node):
    out = {}
    for dirpath, dirnames, filenames in os.walk(node.outside):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            out[path] = (st.st_mtime_ns, st.st_size, st.st_uid)
    return out


def assert_no_harm(node, ran, before):
    assert outside_snapshot(node) == before, "root created or changed a file outside"
    with open(node.secret, "rb") as handle:
        assert handle.read().strip() == SECRET
    for proc in ran:
        assert SECRET.decode() not in proc.stdout + proc.stderr, proc
        assert "internal error" not in proc.stderr, proc
        assert "Traceback" not in proc.stderr, proc
    assert SECRET not in node.readable_bytes()


def assert_no_event_lost(ran, st2):
    """Each event handler either got it to StackStorm or the spool (replayed
    later), or exited non-zero so that the monitor retries it."""
    handler = ran[0]
    delivered = len(st2.requests)
    assert delivered >= 1 or handler.returncode != 0, (handler, delivered)


def plant_dirs(node, dirs):
    """Each directory root uses, as a symbolic link to a root-only directory."""
    for rel in dirs:
        if "/" in rel:
            continue                    # the parent is planted already
        target = os.path.join(node.outside, "d-" + rel.replace("/", "_"))
        os.mkdir(target, 0o700)
        link = os.path.join(node.state, rel)
        os.symlink(target, link)
        as_zabbix(node, link)


def _parents(node, rel):
    parent = os.path.dirname(os.path.join(node.state, rel))
    if not os.path.isdir(parent):
        os.makedirs(parent)
        path = parent
        while path != node.state:
            os.chown(path, node.uids["zabbix"], node.gid)
            os.chmod(path, 0o2770)
            path = os.path.dirname(path)
    return os.path.join(node.state, rel)


def plant_files(node, files, kind):
    for rel in files:
        path = _parents(node, rel)
        if kind == "symlink":
            os.symlink(node.secret, path)
        elif kind == "hardlink":
            os.link(node.secret, path)          # root's, so not chowned: nlink 2
            continue
        elif kind == "fifo":
            os.mkfifo(path, 0o660)
        elif kind == "directory":
            os.mkdir(path, 0o2770)
        as_zabbix(node, path)


def test_directories_planted_as_links_are_never_followed(node, st2, opened_names):
    dirs, _ = opened_names
    configure(node, st2)
    plant_dirs(node, dirs)
    before = outside_snapshot(node)
    # Readers first (they make nothing, so they meet the links): one clear line.
    readers = [node.run("root", "status"), node.run("root", "check", "spool")]
    assert readers[0].returncode == 3 and "not a directory" in readers[0].stderr, readers[0]
    assert readers[1].returncode == 3 and "SPOOL UNKNOWN: cannot read the spool" \
        in readers[1].stdout, readers[1]
    ran = readers + root_flow(node, st2)
    assert_no_harm(node, ran, before)
    assert_no_event_lost(ran, st2)
    # The planted links were replaced by real directories of the group.
    assert os.path.isdir(os.path.join(node.state, "spool")) \
        and not os.path.islink(os.path.join(node.state, "spool"))


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "fifo", "directory"])
def test_files_planted_at_every_name_root_opens(node, st2, opened_names, kind):
    _, files = opened_names
    configure(node, st2)
    plant_files(node, files, kind)
    before = outside_snapshot(node)
    ran = root_flow(node, st2)
    assert_no_harm(node, ran, before)
    assert_no_event_lost(ran, st2)


def test_spool_entry_linked_to_a_root_file_is_removed_never_copied(node, st2):
    """The issue's repro: state/spool/<id>.json -> a 0600 root file; a root replay
    used to copy it into deadletter/*.raw, readable by the group."""
    configure(node, st2)
    spool = os.path.join(node.state, "spool")
    os.mkdir(spool)
    os.chown(spool, node.uids["zabbix"], node.gid)
    os.chmod(spool, 0o2770)
    for name, make in (("01000000000000000000-a.json", os.symlink),
                       ("01000000000000000001-b.json", os.link)):
        make(node.secret, os.path.join(spool, name))
        if make is os.symlink:
            as_zabbix(node, os.path.join(spool, name))
    before = outside_snapshot(node)
    st2.set_mode("up")
    ran = [node.run("root", "replay", "--max-time", "5s",
                    env={"AUTOREMEDY_ST2_API_KEY": API_KEY})]
    assert_no_harm(node, ran, before)
    assert sorted(os.listdir(spool)) == [n for n in sorted(os.listdir(spool)) if n.startswith(".")]
    assert st2.requests == []
    assert not os.path.exists(os.path.join(node.state, "deadletter")) \
        or not [n for n in os.listdir(os.path.join(node.state, "deadletter")) if n.endswith(".raw")]
