"""The disk remediation says what it really does: every file listed, bytes really
freed beside bytes "removed", hard links / sparse files / open files accounted,
deleted-but-open files found with their holders, age by the newest of mtime and
ctime, host-wide rules only for their filesystem, deletion stops below a target.

Real tmpfs mounts; the remediation runs 10 days ahead (nodekit.future_env).
Every test snapshots the whole temporary tree (inside and outside the roots)
and reads ``df`` before and after.
"""
import json
import os
import subprocess
import sys

import pytest

from nodekit import fill, fresh, future_env

pytestmark = pytest.mark.integration
MiB = 1024 * 1024


def tree(top):
    out = {}
    for directory, dirs, files in os.walk(top):
        if directory == top:
            dirs[:] = [d for d in dirs if d != "state"]
        for name in dirs + files:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            out[path] = (st.st_mode >> 12, st.st_ino, st.st_size, st.st_blocks)
    return out


def df_used(mount):
    done = subprocess.run(["df", "-B1", "--output=used", mount], capture_output=True, text=True,
                          check=True)
    return int(done.stdout.split()[-1])


def config_for(make_config, mount, rules, **extra):
    return make_config({"remediations": {"disk": {"enabled": True, "targets": {mount: {
        "warning": 85, "critical": 95, **extra, "rules": rules}}}}})


def remediate(run_cli, config, mount, *extra, ahead=True):
    ran = run_cli("remediate", "disk", "--config", config, mount, *extra, "--json",
                  env=future_env() if ahead else None)
    out = json.loads(ran.stdout)
    out["_exit"] = ran.returncode
    return out


def notes(outcome):
    return " | ".join(outcome["notes"])


@pytest.fixture
def holder():
    """A process holding a file open (a daemon that never reopened its log)."""
    procs = []

    def hold(path):
        proc = subprocess.Popen(
            [sys.executable, "-c", "import sys, time\nf = open(sys.argv[1], 'rb')\n"
             "print('open', flush=True)\ntime.sleep(3600)", path],
            stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline() == "open\n"
        procs.append(proc)
        return proc
    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()


def test_every_file_is_listed_escaped_and_removed(run_cli, tmpfs, tmp_path, make_config):
    mount = tmpfs("16m", inodes=4000)
    logs = os.path.join(mount, "log")
    os.makedirs(logs)
    names = [f"app-{i:03d}.log.1" for i in range(261)] + ["evil\nname.log.1"]
    for name in names:
        fill(logs, 4096, name)
    fill(mount, 14 * MiB, "user-data")
    config = config_for(make_config, mount, [{"type": "rotated-logs", "root": logs,
                                              "older_than": "7d"}], target=10)
    before = tree(str(tmp_path))
    dry = run_cli("remediate", "disk", "--config", config, "--dry-run", mount, env=future_env())
    listed = [line for line in dry.stdout.splitlines() if line.startswith(f"      {logs}/")]
    assert len(listed) == 262, dry.stdout[-2000:]
    assert f"      {logs}/evil\\nname.log.1\tbytes=4096" in dry.stdout
    assert tree(str(tmp_path)) == before                        # a dry-run changes nothing
    outcome = remediate(run_cli, config, mount)
    [step] = outcome["plan"]
    assert len(step["files"]) == 262 and len(step["details"]) == 262
    [evil] = [f for f in step["files"] if f["path"] == f"{logs}/evil\\nname.log.1"]
    assert (evil["bytes"], evil["allocated"], evil["frees"], evil["links"]) == (4096, 4096, 4096, 1)
    assert "removed 262 file(s)" in notes(outcome)
    after = tree(str(tmp_path))
    gone = set(before) - set(after)
    assert gone == {os.path.join(logs, n) for n in names}
    assert all(after[p] == before[p] for p in after if p != logs)   # nothing else touched


def test_freed_is_measured_sparse_hardlinks_and_open_files(run_cli, tmpfs, tmp_path, make_config,
                                                          holder):
    mount = tmpfs("16m")
    logs, keep = os.path.join(mount, "log"), os.path.join(mount, "keep")
    os.makedirs(logs)
    os.makedirs(keep)
    sparse = os.path.join(logs, "sparse.log.1")                 # 100 MiB apparent, 1 MiB allocated
    with open(sparse, "wb") as handle:
        handle.truncate(100 * MiB)
        handle.write(b"x" * MiB)
    linked = fill(logs, 2 * MiB, "linked.log.1")                 # another name outside the root
    os.link(linked, os.path.join(keep, "linked-elsewhere"))
    held = fill(logs, 3 * MiB, "held.log.1")                     # still open by a process
    proc = holder(held)
    plain = fill(logs, 4 * MiB, "plain.log.1")
    fill(mount, int(5.5 * MiB), "user-data")
    config = config_for(make_config, mount, [{"type": "rotated-logs", "root": logs,
                                              "older_than": "7d"}], target=10)
    before, used_before = tree(str(tmp_path)), df_used(mount)
    dry = run_cli("remediate", "disk", "--config", config, "--dry-run", mount, env=future_env())
    assert f"{linked}\tbytes={2 * MiB}" in dry.stdout
    assert "KEPT: 1 other hard link(s) outside the plan (deleting frees nothing)" in dry.stdout
    assert f"KEPT: held open by pid {proc.pid} (python" in dry.stdout
    assert "remove up to 2 file(s)" in dry.stdout
    assert "104.0MiB in file sizes, frees 5.0MiB of allocated blocks" in dry.stdout
    outcome = remediate(run_cli, config, mount)
    used_after = df_used(mount)
    assert outcome["outcome"] == "remediated", outcome
    assert "removed 2 file(s), 104.0MiB in file sizes, freed 5.0MiB of allocated blocks" \
        in notes(outcome)
    reported = sum(f["frees"] for f in outcome["plan"][0]["files"]
                   if f["path"] in (sparse, plain))
    freed = used_before - used_after
    assert abs(reported - freed) <= 0.1 * freed, (reported, freed)
    assert "freed 5.0MiB (files removed by rules: 5.0MiB of allocated blocks)" in notes(outcome)
    after = tree(str(tmp_path))
    assert set(before) - set(after) == {sparse, plain}
    assert all(after[p] == before[p] for p in after if p != logs and p != os.path.join(keep, "linked-elsewhere")
               and p != linked)
    assert os.path.exists(linked) and os.path.exists(held) and proc.poll() is None


def test_deleted_but_open_files_are_named_with_their_holders(run_cli, tmpfs, make_config, holder):
    mount = tmpfs("10m")
    logs = os.path.join(mount, "log")
    os.makedirs(logs)
    fill(mount, int(2.75 * MiB), "user-data")
    rotated = fill(logs, 7 * MiB, "agent.log")
    proc = holder(rotated)
    os.unlink(rotated)                                          # rotated away, still written to
    rules = [{"type": "rotated-logs", "root": logs, "older_than": "7d"}]
    config = config_for(make_config, mount, rules)
    outcome = remediate(run_cli, config, mount)
    assert outcome["outcome"] == "failed"
    text = json.dumps(outcome)
    assert f"{rotated} (deleted)" in text and f"pid {proc.pid} (python" in text
    assert "held by deleted open files" in outcome["reason"]
    assert df_used(mount) > 9 * MiB                             # nothing freed, nothing truncated
    truncating = config_for(make_config, mount, rules + [
        {"type": "deleted-open", "truncate": True, "patterns": ["*.log"]}])
    used_before = df_used(mount)
    outcome = remediate(run_cli, truncating, mount)
    assert outcome["outcome"] == "remediated", outcome
    assert f"truncated {rotated} (deleted, held by pid {proc.pid})" in notes(outcome)
    assert used_before - df_used(mount) >= 7 * MiB - 64 * 1024
    assert proc.poll() is None                                  # the holder was not touched


def test_age_is_the_newest_of_mtime_and_ctime(run_cli, tmpfs, make_config):
    """``tar x``/``cp -p`` keep an old mtime: the file arrived now (ctime)."""
    mount = tmpfs("10m")
    logs = os.path.join(mount, "log")
    os.makedirs(logs)
    extracted = fill(logs, 3 * MiB, "restored.log.1")
    old = os.stat(extracted).st_mtime - 30 * 86400
    os.utime(extracted, (old, old))                             # "30 days old" by mtime
    fill(mount, int(6.8 * MiB), "user-data")
    config = config_for(make_config, mount, [{"type": "rotated-logs", "root": logs,
                                              "older_than": "7d"}])
    outcome = remediate(run_cli, config, mount, ahead=False)
    assert outcome["outcome"] == "failed"
    assert "nothing the rules may delete" in outcome["reason"]
    assert os.path.exists(extracted)


def test_host_wide_rules_run_only_for_their_filesystem_and_deletion_stops_below_target(
        run_cli, tmpfs, tmp_path, make_config):
    mount = tmpfs("10m")
    logs = os.path.join(mount, "log")
    os.makedirs(logs)
    files = []
    for n in range(5):                                          # oldest: n = 4
        path = fill(logs, int(1.8 * MiB), f"app.log.{n}")
        fresh(path, days=5 - n)                                 # ages 5..9 days at the run
        files.append(path)
    bin_dir = tmp_path / "bin"                                  # journalctl/apt-get that log calls
    bin_dir.mkdir()
    calls = tmp_path / "calls.log"
    for name in ("journalctl", "apt-get"):
        (bin_dir / name).write_text(f"#!/bin/sh\necho {name} \"$@\" >> {calls}\n")
        (bin_dir / name).chmod(0o755)
    config = config_for(make_config, mount, [
        {"type": "rotated-logs", "root": logs, "older_than": "2d"},
        {"type": "journal", "vacuum_size": "100M"}, {"type": "apt-cache"}], target=60)
    used_before = df_used(mount)
    env = dict(future_env(), AUTOREMEDY_EXEC_PATH=f"{bin_dir}:/usr/bin:/bin")
    ran = run_cli("remediate", "disk", "--config", config, mount, "--json", env=env)
    outcome = json.loads(ran.stdout)
    assert outcome["outcome"] == "remediated", outcome
    steps = [s["step"] for s in outcome["plan"]]
    assert any(s.startswith("skip journal: its data (/var/log/journal, /run/log/journal) is not "
                            f"on the filesystem of {mount}") for s in steps)
    assert any(s.startswith("skip apt-cache:") for s in steps)
    assert not calls.exists()                                   # never run host-wide
    # 90% -> below 60%: the two oldest go, the rest stay
    assert [os.path.exists(p) for p in files] == [True, True, True, False, False]
    assert "stopped below 60% used with 3 file(s) left" in notes(outcome)
    assert used_before - df_used(mount) == pytest.approx(3.6 * MiB, rel=0.1)
