"""safefs in-process, as root, against entries a group member made (chowned to
zabbix): the rules the attack corpus relies on, one by one."""
import os
import stat

import pytest

from autoremedy import safefs, statefile


@pytest.fixture
def shared(node):
    return node.state          # root:autoremedy 2770, under a root-owned 0755 parent


def zabbix_owned(node, path):
    os.lchown(path, node.uids["zabbix"], node.gid)


def test_group_members_entries_are_used_foreign_group_refused(node, shared):
    ok = os.path.join(shared, "ok.json")
    with open(ok, "w") as handle:
        handle.write("{}")
    zabbix_owned(node, ok)
    assert statefile.load(ok) == {}
    moved = os.path.join(shared, "moved.json")
    with open(moved, "w") as handle:
        handle.write("{}")
    os.chown(moved, node.uids["zabbix"], 0)          # kept its own group: moved in
    with pytest.raises(safefs.Refused, match="not made in this directory"):
        safefs.read(moved)


def test_private_directory_is_ours_alone(node, shared):
    planted = os.path.join(shared, "work")
    os.mkdir(planted)
    zabbix_owned(node, planted)
    with pytest.raises(safefs.Refused, match="private directory owned by uid"):
        safefs.makedirs(planted, private=True)
    link = os.path.join(shared, "work2")
    os.symlink(node.outside, link)
    zabbix_owned(node, link)
    safefs.makedirs(link, private=True)
    st = os.lstat(link)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == 0
    assert os.listdir(node.outside) == ["secret"]


def test_new_files_and_directories_are_the_groups_whatever_the_umask(node, shared):
    old = os.umask(0o077)
    try:
        statefile.save(os.path.join(shared, "a", "b", "c.json"), {"x": 1})
    finally:
        os.umask(old)
    for rel in ("a", "a/b"):
        assert stat.S_IMODE(os.stat(os.path.join(shared, rel)).st_mode) == 0o2770
    st = os.stat(os.path.join(shared, "a", "b", "c.json"))
    assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == node.gid
    statefile.write_atomic(os.path.join(shared, "a", "private.json"), b"{}", mode=0o600)
    assert stat.S_IMODE(os.stat(os.path.join(shared, "a", "private.json")).st_mode) == 0o600


def test_a_fifo_never_blocks_and_a_device_is_never_opened(node, shared):
    fifo = os.path.join(shared, "breaker.json")
    os.mkfifo(fifo, 0o660)
    zabbix_owned(node, fifo)
    assert statefile.load(fifo, "default") == "default"       # refused at once
    dev = os.path.join(shared, "dev.json")
    os.mknod(dev, 0o660 | stat.S_IFCHR, os.makedev(1, 3))     # /dev/null's numbers
    zabbix_owned(node, dev)
    with pytest.raises(safefs.Refused, match="not a regular file"):
        safefs.read(dev)


def test_pruning_removes_links_never_what_they_point_to(node, shared):
    from autoremedy.collection.collect import _prune
    victim = os.path.join(node.outside, "victim")
    os.makedirs(os.path.join(victim, "keep-me"))
    incidents = os.path.join(shared, "incidents")
    for stamp in ("20260101T000000Z-a", "20260102T000000Z-b", "20260103T000000Z-c"):
        os.makedirs(os.path.join(incidents, stamp, "logs"))
    # Planted in the oldest bundle: a link to root's directory.
    os.symlink(victim, os.path.join(incidents, "20260101T000000Z-a", "logs", "x"))
    _prune(incidents, keep=1)
    assert sorted(os.listdir(incidents)) == ["20260103T000000Z-c"]
    assert os.listdir(victim) == ["keep-me"]
    # The whole folder planted as a link: nothing below its target is touched.
    os.rename(incidents, incidents + ".old")
    os.symlink(node.outside, incidents)
    zabbix_owned(node, incidents)
    _prune(incidents, keep=0)
    assert sorted(os.listdir(node.outside)) == ["secret", "victim"]


def test_a_kept_directory_is_walked_once_and_a_later_plant_is_never_followed(node, shared):
    """safefs.kept (replay's run): open_dir of a held directory is the fd verified
    on entry — no new walk — and a link planted at its name meanwhile is never
    followed; files in it are still checked; the fd is closed once the block has
    ended and the last handle on it is closed, never under a user's feet."""
    spool = os.path.join(shared, "spool")
    safefs.makedirs(spool)
    walks = []
    real_open = os.open

    def counting_open(path, *args, **kwargs):
        walks.append(path)
        return real_open(path, *args, **kwargs)
    with safefs.kept(spool, os.path.join(shared, "absent")):
        first = safefs.open_dir(spool)
        os.open = counting_open
        try:
            with safefs.open_dir(spool) as again:
                assert again.fd == first.fd
        finally:
            os.open = real_open
        assert walks == []                                # no walk from / for a held directory
        assert os.fstat(first.fd)                         # closing a handle left the fd open
        # A group member swaps the spool for a link to root's secrets: the run
        # keeps working in the directory it verified, never through the link.
        os.rename(spool, os.path.join(shared, "moved"))
        os.symlink(node.outside, spool)
        zabbix_owned(node, spool)
        with safefs.open_dir(spool) as directory:
            statefile.write_in(directory, "entry.json", b"{}")
        assert os.listdir(os.path.join(shared, "moved")) == ["entry.json"]
        assert os.listdir(node.outside) == ["secret"]
        # Files in the held directory are checked as ever: a planted link is refused.
        os.symlink(os.path.join(node.outside, "secret"), os.path.join(shared, "moved", "x.json"))
        with safefs.open_dir(spool) as directory, \
                pytest.raises(safefs.Refused, match="symbolic link"):
            directory.read("x.json")
        # A private directory is never served from the held ones: walked, link refused.
        with pytest.raises(safefs.Refused):
            safefs.open_dir(spool, private=True)
        fd = first.fd
    assert sorted(os.listdir(fd)) == ["entry.json", "x.json"]  # lent to `first`: still open
    with pytest.raises(safefs.Refused):                   # the walk is back: the link refused
        safefs.open_dir(spool)
    first.close()
    with pytest.raises(OSError):
        os.fstat(fd)                                      # the last handle closed it


def test_a_pinned_path_names_the_verified_directory_though_its_parent_is_swapped(node, shared):
    """mysql/ sits in the group's directory: zabbix, a group member, swaps it for a
    link to a tree of its own after root verified mysql/resync/t. Root's writes and
    a child tool's (its working directory and a path argument) through the pinned
    path still land in the directory root verified; zabbix's tree gets nothing."""
    import subprocess
    work_path = os.path.join(shared, "mysql", "resync", "t")
    with safefs.open_dir(os.path.dirname(work_path), create=True, private=True) as parent, \
            parent.subdir("t", create=True, private=True) as work:
        pinned = safefs.pinned_path(work)
        evil = os.path.join(shared, "evil")
        swap = subprocess.run(["runuser", "-u", "zabbix", "--", "sh", "-c",
                               f"mkdir -p {evil}/resync/t && mv {shared}/mysql {shared}/mysql.away && "
                               f"ln -s {evil} {shared}/mysql"], capture_output=True, text=True)
        assert swap.returncode == 0, swap.stderr
        assert os.path.realpath(work_path) == os.path.join(evil, "resync", "t")    # the name now leads there
        with open(os.path.join(pinned, "login.cnf"), "w") as handle:
            handle.write("password=secret\n")
        tool = subprocess.run(["sh", "-c", f"echo dump > dump.sql && cat {pinned}/login.cnf > copy.cnf && pwd"],
                              cwd=pinned, capture_output=True, text=True)
        assert tool.returncode == 0, tool.stderr
        assert tool.stdout.strip() == os.path.join(shared, "mysql.away", "resync", "t")
    verified = os.path.join(shared, "mysql.away", "resync", "t")
    assert sorted(os.listdir(verified)) == ["copy.cnf", "dump.sql", "login.cnf"]
    assert os.listdir(os.path.join(evil, "resync", "t")) == []
