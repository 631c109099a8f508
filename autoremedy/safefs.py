"""Files in a directory that less trusted users can write (the state directory).

On a node the state directory is ``root:autoremedy`` mode 2770: the ``sensu`` and
``zabbix`` users (members of ``autoremedy``) spool and audit there, and root (the
sudo gate, the replay service) works in the same tree. Any group member can
plant a symbolic link, a hard link, a FIFO or a directory at any name in it, so
a process — root above all — must never resolve a path in it by name alone.
This module is the one place that opens things there:

* a directory path is walked one component at a time from ``/`` with
  ``openat``; below a directory that someone other than root or us can write
  ("untrusted"), a component is opened with ``O_NOFOLLOW`` and must be owned by
  root or us — or, in a *shared* directory (setgid, group-writable, not
  world-writable), carry the directory's own group (what anything made there
  gets from the setgid bit; a file moved in from elsewhere keeps its own group);
* a file is always opened relative to its verified directory's fd, with
  ``O_NOFOLLOW`` and ``O_NONBLOCK`` (a FIFO never blocks us), new files with
  ``O_EXCL``; below an untrusted directory it must be a regular file with one
  link (a hard link to a file elsewhere is refused), checked with ``lstat``
  before the open (no device is ever opened) and ``fstat`` after (same inode);
* what is created in a shared directory is made group-writable (directories
  2770, files 0660 — or kept private when the caller asks for 0600) whatever
  the umask, so nothing depends on which user created a directory first; a
  directory or file of ours that an older version created without group write
  is repaired when we meet it.

A refusal is ``Refused`` (an OSError: every caller that already copes with a
full or read-only disk copes with it) whose text names the path and why —
never anything read from the file.
"""
import contextlib
import errno
import os
import stat

_FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
SHARED_DIR_MODE = 0o2770


class Refused(OSError):
    """An entry in an untrusted directory that we will not open (planted?)."""

    def __init__(self, path, why):
        super().__init__(errno.EPERM, f"refusing {path}: {why}")
        self.path = path
        self.why = why


def _trusted_owner(st):
    return st.st_uid == 0 or st.st_uid == os.geteuid()


def trusted(st):
    """Only root or we can change this directory: its entries are taken as they are."""
    return _trusted_owner(st) and not st.st_mode & 0o022


def shared(st):
    """A group directory in the packages' layout: setgid, group-writable, private."""
    mode = st.st_mode
    return bool(mode & stat.S_ISGID and mode & 0o020 and not mode & 0o002)


def _acceptable(parent_st, st):
    """May an entry of the untrusted directory ``parent_st`` be used? In a shared
    directory every entry made there carries its group (setgid), whoever made
    it; anything else was moved in from elsewhere — refused, even root's own.
    Elsewhere (a sticky /tmp) only root's and ours."""
    if shared(parent_st):
        return st.st_gid == parent_st.st_gid
    return _trusted_owner(st)


class Dir:
    """An open, verified directory: every operation is relative to its fd."""

    def __init__(self, fd, path, st):
        self.fd = fd
        self.path = path
        self.stat = st
        self.trusted = trusted(st)
        self.shared = shared(st)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def join(self, name):
        return os.path.join(self.path, name)

    # -- directories ----------------------------------------------------------------
    def subdir(self, name, create=False, private=False):
        """The child directory ``name`` (created when asked), verified.
        ``private``: ours alone, 0700 (work files of root's remediations: a
        database dump is not the group's to read); anyone else's is refused."""
        _check_name(name)
        if create:
            self._mkdir(name, private)
        flags = _DIR_FLAGS if self.trusted else _DIR_FLAGS | os.O_NOFOLLOW
        try:
            fd = os.open(name, flags, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            if not create:
                raise Refused(self.join(name), "not a directory (a symbolic link or a "
                                               "file where a directory belongs)") from None
            # A link or file planted where our directory belongs: remove the
            # name (never what it points to) and make the directory.
            self._remove_planted(name, "not a directory")
            self._mkdir(name, private)
            fd = os.open(name, flags, dir_fd=self.fd)
        try:
            st = os.fstat(fd)
            if not self.trusted and not _acceptable(self.stat, st):
                raise Refused(self.join(name), _foreign(st))
            if private:
                if st.st_uid != os.geteuid():
                    raise Refused(self.join(name), f"a private directory owned by uid "
                                                   f"{st.st_uid}, not by us")
                if stat.S_IMODE(st.st_mode) != 0o700:
                    os.fchmod(fd, 0o700)
                    st = os.fstat(fd)
            elif self.shared and st.st_uid == os.geteuid() \
                    and stat.S_IMODE(st.st_mode) != SHARED_DIR_MODE:
                os.fchmod(fd, SHARED_DIR_MODE)       # repair: an older version's 0750
                st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        return Dir(fd, self.join(name), st)

    def _mkdir(self, name, private=False):
        mode = 0o700 if private else SHARED_DIR_MODE if self.shared else 0o750
        try:
            os.mkdir(name, mode, dir_fd=self.fd)
        except FileExistsError:
            pass

    def _remove_planted(self, name, why):
        """Take a planted entry out of the way: a link or file is unlinked (the
        name only: a link's target is untouched), a directory renamed aside to
        ``.planted-*`` (its content is not ours to delete)."""
        try:
            os.unlink(name, dir_fd=self.fd)
            planted(self.join(name), why, "removed")
        except IsADirectoryError:
            aside = f".planted-{os.urandom(6).hex()}"
            self.rename(name, aside)
            planted(self.join(name), why, f"moved aside to {aside}")

    def listdir(self):
        return os.listdir(self.fd)

    def fsync(self):
        os.fsync(self.fd)

    # -- files ----------------------------------------------------------------------
    def open(self, name, flags, mode=0o640):
        """An fd for the file ``name``: never through a link, never a non-regular
        file, never (below an untrusted directory) a hard-linked or foreign one.
        ``flags`` as for os.open (O_CREAT creates it with ``mode`` as adjusted
        for a shared directory; O_EXCL insists on a new file)."""
        _check_name(name)
        mode = self.file_mode(mode)
        path = self.join(name)
        if flags & os.O_CREAT and not flags & os.O_EXCL:
            # Create-or-open (a lock, the audit log: usually there already). What
            # is there is opened with every check below; a missing one is made
            # with O_EXCL and O_NOFOLLOW, which refuse any name planted meanwhile.
            for _ in range(3):
                try:
                    return self.open(name, flags & ~os.O_CREAT, mode)
                except FileNotFoundError:
                    pass
                except Refused as exc:
                    # What was planted at the name is removed — a link, never its
                    # target — and ours made.
                    self._remove_planted(name, exc.why)
                try:
                    return self._created(os.open(name, flags | os.O_EXCL | _FILE_FLAGS, mode,
                                                 dir_fd=self.fd), mode, flags)
                except FileExistsError:
                    continue            # made (or planted) meanwhile: look again
            raise Refused(path, "replaced again and again while being opened")
        if flags & os.O_CREAT:
            return self._created(os.open(name, flags | _FILE_FLAGS, mode, dir_fd=self.fd),
                                 mode, flags)
        before = None
        if not self.trusted:
            before = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
            self._check_file(path, before)
        try:
            fd = os.open(name, flags | _FILE_FLAGS, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise Refused(path, "a symbolic link") from None
            raise
        try:
            st = os.fstat(fd)
            if before is not None and (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
                raise Refused(path, "replaced while being opened")
            self._check_file(path, st)
            if self.shared and st.st_uid == os.geteuid() and mode & 0o060 \
                    and stat.S_IMODE(st.st_mode) & 0o060 != 0o060:
                os.fchmod(fd, stat.S_IMODE(st.st_mode) | 0o060)   # repair: an older 0640
            _blocking(fd, flags)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _created(self, fd, mode, flags):
        try:
            os.fchmod(fd, mode)             # whatever the umask
            _blocking(fd, flags)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _check_file(self, path, st):
        if stat.S_ISLNK(st.st_mode):
            raise Refused(path, "a symbolic link")
        if not stat.S_ISREG(st.st_mode):
            raise Refused(path, "not a regular file")
        if self.trusted:
            return
        if st.st_nlink != 1:
            raise Refused(path, f"a hard link ({st.st_nlink} names)")
        if not _acceptable(self.stat, st):
            raise Refused(path, _foreign(st))

    def file_mode(self, mode):
        """``mode`` for a new file here: group-writable in a shared directory when
        the group may read it at all (0640 -> 0660, 0600 stays 0600)."""
        if self.shared and mode & 0o040:
            return mode | 0o060
        return mode

    def read(self, name, limit=None):
        """The bytes of file ``name`` (at most ``limit``)."""
        fd = self.open(name, os.O_RDONLY)
        with os.fdopen(fd, "rb") as handle:
            return handle.read() if limit is None else handle.read(limit)

    def create_temp(self, prefix=".tmp-", suffix=".part", mode=0o640):
        """(fd, name) of a new, empty file with a random name."""
        for _ in range(100):
            name = f"{prefix}{os.urandom(8).hex()}{suffix}"
            try:
                return self.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), name
            except FileExistsError:
                continue
        raise FileExistsError(errno.EEXIST, "no unused temporary name", self.path)

    def lstat(self, name):
        return os.stat(name, dir_fd=self.fd, follow_symlinks=False)

    def unlink(self, name):
        """Remove the name (a link is removed, never what it points to)."""
        _check_name(name)
        os.unlink(name, dir_fd=self.fd)

    def rmtree(self, name):
        """Remove the directory ``name`` and all below it, every step relative
        to an fd opened without following links (a link inside is removed,
        never followed): what shutil.rmtree does with dir_fd, on Python 3.9 too."""
        _check_name(name)
        try:
            fd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                os.unlink(name, dir_fd=self.fd)       # a link or file: the name only
                return
            raise
        child = Dir(fd, self.join(name), os.fstat(fd))
        with child:
            for entry in child.listdir():
                try:
                    os.unlink(entry, dir_fd=child.fd)
                except IsADirectoryError:
                    child.rmtree(entry)
        os.rmdir(name, dir_fd=self.fd)

    def rename(self, src, dst):
        _check_name(src)
        _check_name(dst)
        os.rename(src, dst, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def replace(self, src, dst):
        """Rename ``src`` over ``dst`` (a link at ``dst`` is replaced, not
        followed); a directory planted at ``dst`` is moved aside first."""
        try:
            self.rename(src, dst)
        except (IsADirectoryError, FileExistsError, OSError) as exc:
            if exc.errno not in (errno.EISDIR, errno.EEXIST, errno.ENOTEMPTY):
                raise
            self._remove_planted(dst, "a directory where a file belongs")
            self.rename(src, dst)


def planted(path, why, done):
    """Say what was done with a planted name (stderr: the monitor's output)."""
    import sys
    sys.stderr.write(f"autoremedy: {path}: {why}, not ours (planted?): {done}\n")


def _foreign(st):
    return (f"owned by uid {st.st_uid} gid {st.st_gid}: not made in this directory "
            "by root, us or its group")


def _blocking(fd, flags):
    if not flags & os.O_NONBLOCK:
        os.set_blocking(fd, True)


def _check_name(name):
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise ValueError(f"not a plain file name: {name!r}")


class _Held:
    """A directory ``kept`` open. Each ``open_dir`` of it gets its own handle on
    the one fd; the fd is closed when the block has ended and the last handle
    is closed — a thread still using it then (the forwarder's heartbeat) never
    finds its fd closed, or reused for another file, under its feet."""

    def __init__(self, directory):
        import threading
        self.dir = directory
        self.users = 0
        self.ended = False
        self.lock = threading.Lock()

    def lend(self):
        with self.lock:
            if self.ended:
                return None
            self.users += 1
        return _Lent(self)

    def give_back(self):
        with self.lock:
            self.users -= 1
            last = self.ended and not self.users
        if last:
            self.dir.close()

    def end(self):
        with self.lock:
            self.ended = True
            last = not self.users
        if last:
            self.dir.close()


class _Lent(Dir):
    """A handle on a held directory: closing it gives it back."""

    def __init__(self, held):
        super().__init__(held.dir.fd, held.dir.path, held.dir.stat)
        self._held = held

    def close(self):
        if self.fd is not None:
            self.fd = None
            self._held.give_back()


_kept = {}          # normalized path -> _Held, while a ``kept`` block runs


@contextlib.contextmanager
def kept(*paths):
    """Hold the verified directories ``paths`` open for a block (a replay run):
    ``open_dir`` of one of them returns a handle on the fd verified on entry
    instead of walking from ``/`` again — for 2000 events that walk was a fifth
    of replay's time. Nothing is trusted that was not before: the fd is the
    directory that passed the walk, so a link or directory planted at its name
    later is never followed (we keep working in the verified one), and every
    file in it is still checked when opened. Directories that do not exist are
    not held. Any thread's ``open_dir`` uses them while the block runs."""
    held = []
    try:
        for path in paths:
            path = os.path.normpath(os.path.abspath(path))
            if path in _kept:
                continue
            try:
                _kept[path] = _Held(open_dir(path))
            except FileNotFoundError:
                continue
            held.append(path)
        yield
    finally:
        for path in held:
            _kept.pop(path).end()


def open_dir(path, create=False, private=False):
    """The directory ``path``, walked from ``/`` component by component (see the
    module text); missing components are created when ``create``; ``private``
    makes (or insists on) the last one ours alone, 0700. Inside a ``kept`` block
    a held directory is returned as it was verified (never a private one)."""
    path = os.path.normpath(os.path.abspath(path))
    held = None if private else _kept.get(path)
    if held is not None:
        lent = held.lend()
        if lent is not None:
            return lent
    fd = os.open("/", _DIR_FLAGS)
    current = Dir(fd, "/", os.fstat(fd))
    parts = [part for part in path.split("/") if part]
    try:
        for i, part in enumerate(parts):
            last = private and i == len(parts) - 1
            if current.trusted and not last:
                current = _step_trusted(current, part, create)
            else:
                child = current.subdir(part, create, private=last)
                current.close()
                current = child
    except BaseException:
        current.close()
        raise
    return current


def _step_trusted(current, part, create):
    """Below a directory only root or we can write, a symbolic link is the
    administrator's (/var/lib/autoremedy -> /srv/...): it may be followed."""
    if create:
        try:
            os.mkdir(part, 0o750, dir_fd=current.fd)
        except FileExistsError:
            pass
    try:
        fd = os.open(part, _DIR_FLAGS, dir_fd=current.fd)
    finally:
        current.close()
    return Dir(fd, current.join(part), os.fstat(fd))


def pinned_path(directory):
    """A path naming the open, verified ``directory`` itself, for a tool that takes
    paths (mariadb-dump's ``--result-file``, a child's working directory):
    ``/proc/<our pid>/fd/<its fd>``. The kernel resolves it through our fd, so a
    component above the directory renamed or swapped for a link after we verified
    it cannot redirect what is written or read there. Valid while ``directory``
    stays open, in our children too (the same user may resolve our fds)."""
    return f"/proc/{os.getpid()}/fd/{directory.fd}"


def makedirs(path, private=False):
    """Create ``path`` and its missing parents the safe way (see open_dir)."""
    open_dir(path, create=True, private=private).close()


def read(path, limit=None):
    """The bytes of the file at ``path``; FileNotFoundError when it or its
    directory is missing, Refused when something was planted on the way."""
    with open_dir(os.path.dirname(os.path.abspath(path))) as directory:
        return directory.read(os.path.basename(path), limit)


def unlink(path):
    with open_dir(os.path.dirname(os.path.abspath(path))) as directory:
        directory.unlink(os.path.basename(path))
