"""The one subprocess boundary. Every command a check or remediation runs goes through here.

Argument lists only (never a shell, never a string), a timeout on every call, a
clean, fixed environment, and the result as data. Tests replace the runner by
passing their own callable with the same signature wherever a ``runner`` is taken
(the masakari-monitors ``utils.execute`` seam).
"""
import os
import time


class CommandError(Exception):
    """A command could not be started, timed out, or (with check=True) failed."""

    def __init__(self, message, completed=None):
        super().__init__(message)
        self.completed = completed


class Completed:
    __slots__ = ("argv", "returncode", "stdout", "stderr", "duration")

    def __init__(self, argv, returncode, stdout, stderr, duration):
        self.argv, self.returncode = list(argv), returncode
        self.stdout, self.stderr, self.duration = stdout, stderr, duration

    @property
    def ok(self):
        return self.returncode == 0

    def brief(self, limit=300):
        """The command's last words, for audit records and error messages."""
        text = (self.stderr or self.stdout or "").strip().replace("\n", " / ")
        return text[-limit:]

    def __repr__(self):
        return f"Completed({self.argv!r}, rc={self.returncode})"


# PATH is fixed so a remediation run from Sensu's or Zabbix's environment finds the
# same systemctl/journalctl as one run by hand; LC_ALL=C keeps outputs parseable.
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def clean_env(extra=None):
    # AUTOREMEDY_EXEC_PATH exists for tests and unusual installs (e.g. a fake systemctl).
    env = {"PATH": os.environ.get("AUTOREMEDY_EXEC_PATH", SAFE_PATH), "LC_ALL": "C", "LANG": "C", "SYSTEMD_PAGER": ""}
    for name in ("HOME", "TMPDIR"):
        if name in os.environ:
            env[name] = os.environ[name]
    if extra:
        env.update(extra)
    return env


def run(argv, timeout=30.0, check=False, env=None, input=None, cwd=None, detach=False):
    """Run ``argv`` (a list of strings) and return a Completed.

    ``detach=True`` starts a long-running program in its own session and returns
    at once (returncode None): for "start command" remediations of daemons that
    do not fork themselves.
    """
    if isinstance(argv, (str, bytes)) or not argv:
        raise TypeError("execute.run takes a non-empty argument list, never a string")
    argv = [os.fspath(a) if isinstance(a, os.PathLike) else a for a in argv]
    for arg in argv:
        if not isinstance(arg, str):
            raise TypeError(f"argument {arg!r} is not a string")
        if "\0" in arg:
            raise ValueError("NUL byte in argument")
    import shutil
    import subprocess  # not on the start-up path of checks that never run a command


    environment = clean_env(env)
    # Resolve the program on the fixed PATH, not the caller's: Popen would use ours.
    program = argv[0] if os.sep in argv[0] else shutil.which(argv[0], path=environment["PATH"])
    if program is None:
        raise CommandError(f"{argv[0]}: command not found")
    argv = [program] + argv[1:]
    started = time.monotonic()
    try:
        if detach:
            subprocess.Popen(argv, env=environment, cwd=cwd, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True, close_fds=True)
            return Completed(argv, None, "", "", time.monotonic() - started)
        proc = subprocess.run(argv, env=environment, cwd=cwd, timeout=timeout, shell=False,
                              input=input, capture_output=True, text=True, errors="replace",
                              stdin=None if input is not None else subprocess.DEVNULL)
    except FileNotFoundError:
        raise CommandError(f"{argv[0]}: command not found") from None
    except PermissionError:
        raise CommandError(f"{argv[0]}: permission denied") from None
    except subprocess.TimeoutExpired:
        raise CommandError(f"{' '.join(argv)}: timed out after {timeout:g}s") from None
    done = Completed(argv, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)
    if check and not done.ok:
        raise CommandError(f"{' '.join(argv)}: exit {done.returncode}: {done.brief()}", done)
    return done


class Identity:
    """Who a started daemon runs as, and where: user and group (names), extra
    environment and working directory. Resolved before anything starts, so a
    misspelt user is an error, never a daemon started as root."""

    def __init__(self, user=None, group=None, environment=None, working_directory="/"):
        import grp
        import pwd
        self.user, self.group = user, group
        self.uid = self.gid = None
        self.extra_groups = None
        home = None
        if user is not None:
            try:
                entry = pwd.getpwnam(user)
            except KeyError:
                raise CommandError(f"no such user {user!r}") from None
            self.uid, self.gid, home = entry.pw_uid, entry.pw_gid, entry.pw_dir
            self.extra_groups = os.getgrouplist(user, entry.pw_gid)
        if group is not None:
            try:
                self.gid = grp.getgrnam(group).gr_gid
            except KeyError:
                raise CommandError(f"no such group {group!r}") from None
            if self.extra_groups is None:
                self.extra_groups = []
        self.env = {}
        if user is not None:
            self.env.update({"USER": user, "LOGNAME": user, "HOME": home or "/"})
        self.env.update(environment or {})
        self.cwd = working_directory or "/"

    def describe(self):
        import pwd
        try:
            me = pwd.getpwuid(os.geteuid()).pw_name
        except KeyError:
            me = f"uid {os.geteuid()}"
        parts = [f"as {self.user or me}"]
        if self.group:
            parts.append(f"group {self.group}")
        parts.append(f"in {self.cwd}")
        if self.env:
            parts.append("env " + ",".join(sorted(self.env)))
        return " ".join(parts)


def spawn(argv, identity=None, output=None, wait=1.0):
    """Start a daemon in its own session as ``identity`` and watch it for ``wait``
    seconds. Returns a Completed: ``returncode`` None while it still runs (its
    pid in ``stdout``), else its exit status with its output's last words — a
    start command that fails says so instead of being "started".

    ``output`` is a path its stdout and stderr go to (truncated first; created
    without following a symlink), else /dev/null."""
    import shutil
    import subprocess
    if isinstance(argv, (str, bytes)) or not argv:
        raise TypeError("execute.spawn takes a non-empty argument list, never a string")
    identity = identity or Identity()
    environment = clean_env(identity.env)
    program = argv[0] if os.sep in argv[0] else shutil.which(argv[0], path=environment["PATH"])
    if program is None:
        raise CommandError(f"{argv[0]}: command not found")
    argv = [program] + list(argv[1:])
    sink = subprocess.DEVNULL
    if output:
        sink = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                       | os.O_CLOEXEC, 0o640)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(argv, env=environment, cwd=identity.cwd, stdin=subprocess.DEVNULL,
                                stdout=sink, stderr=sink, start_new_session=True,
                                close_fds=True, user=identity.uid, group=identity.gid,
                                extra_groups=identity.extra_groups, umask=0o022)
    except FileNotFoundError as exc:
        missing = exc.filename or argv[0]
        raise CommandError(f"{missing}: not found (command or working directory)") from None
    except PermissionError:
        raise CommandError(f"{argv[0]}: permission denied") from None
    except (OSError, subprocess.SubprocessError) as exc:
        raise CommandError(f"{argv[0]}: cannot start: {exc}") from None
    finally:
        if output:
            os.close(sink)
    try:
        code = proc.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        return Completed(argv, None, str(proc.pid), "", time.monotonic() - started)
    return Completed(argv, code, "", _tail(output), time.monotonic() - started)


def _tail(path, limit=2000):
    if not path:
        return ""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - limit))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
