"""The Zabbix server's side of ``autoremedy zabbix-setup --via script``: the
configuration the alert script reads, and a test alert through it.

The alert-script media type runs ``autoremedy handle zabbix`` as the ``zabbix``
user with the server's environment, so it reads ``$AUTOREMEDY_CONFIG`` or
``/etc/autoremedy/autoremedy.yaml`` — not the webhook media type's macros. Setup
therefore writes ``stackstorm.url`` (and ``stackstorm.api_key_file``) there, puts
the API key in that file (owner root, group autoremedy or the alert user's
group, mode 0640), and then verifies what the alert user will see: a URL, a
readable configuration, a readable key nobody else can read. While any of that
is missing an alert would only spool and fall back, and setup says so and fails.

The file is edited line by line (``stackstorm:`` block, ``url:`` and
``api_key_file:`` lines) so the operator's comments stay; the result is parsed
back and must equal the intended configuration, else nothing is written.
"""
import grp
import json
import os
import pwd
import re
import stat
import subprocess
import tempfile
import time

DEFAULT_CONFIG = "/etc/autoremedy/autoremedy.yaml"
DEFAULT_KEY_FILE = "/etc/autoremedy/st2-api-key"
SHARED_GROUP = "autoremedy"          # the packages' group of the monitoring users


class NodeError(Exception):
    """The node configuration cannot be written or would make alerts fall back."""


# --- editing the YAML, keeping its comments ---------------------------------------------

_TOP = re.compile(r"^stackstorm:\s*(#.*)?$")


def _scalar(value):
    return json.dumps(value)         # a JSON string is a valid YAML double-quoted scalar


def edit_stackstorm(text, values):
    """``text`` with ``stackstorm.<key>: value`` set for each of ``values``."""
    import yaml
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if _TOP.match(line)), None)
    if start is None:
        block = ["stackstorm:"] + [f"  {k}: {_scalar(v)}" for k, v in values.items()]
        out = lines + ([""] if lines and lines[-1].strip() else []) + block
    else:
        end = start + 1
        while end < len(lines) and (not lines[end].strip() or lines[end][0] in " \t#"):
            end += 1
        body = lines[start + 1:end]
        indent = next((re.match(r"[ \t]+", line).group(0) for line in body
                       if line.strip() and not line.lstrip().startswith("#")), "  ")
        for key, value in values.items():
            pattern = re.compile(rf"^{re.escape(indent)}{re.escape(key)}:(\s|$)")
            found = next((i for i, line in enumerate(body) if pattern.match(line)), None)
            line = f"{indent}{key}: {_scalar(value)}"
            if found is None:
                body.insert(0, line)
            else:
                body[found] = line
        out = lines[:start + 1] + body + lines[end:]
    new = "\n".join(out) + "\n"
    before = yaml.safe_load(text) or {}
    after = yaml.safe_load(new) or {}
    expected = dict(before)
    expected["stackstorm"] = dict(before.get("stackstorm") or {}, **values)
    if after != expected:
        raise NodeError("cannot edit the stackstorm section in place (unusual YAML layout): "
                        f"set {', '.join(f'stackstorm.{k}' for k in values)} by hand")
    return new


def _write_like(path, data, mode=0o640, uid=0, gid=0):
    """Atomic replace of ``path``, keeping an existing file's owner and mode."""
    try:
        st = os.stat(path)
        mode, uid, gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
    except FileNotFoundError:
        pass
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".zabbix-setup-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if os.geteuid() == 0:
            os.chown(tmp, uid, gid)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# --- who the alert user is, what it can read ---------------------------------------------

class User:
    def __init__(self, name):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise NodeError(f"alert user {name!r} does not exist (--alert-user: the user "
                            "zabbix_server runs as)") from None
        self.name, self.uid, self.gid = name, entry.pw_uid, entry.pw_gid
        self.groups = {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if name in g.gr_mem}

    def key_group(self):
        """The group the key file is shared with: autoremedy when the user is in
        it (the packages' layout), else the user's own group."""
        try:
            shared = grp.getgrnam(SHARED_GROUP).gr_gid
        except KeyError:
            return self.gid
        return shared if shared in self.groups else self.gid

    def can(self, path, bit):
        """May this user read (bit 4) / traverse (1) ``path``, by the mode bits?"""
        st = os.stat(path)
        if self.uid == 0:
            return True
        if st.st_uid == self.uid:
            return bool(st.st_mode & (bit << 6))
        if st.st_gid in self.groups:
            return bool(st.st_mode & (bit << 3))
        return bool(st.st_mode & bit)

    def can_read(self, path):
        path = os.path.abspath(path)
        parent = os.path.dirname(path)
        while True:
            if not self.can(parent, 1):
                return False, f"{self.name} cannot enter {parent}"
            if parent == "/":
                break
            parent = os.path.dirname(parent)
        if not self.can(path, 4):
            return False, f"{self.name} cannot read {path}"
        return True, ""


# --- the node configuration ------------------------------------------------------------------

def wire(path, user_name, st2_url=None, key=None, report=print):
    """Write (with ``st2_url``/``key``) or only verify the alert script's
    configuration; NodeError when an alert would fall back for lack of it."""
    user = User(user_name)
    if st2_url:
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            text = ""
        except OSError as exc:
            raise NodeError(f"{path}: {exc.strerror}") from None
        import yaml
        current = (yaml.safe_load(text) or {}).get("stackstorm") or {}
        key_file = current.get("api_key_file") or DEFAULT_KEY_FILE
        values = {"url": st2_url, "api_key_file": key_file}
        if all(current.get(k) == v for k, v in values.items()):
            report(f"node configuration {path}: stackstorm.url already {st2_url}")
        else:
            try:
                _write_like(path, edit_stackstorm(text, values), 0o640, 0, user.key_group())
            except OSError as exc:
                raise NodeError(f"cannot write {path}: {exc.strerror or exc} (run zabbix-setup as "
                                "root on the Zabbix server, or give --node-config)") from None
            report(f"node configuration {path}: stackstorm.url = {st2_url}")
        if key is not None:
            write_key(key_file, key, user, report)
    verify(path, user, report)


def write_key(path, key, user, report):
    try:
        with open(path, encoding="utf-8") as handle:
            same = handle.read().strip() == key
    except OSError:
        same = False
    gid = user.key_group()
    try:
        if not same:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            _write_like(path, key + "\n", 0o640, 0, gid)
        st = os.stat(path)
        if os.geteuid() == 0 and (st.st_uid, st.st_gid) != (0, gid):
            os.chown(path, 0, gid)
        if stat.S_IMODE(st.st_mode) != 0o640:
            os.chmod(path, 0o640)
    except OSError as exc:
        raise NodeError(f"cannot write the API key file {path}: {exc.strerror or exc}") from None
    report(f"API key file {path}: {'written' if not same else 'kept'} "
           f"(root:{grp.getgrgid(gid).gr_name} 0640)")


def verify(path, user, report=print):
    """What the alert user will find: NodeError naming the first gap."""
    from autoremedy.config import Config, ConfigError
    if not os.path.exists(path):
        raise NodeError(f"{path} does not exist: the alert script would fall back for lack of "
                        "configuration (give --st2-url to write it)")
    ok, why = user.can_read(path)
    if not ok:
        raise NodeError(f"{path}: {why}: the alert script would run without its configuration")
    try:
        config = Config.load(path, environ={})
    except ConfigError as exc:
        raise NodeError(f"{path}: {exc}") from None
    url = config.get("stackstorm.url")
    if not url:
        raise NodeError(f"{path}: stackstorm.url is empty: every alert would say \"StackStorm is "
                        "not configured\" and only spool (give --st2-url)")
    key_file = config.get("stackstorm.api_key_file")
    if not key_file:
        raise NodeError(f"{path}: stackstorm.api_key_file is not set: StackStorm would refuse "
                        "every alert (give --st2-api-key-file)")
    if not os.path.exists(key_file):
        raise NodeError(f"API key file {key_file} does not exist (give --st2-api-key-file)")
    st = os.stat(key_file)
    if st.st_mode & 0o007:
        raise NodeError(f"API key file {key_file} is readable by everyone (mode "
                        f"{stat.S_IMODE(st.st_mode):04o}): chmod 0640")
    if st.st_uid not in (0, user.uid):
        raise NodeError(f"API key file {key_file} is owned by uid {st.st_uid}, neither root "
                        f"nor {user.name}: whoever owns it can change the key")
    ok, why = user.can_read(key_file)
    if not ok:
        raise NodeError(f"API key file {key_file}: {why}: StackStorm would refuse every alert")
    report(f"node configuration {path}: verified for {user.name} (StackStorm {url}, "
           f"key {key_file} {stat.S_IMODE(st.st_mode):04o})")
    return config


# --- a test alert through the alert script ------------------------------------------------------

def test_message(host):
    """An internal-source event (a notice: forwarded, never remediated) with no
    Zabbix event id (its id is hashed, so it never shadows a real event)."""
    return json.dumps({"event_source": "3", "value": "1", "status": "PROBLEM", "severity": "1",
                       "host": host, "trigger": "autoremedy zabbix-setup test alert",
                       "time": time.strftime("%Y.%m.%d %H:%M:%S"),
                       "tags": [{"tag": "autoremedy_test", "value": "zabbix-setup"}]}, indent=0)


def run_alert_script(script, user_name, config_path, host, sendto="autoremedy", timeout=60):
    """Run the alert script as Zabbix does (the alert user, a bare environment,
    SENDTO SUBJECT MESSAGE); returns (exit code, output)."""
    user = User(user_name)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
           "AUTOREMEDY_CONFIG": config_path}
    kwargs = {}
    if os.geteuid() == 0 and user.uid != 0:
        kwargs = {"user": user.uid, "group": user.gid, "extra_groups": sorted(user.groups)}
    try:
        proc = subprocess.run([script, sendto, "TEST: autoremedy zabbix-setup", test_message(host)],
                              capture_output=True, text=True, env=env, timeout=timeout, cwd="/",
                              **kwargs)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NodeError(f"cannot run the alert script {script}: {exc}") from None
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def alertscripts_dir(server_conf="/etc/zabbix/zabbix_server.conf"):
    """AlertScriptsPath from the server's configuration, else Debian's default."""
    try:
        with open(server_conf, encoding="utf-8") as handle:
            for line in handle:
                name, _, value = line.strip().partition("=")
                if name.strip() == "AlertScriptsPath" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return "/usr/lib/zabbix/alertscripts"
