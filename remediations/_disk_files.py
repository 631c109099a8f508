"""Files the disk class may delete, what deleting them really frees, and who holds them.

- The walk never leaves its root and never enters another mount (bind mounts
  included: the mount table knows, device numbers do not — _mounts.py).
- A file's age is the newest of its mtime and ctime: ``tar x`` and ``cp -p``
  set mtime in the past, but ctime says when the file arrived here.
- What deleting frees is the file's *allocated* blocks (st_blocks), and only
  when its last name goes and no process holds it open: a sparse file frees
  less than its size, a hard link with a name outside the plan frees nothing,
  a file held open frees nothing until it is closed (it becomes a
  deleted-but-open file). Those are kept and said so.
- Deletion goes through directory file descriptors opened without following
  symlinks, each checked to be on the root's mount (``mnt_id`` in
  /proc/self/fdinfo), and unlinks only the inode that was planned.
"""
import fnmatch
import os
import stat

from autoremedy.remediations import _mounts

ROTATED = ["*.gz", "*.xz", "*.bz2", "*.zst", "*.[0-9]", "*.[0-9].log", "*.old",
           "*-[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]"]


def escape(name):
    """One printable line for any file name: backslash, tab, newline and every
    other control or undecodable byte are escaped (\\\\, \\t, \\n, \\xHH)."""
    out = []
    for ch in name:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif 0xDC80 <= code <= 0xDCFF:          # an undecodable byte (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or code == 0x7F or not ch.isprintable():
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


class Candidate:
    """A file a rule allows to delete, with what deleting it would free."""

    __slots__ = ("path", "dev", "ino", "size", "allocated", "links", "age", "rule",
                 "keep", "holders", "counted")

    def __init__(self, path, st, age, rule):
        self.path, self.dev, self.ino = path, st.st_dev, st.st_ino
        self.size, self.allocated = st.st_size, st.st_blocks * 512
        self.links, self.age, self.rule = st.st_nlink, age, rule
        self.keep = None            # why it is kept (deleting would free nothing)
        self.holders = []           # [(pid, comm)] holding it open
        self.counted = True         # False for all but one name of an inode in the plan

    @property
    def frees(self):
        return 0 if self.keep or not self.counted else self.allocated

    def to_dict(self):
        out = {"path": escape(self.path), "bytes": self.size, "allocated": self.allocated,
               "frees": self.frees, "links": self.links, "age_s": round(self.age)}
        if self.keep:
            out["kept"] = self.keep
        return out

    def line(self):
        text = (f"{escape(self.path)}\tbytes={self.size}\tallocated={self.allocated}"
                f"\tfrees={self.frees}\tage={round(self.age)}s")
        return text + (f"\tKEPT: {self.keep}" if self.keep else "")


def walk(rule, target, now):
    """[Candidate] of regular files ``rule`` allows under its root, oldest first,
    and notes on what was left out. Nothing outside the root's own mount."""
    root = os.path.normpath(rule["root"])
    try:
        root_st = os.lstat(root)
    except FileNotFoundError:
        return [], [f"{root}: does not exist"]
    if stat.S_ISLNK(root_st.st_mode) or not stat.S_ISDIR(root_st.st_mode):
        return [], [f"{root}: not a directory (a symlinked root could point anywhere)"]
    if os.path.realpath(root) != os.path.normpath(root):
        return [], [f"{root}: a symlink on its path (it could point anywhere): not walked"]
    table = _mounts.table()
    home = _mounts.mount_of(os.path.realpath(root), table)
    full = _mounts.mount_of(os.path.realpath(target), table)
    if home is None or full is None or home.dev != full.dev:
        return [], [f"{root}: not on the filesystem of {target} (deleting there frees nothing here)"]
    points = _mounts.points(table)
    patterns = rule.get("patterns") or (ROTATED if rule["type"] == "rotated-logs" else ["*"])
    cutoff = rule["older_than"]
    found, notes, crossed = [], [], []
    for directory, dirs, files in os.walk(root, followlinks=False):
        keep_dirs = []
        for name in dirs:
            path = os.path.join(directory, name)
            if path in points:
                crossed.append(path)        # another mount (a bind mount too): never entered
            else:
                keep_dirs.append(name)
        dirs[:] = keep_dirs
        for name in files:
            path = os.path.join(directory, name)
            if path in points or not any(fnmatch.fnmatch(name, p) for p in patterns):
                continue
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode) or st.st_dev != root_st.st_dev:
                continue
            age = now - max(st.st_mtime, st.st_ctime)
            if age < cutoff:
                continue
            found.append(Candidate(path, st, age, rule))
    if crossed:
        notes.append(f"{root}: {len(crossed)} mount point(s) inside not entered: "
                     + ", ".join(escape(p) for p in crossed[:5]))
    found.sort(key=lambda c: -c.age)
    return found, notes


def account(candidates, holders):
    """Mark what deleting would not free: other names outside the plan, held open."""
    names = {}
    for cand in candidates:
        names.setdefault((cand.dev, cand.ino), []).append(cand)
    for (dev, ino), same in names.items():
        held = holders.get((dev, ino))
        for cand in same:
            if held:
                cand.holders = held
                cand.keep = "held open by " + ", ".join(f"pid {p} ({c})" for p, c in held[:3]) + \
                    " (deleting frees nothing until it is closed)"
            elif cand.links > len(same):
                cand.keep = (f"{cand.links - len(same)} other hard link(s) outside the plan "
                             "(deleting frees nothing)")
        # several names of one inode: only the last unlink frees its blocks
        for cand in same[:-1]:
            cand.counted = False
    return candidates


def open_files(dev):
    """{(dev, ino): [(pid, comm)]} of regular files on device ``dev`` that some
    process holds open, and [DeletedOpen] of those already deleted."""
    holders, deleted = {}, {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        comm = None
        for fd in fds:
            path = f"{fd_dir}/{fd}"
            try:
                link = os.readlink(path)
                if not link.startswith("/"):
                    continue
                st = os.stat(path)
            except OSError:
                continue
            if st.st_dev != dev or not stat.S_ISREG(st.st_mode):
                continue
            if comm is None:
                comm = _comm(pid)
            key = (st.st_dev, st.st_ino)
            holders.setdefault(key, []).append((int(pid), comm))
            if st.st_nlink == 0:
                entry = deleted.setdefault(key, DeletedOpen(link, st))
                entry.holders.append((int(pid), comm, int(fd)))
    return holders, list(deleted.values())


def _comm(pid):
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return "?"


class DeletedOpen:
    """A file deleted while a process still holds it: its blocks stay allocated."""

    def __init__(self, link, st):
        self.path = link[:-len(" (deleted)")] if link.endswith(" (deleted)") else link
        self.dev, self.ino, self.size = st.st_dev, st.st_ino, st.st_size
        self.allocated = st.st_blocks * 512
        self.holders = []           # [(pid, comm, fd)]

    def line(self):
        who = ", ".join(f"pid {p} ({c}) fd {fd}" for p, c, fd in self.holders)
        return f"{escape(self.path)} (deleted)\tallocated={self.allocated}\theld by {who}"

    def to_dict(self):
        return {"path": escape(self.path), "allocated": self.allocated, "bytes": self.size,
                "holders": [{"pid": p, "comm": c, "fd": fd} for p, c, fd in self.holders]}


def fd_mount_id(fd):
    """The mount id of an open file descriptor (proc(5): /proc/PID/fdinfo)."""
    with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("mnt_id:"):
                return int(line.split()[1])
    raise OSError(f"no mnt_id for fd {fd}")


class Gone(Exception):
    """The planned file is no longer what was planned: left alone."""


def unlink(root, cand):
    """Unlink ``cand`` through directory descriptors from ``root``: every
    directory opened without following symlinks and on the root's own mount;
    the name unlinked only if it is still the planned inode."""
    rel = os.path.relpath(cand.path, root)
    parts = rel.split(os.sep)
    if rel.startswith("..") or not parts:
        raise Gone("outside the root")
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(root, flags)
    try:
        mount_id = fd_mount_id(fd)
        for part in parts[:-1]:
            if fd_mount_id(fd) != mount_id:
                raise Gone("a directory on the way is on another mount")
            nxt = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = nxt
        if fd_mount_id(fd) != mount_id:
            raise Gone("its directory is on another mount")
        try:
            st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            raise Gone("already gone") from None
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (cand.dev, cand.ino):
            raise Gone("replaced since the plan")
        os.unlink(parts[-1], dir_fd=fd)
    except OSError as exc:
        if isinstance(exc, (NotADirectoryError,)) or exc.errno in (40,):   # ELOOP: a symlink
            raise Gone("a directory on the way became a symlink") from None
        raise
    finally:
        os.close(fd)
