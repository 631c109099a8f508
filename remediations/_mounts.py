"""Which mount a path is on, read from /proc/self/mountinfo.

A bind mount of a directory of the *same* filesystem has the same device number
as its parent (``st_dev``), so a walk that compares device numbers walks right
through it — out of the configured root and into whatever was bound there. The
mount table is the only thing that knows: every mount, bind mounts included,
has its own line and its own mount id (proc(5), "/proc/pid/mountinfo").
"""
import os


def _unescape(field):
    """mountinfo escapes space, tab, newline and backslash as octal (\\040 ...)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit() and len(field[i + 1:i + 4]) == 3:
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


class Mount:
    __slots__ = ("id", "parent", "dev", "root", "point", "fstype", "source")

    def __init__(self, id, parent, dev, root, point, fstype, source):
        self.id, self.parent, self.dev, self.root = id, parent, dev, root
        self.point, self.fstype, self.source = point, fstype, source

    def to_list(self):
        return [self.id, self.point, self.root, self.fstype, self.source]


def table(path="/proc/self/mountinfo"):
    """Every mount of this mount namespace, in the kernel's order."""
    mounts = []
    with open(path, encoding="utf-8", errors="surrogateescape") as handle:
        for line in handle:
            left, _, right = line.rstrip("\n").partition(" - ")
            fields, tail = left.split(" "), right.split(" ")
            if len(fields) < 5 or len(tail) < 2:
                continue
            mounts.append(Mount(int(fields[0]), int(fields[1]), fields[2], _unescape(fields[3]),
                                _unescape(fields[4]), tail[0], _unescape(tail[1])))
    return mounts


def points(mounts=None):
    """The set of every mount point (a later mount over the same point hides the
    earlier one, but both are mount points: never walk into either)."""
    return {m.point for m in (mounts if mounts is not None else table())}


def mount_of(path, mounts=None):
    """The mount holding ``path`` (an absolute path without symlinks): the last
    mount whose point is the longest prefix of it — the one on top."""
    mounts = mounts if mounts is not None else table()
    path = os.path.normpath(path)
    best = None
    for mount in mounts:
        point = mount.point
        if path == point or path.startswith(point.rstrip("/") + "/"):
            if best is None or len(point) >= len(best.point):
                best = mount
    return best


def under(path, root):
    """``path`` is ``root`` or inside it (both normalised absolute paths)."""
    path, root = os.path.normpath(path), os.path.normpath(root)
    return path == root or path.startswith(root.rstrip("/") + "/")
