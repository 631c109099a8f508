"""What must fail closed on a node: an unwritable, full or read-only state
directory (forward anyway, refuse local work in one line, never 'internal
error'), an unclear dry-run flag (dry-run), credentials in a URL (never
shown), an API key no HTTP header can carry (a configuration error)."""
import os
import subprocess

import pytest

from privkit import API_KEY, sensu_event, st2_settings, zabbix_argv

TARGETS = lambda node: {"svc": {"start": ["/bin/sh", "-c", f"touch {node.base}/ran"],  # noqa: E731
                                "check": {"pidfile": os.path.join(node.base, "svc.pid")},
                                "settle": "1s"}}


def configure(node, st2=None, state_dir=None, **extra):
    data = {"remediations": {"process": {"enabled": True, "targets": TARGETS(node)}}}
    if st2 is not None:
        data["stackstorm"] = st2_settings(st2)
    data.update(extra)
    node.write_config(data)
    if state_dir:
        with open(node.config) as handle:
            text = handle.read().replace(f'"{node.state}"', f'"{state_dir}"')
        with open(node.config, "w") as handle:
            handle.write(text)


def hook(node, user, env):
    return node.run(user, "handle", "hook", "process", "--target", "svc",
                    "--pidfile", os.path.join(node.base, "svc.pid"), env=env)


def clean(ran):
    out = ran.stdout + ran.stderr
    assert "internal error" not in out and "Traceback" not in out, ran


def test_hook_as_a_user_who_cannot_write_the_state_directory_still_forwards(node, st2):
    configure(node, st2, state_dir=os.path.join(node.outside, "state"))   # root's 0700
    env = {"AUTOREMEDY_ST2_API_KEY": API_KEY}
    ran = hook(node, "zabbix", env)
    clean(ran)
    assert ran.returncode == 0 and "delivered to StackStorm" in ran.stdout, ran
    assert len(st2.requests) == 1
    for argv, stdin in ((zabbix_argv(), None), (["handle", "sensu"], sensu_event())):
        ran = node.run("zabbix", *argv, input=stdin, env=env)
        clean(ran)
        assert ran.returncode == 0 and "delivered to StackStorm" in ran.stdout, ran
        assert "cannot spool" in ran.stderr, ran            # said, in one line
    assert len(st2.requests) == 3
    st2.set_mode("down")
    ran = hook(node, "zabbix", env)
    clean(ran)
    assert ran.returncode == 1, ran
    assert "guard state cannot be kept" in ran.stdout + ran.stderr, ran
    assert not os.path.exists(os.path.join(node.base, "ran"))
    ran = node.run("zabbix", "remediate", "process", "svc", env=env)
    clean(ran)
    assert ran.returncode == 1 and "guard state cannot be kept" in ran.stdout, ran


@pytest.fixture
def full_state(node):
    """A state directory on its own tiny tmpfs, filled to the last byte."""
    where = os.path.join(node.base, "full")
    os.mkdir(where)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=2770", "tmpfs", where],
                   check=True)
    try:
        os.chown(where, 0, node.gid)
        subprocess.run(["dd", "if=/dev/zero", f"of={where}/filler", "bs=4k"],
                       capture_output=True)
        yield where
    finally:
        subprocess.run(["umount", "-l", where], check=True)


@pytest.mark.parametrize("how", ["full", "read-only"])
def test_hook_on_a_full_or_read_only_state_directory(node, st2, full_state, how):
    if how == "read-only":
        subprocess.run(["mount", "-o", "remount,ro", full_state], check=True)
    configure(node, st2, state_dir=full_state)
    env = {"AUTOREMEDY_ST2_API_KEY": API_KEY}
    ran = hook(node, "root", env)
    clean(ran)
    assert ran.returncode == 0 and "delivered to StackStorm" in ran.stdout, ran
    st2.set_mode("down")
    ran = hook(node, "root", env)
    clean(ran)
    assert ran.returncode == 1 and "guard state cannot be kept" in ran.stdout + ran.stderr, ran


@pytest.mark.parametrize("value", ["y", "enabled", "2", "dry", "maybe", " TRUE "])
def test_an_unclear_dry_run_flag_never_runs_a_remediation(node, value):
    configure(node)
    ran = node.run("root", "remediate", "process", "svc", env={"AUTOREMEDY_DRY_RUN": value})
    clean(ran)
    assert ran.returncode == 0 and "dry-run" in ran.stdout, ran
    assert not os.path.exists(os.path.join(node.base, "ran"))
    check = node.run("root", "config", "check", env={"AUTOREMEDY_DRY_RUN": value})
    if value.strip().lower() in ("y", "enabled", "dry", "true"):
        assert check.returncode == 0, check
    else:
        assert check.returncode == 3 and "AUTOREMEDY_DRY_RUN" in check.stderr, check


def test_credentials_in_a_url_are_never_shown(node):
    configure(node)
    secret = "KEY-0a9f33"
    for url in (f"https://user:{secret}@st2.invalid:99999/api",
                f"ftp://user:{secret}@st2.invalid/", f"https://user:{secret}@127.0.0.1:1/"):
        env = {"AUTOREMEDY_ST2_URL": url, "AUTOREMEDY_ST2_API_KEY": API_KEY}
        ran = node.run("zabbix", "handle", "sensu", input=sensu_event(), env=env)
        clean(ran)
        check = node.run("zabbix", "config", "check", env=env)
        assert check.returncode == 3, check
        for out in (ran.stdout, ran.stderr, check.stdout, check.stderr):
            assert secret not in out, out
    with open(os.path.join(node.state, "audit.log")) as handle:
        assert secret not in handle.read()


def test_an_api_key_no_header_can_carry_is_a_configuration_error(node, st2):
    configure(node, st2)
    env = {"AUTOREMEDY_ST2_API_KEY": "ключ-ab"}
    ran = node.run("zabbix", "handle", "sensu", input=sensu_event(), env=env)
    clean(ran)
    assert ran.returncode == 3 and "not latin-1" in ran.stderr, ran
    check = node.run("zabbix", "config", "check", env=env)
    assert check.returncode == 3 and "not latin-1" in check.stderr, check


@pytest.mark.parametrize("fmt", ["nagios", "zabbix", "json"])
def test_a_check_never_shows_credentials_of_a_url(fmt):
    from autoremedy.contract.render import render
    from autoremedy.contract.result import Result
    result = Result.unknown("rabbitmq-node", "cannot reach http://guest:PW-77c1@127.0.0.1:1/api")
    text, _ = render(result, fmt)
    assert "PW-77c1" not in text and "http://***@127.0.0.1:1/api" in text
