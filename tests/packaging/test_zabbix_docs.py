"""docs/zabbix.md run as written: every ```sh block of the quick start, on the
session's real Zabbix 6.0 (zabbix_kit.py) with the StackStorm double, only the
example names replaced by this machine's (the page says which). The setup block
ends with `zabbix-setup --test`: one test alert through the alert-script media
type, as the zabbix user, to StackStorm — and its printed answer."""
import grp
import os
import re
import socket
import subprocess

import pytest
import yaml

from pkgenv import ROOT, VENV_BIN
from zabbix_kit import API_KEY, ZABBIX, base_config
from zabbix_stack import API_URL

DOC = os.path.join(ROOT, "docs", "zabbix.md")
pytestmark = pytest.mark.integration


def blocks(language):
    with open(DOC, encoding="utf-8") as handle:
        return re.findall(rf"^```{language}\n(.*?)^```", handle.read(), re.S | re.M)


@pytest.fixture
def machine(zabbix, st2, artefacts):
    """The example names of the page -> this machine's, and the environment the
    blocks run in (the node configuration and the definitions of this checkout)."""
    where = artefacts / "docs"
    where.mkdir(mode=0o755, exist_ok=True)
    password, key = where / "zabbix-admin.pw", where / "st2-api-key.in"
    password.write_text("zabbix\n")
    key.write_text(f"{API_KEY}\n")
    for path in (password, key):
        path.chmod(0o600)
    saved = zabbix.config.read_text()
    # The node's configuration as the package ships it: no StackStorm URL yet, the
    # key file where setup is to write it (here: a directory the test owns).
    # The state directory as the package makes /var/lib/autoremedy: root:autoremedy 2770.
    state = where / "state"
    state.mkdir(exist_ok=True)
    os.chown(state, 0, grp.getgrnam("autoremedy").gr_gid)
    os.chmod(state, 0o2770)
    config = dict(base_config(zabbix), state_dir=str(state),
                  stackstorm={"url": "", "api_key_file": str(where / "st2-api-key")})
    zabbix.config.write_text(yaml.safe_dump(config))
    names = {"https://zabbix.example.net": API_URL.rsplit("/", 1)[0], "https://st2.example.net": st2.url,
             "/root/zabbix-admin.pw": str(password), "/root/st2-api-key": str(key),
             "/usr/lib/zabbix/alertscripts": zabbix.path("alertscripts"),
             # in what setup prints: the configuration and the key file it writes
             "/etc/autoremedy/autoremedy.yaml": str(zabbix.config),
             "/etc/autoremedy/st2-api-key": str(where / "st2-api-key")}
    env = {"PATH": f"{VENV_BIN}:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": str(where),
           "AUTOREMEDY_CONFIG": str(zabbix.config), "AUTOREMEDY_ZABBIX_DIR": ZABBIX}
    yield names, env, where
    zabbix.config.write_text(saved)


def localise(text, names):
    for example, here in names.items():
        text = text.replace(example, here)
    return text


def run(block, names, env, cwd):
    return subprocess.run(["/bin/sh", "-euc", localise(block, names)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=180)


def comparable(line):
    """A printed line without what differs between runs: created/updated, the
    parenthesised details."""
    return re.sub(r"\b(created|updated)\b", "updated", line.split(" (")[0]).strip()


def test_the_quick_start_sets_up_and_the_test_alert_reaches_stackstorm(machine, st2):
    names, env, where = machine
    setup, node = blocks("sh")
    assert "zabbix-setup" in setup and "--test" in setup
    ran = run(setup, names, env, where)
    assert ran.returncode == 0, ran
    # A database that still has the all-in-one template of earlier versions gets a
    # line about it (the page says so); the test alert may print more than its verdict.
    printed = [line for line in ran.stdout.splitlines() if not line.startswith("template autoremedy: ")]
    expected = next(b for b in blocks("text") if b.startswith("template autoremedy node: imported")).splitlines()
    # What the page says it prints, line for line (ids, details and paths aside),
    # then the test alert's verdict, the last line.
    setup_lines = [line for line in printed if not line.startswith("test alert: ")]
    assert [comparable(line) for line in setup_lines] == [comparable(localise(line, names))
                                                          for line in expected[:-1]], ran.stdout
    assert comparable(printed[-1]) == comparable(expected[-1]), ran.stdout
    assert printed[-1].startswith("test alert: autoremedy: zabbix alert: delivered to StackStorm"), ran.stdout
    # StackStorm has the test alert: a notice from this host, never remediated.
    [got] = [a["body"] for a in st2.accepted() if a["body"]["event"]["labels"].get("autoremedy_test")]
    assert got["event"]["host"] == socket.gethostname() and got["event"]["source"] == "zabbix"
    assert got["autoremedy"]["local"] == [] and got["autoremedy"]["spooled_at"]
    # The files and modes the page names.
    key = os.stat(names["/etc/autoremedy/st2-api-key"])
    assert (key.st_uid, oct(key.st_mode & 0o777)) == (0, "0o640")
    assert yaml.safe_load(open(names["/etc/autoremedy/autoremedy.yaml"]))["stackstorm"]["url"] == st2.url

    # A second run changes nothing and says so; --test again reaches StackStorm.
    again = run(setup, names, env, where)
    assert again.returncode == 0 and "stackstorm.url already" in again.stdout, again

    # What the operator sees on the node.
    seen = run(node, names, env, where)
    assert seen.returncode == 0, seen
    assert "SPOOL OK" in seen.stdout and "spool" in seen.stdout.lower()


def test_without_stackstorm_the_test_alert_says_so_and_fails(machine, st2):
    """--test is the proof the path works: StackStorm not taking the test alert is exit 5."""
    names, env, where = machine
    setup, _ = blocks("sh")
    st2.set_mode("down")
    try:
        ran = run(setup, names, env, where)
    finally:
        st2.set_mode("up")
    assert ran.returncode == 5, ran
    assert "test alert: autoremedy: zabbix alert: kept for delivery" in ran.stdout, ran.stdout
    assert ran.stderr.strip().splitlines()[-1].startswith("autoremedy: test alert: the test alert did not reach "
                                                          "StackStorm"), ran.stderr
    assert "Traceback" not in ran.stderr


def test_the_measured_figures_name_the_module_that_measures_them():
    text = open(DOC, encoding="utf-8").read()
    measured = text.split("## Measured", 1)[1]
    [command] = [b for b in blocks("text") if "pytest" in b]
    module = re.search(r"tests/packaging/\S+\.py", command).group(0)
    assert os.path.exists(os.path.join(ROOT, module)) and module in measured
    assert re.search(r"\| \d+\.\d – \d+\.\d s \|", measured), "the figures"
