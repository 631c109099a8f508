"""Helpers for the privilege tests: the bundle as the monitoring users run it,
a state directory laid out as the packages lay it out, and the users themselves.

The bundle is copied (with the libraries it needs) into a directory every user
can read and run with /usr/bin/python3 -S, the way the deb and the Sensu asset
run it: the test interpreter lives under /root, which sensu and zabbix cannot
enter.
"""
import grp
import json
import os
import pwd
import shutil
import subprocess
import uuid


HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
ROOT = os.path.dirname(TESTS)
FIXTURES = os.path.join(TESTS, "fixtures")
USERS = ("sensu", "zabbix")
GROUP = "autoremedy"
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
PYTHON = "/usr/bin/python3"
# The installed bundle and the third-party modules it imports at run time.
PACKAGES = ("autoremedy", "psutil", "yaml", "_yaml")
API_KEY = "priv-test-key-31c7"
MAIN = "import sys; from autoremedy.cli import main; sys.exit(main())"


def require_users():
    """The users and group exist (scripts/setup.d/47-users.sh makes them): a
    missing one is a failed test, never a skip."""
    try:
        group = grp.getgrnam(GROUP)
        users = {name: pwd.getpwnam(name) for name in USERS}
    except KeyError as exc:
        raise AssertionError(f"{exc} is missing: run scripts/setup.d/47-users.sh") from None
    for name, entry in users.items():
        assert name in group.gr_mem or entry.pw_gid == group.gr_gid, \
            f"{name} is not in group {GROUP}: run scripts/setup.d/47-users.sh"
    return group.gr_gid, {name: entry.pw_uid for name, entry in users.items()}


def stage_bundle(dest):
    """Copy the installed package and its libraries to ``dest``/lib (readable by all)."""
    import importlib.util
    lib = os.path.join(dest, "lib")
    os.makedirs(lib)
    site = os.path.dirname(os.path.dirname(os.path.abspath(
        importlib.util.find_spec("autoremedy").origin)))
    for name in os.listdir(site):
        base = name.split(".")[0]
        if base in PACKAGES and not name.endswith((".dist-info", ".egg-info", ".pth")):
            src = os.path.join(site, name)
            if os.path.isdir(src):
                shutil.copytree(src, os.path.join(lib, name),
                                ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, lib)
    for dirpath, dirnames, filenames in os.walk(dest):
        os.chmod(dirpath, 0o755)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o644)
    # Byte-compile as root, as the packages' postinst does (users cannot write here).
    subprocess.run([PYTHON, "-S", "-m", "compileall", "-q", lib], check=True,
                   stdout=subprocess.DEVNULL)
    return lib


def make_state(parent, gid):
    """<parent>/state as the postinst makes /var/lib/autoremedy: root:autoremedy 2770."""
    state = os.path.join(parent, "state")
    os.mkdir(state)
    os.chown(state, 0, gid)
    os.chmod(state, 0o2770)
    return state


class Node:
    """One node: a bundle, a configuration (root's, 0644), a state directory."""

    def __init__(self, base, lib, gid, uids):
        self.base, self.lib, self.gid, self.uids = base, lib, gid, uids
        self.state = make_state(base, gid)
        self.config = os.path.join(base, "autoremedy.yaml")
        self.outside = os.path.join(base, "outside")      # root's own, 0700
        os.mkdir(self.outside, 0o700)
        self.secret = os.path.join(self.outside, "secret")
        with open(self.secret, "w") as handle:
            handle.write("ROOT-ONLY-7f3a9c1e\n")
        os.chmod(self.secret, 0o600)
        self.write_config({})

    def write_config(self, data):
        data = dict(data, state_dir=self.state)
        data.setdefault("hostname", "node-under-test")
        with open(self.config, "w") as handle:
            json.dump(data, handle)                      # JSON is YAML
        os.chmod(self.config, 0o644)

    def env(self, extra=None):
        env = {"PATH": PATH, "PYTHONPATH": self.lib, "AUTOREMEDY_CONFIG": self.config,
               "LANG": "C.UTF-8", "HOME": "/"}
        env.update(extra or {})
        return env

    def run(self, user, *argv, input=None, env=None, timeout=60, umask=None):
        """``autoremedy ARGV`` as ``user`` ('root' runs it directly, with root's
        own group and umask 022: the sudo gate's worst case)."""
        command = [PYTHON, "-S", "-c", MAIN, *map(str, argv)]
        if user != "root":
            # runuser sets the user's groups (autoremedy among them) and its umask
            # is ours: 022, the harshest a service manager might leave.
            command = ["runuser", "-u", user, "--"] + command
        return subprocess.run(command, input=input, capture_output=True, text=True, cwd="/",
                              env=self.env(env), timeout=timeout)

    def tree(self):
        """{relative path: lstat} of everything in the state directory."""
        out = {}
        for dirpath, dirnames, filenames in os.walk(self.state):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                out[os.path.relpath(path, self.state)] = os.lstat(path)
        return out

    def readable_bytes(self):
        """Every byte a group member can read in the state directory (and what
        the outputs said is checked separately)."""
        chunks = []
        for rel, st in self.tree().items():
            path = os.path.join(self.state, rel)
            import stat
            if stat.S_ISREG(st.st_mode) and st.st_mode & 0o040:
                with open(path, "rb") as handle:
                    chunks.append(handle.read())
        return b"\n".join(chunks)


def sensu_event(status=2, check="proc-svc", labels=None):
    with open(os.path.join(FIXTURES, "sensu", "sensu-go-event.json")) as handle:
        event = json.load(handle)
    event["check"]["status"] = status
    event["check"]["state"] = "failing" if status else "passing"
    event["check"]["metadata"]["name"] = check
    event["id"] = str(uuid.uuid4())                  # one event each
    if labels is not None:
        event["check"]["metadata"]["labels"] = labels
    return json.dumps(event)


def zabbix_argv():
    with open(os.path.join(FIXTURES, "zabbix", "problem-message.json")) as handle:
        message = handle.read()
    return ["handle", "zabbix", "--", "ops@example.com", "PROBLEM: svc down", message]


def st2_double():
    import importlib.util
    spec = importlib.util.spec_from_file_location("st2_double",
                                                  os.path.join(TESTS, "doubles", "st2.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module




def st2_settings(double):
    return {"url": double.url, "connect_timeout": 1, "read_timeout": 2,
            "breaker_cooldown": "1s"}
