"""The spool: durable, ordered, one entry per event, claims, dead letters; and
kill -9 at random points of spooling loses nothing and corrupts nothing."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from autoremedy.pipeline.event import from_sensu
from autoremedy.contract.remediation import Outcome
from autoremedy.pipeline.spool import CorruptEntry, Spool


def go_event(sensu_go, n, status=2):
    data = json.loads(json.dumps(sensu_go))
    data["id"] = f"evt-{n:05d}"
    data["check"]["status"] = status
    data["check"]["state"] = "failing" if status else "passing"
    return from_sensu(data)


def test_put_writes_one_file_and_load_gives_the_event_back(tmp_path, sensu_go):
    spool = Spool(str(tmp_path))
    entry = spool.put(go_event(sensu_go, 1))
    assert sorted(os.listdir(spool.dir)) == sorted([entry.name, ".lock"])
    again = spool.load(entry.name)
    assert again.id == "evt-00001"
    assert again.event.to_dict(with_raw=True) == go_event(sensu_go, 1).to_dict(with_raw=True)
    assert again.data["claim"]["pid"] == os.getpid()
    assert oct(os.stat(entry.path).st_mode & 0o777) == "0o640"


def test_names_are_in_spooling_order_and_hold_no_event_text(tmp_path, sensu_go):
    spool = Spool(str(tmp_path))
    ids = [spool.put(go_event(sensu_go, n)).id for n in (5, 1, 9, 3)]
    assert [spool.load(n).id for n in spool.names()] == ids
    for name in spool.names():
        stamp, key = name[:-5].split("-")
        assert stamp.isdigit() and len(key) == 32 and all(c in "0123456789abcdef" for c in key)


def test_the_same_event_again_updates_one_entry_keeping_order_and_marks(tmp_path, sensu_go):
    spool = Spool(str(tmp_path))
    first = spool.put(go_event(sensu_go, 1))
    spool.put(go_event(sensu_go, 2))
    outcome = Outcome("process", "svc", "remediated", "verified OK", verify={"status": "OK"})
    first.mark_local(outcome, "node-1")
    spool.save(first)
    again = spool.put(go_event(sensu_go, 1))
    assert spool.names()[0] == first.name == again.name
    assert len(spool.names()) == 2
    assert again.local[0]["outcome"] == "remediated"


def test_a_resolution_does_not_overwrite_its_problem(tmp_path, sensu_go):
    spool = Spool(str(tmp_path))
    spool.put(go_event(sensu_go, 1, status=2))
    spool.put(go_event(sensu_go, 1, status=0))
    assert [spool.load(n).event.status.name for n in spool.names()] == ["CRITICAL", "OK"]


def test_claims_hold_while_the_process_lives(tmp_path, sensu_go):
    spool = Spool(str(tmp_path))
    entry = spool.put(go_event(sensu_go, 1))
    assert Spool.claimed(entry) is False                 # our own claim never blocks us
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        entry.data["claim"] = {"pid": sleeper.pid, "until": time.time() + 60}
        assert Spool.claimed(entry) is True
        entry.data["claim"]["until"] = time.time() - 1
        assert Spool.claimed(entry) is False             # expired
        entry.data["claim"]["until"] = time.time() + 60
    finally:
        sleeper.kill()
        sleeper.wait()
    assert Spool.claimed(entry) is False                 # dead process


def test_save_after_the_entry_was_delivered_spools_the_marks_again(tmp_path, sensu_go):
    spool = Spool(str(tmp_path))
    entry = spool.put(go_event(sensu_go, 1))
    spool.remove(entry)
    entry.mark_escalated("verification failed")
    spool.save(entry)
    assert len(spool.names()) == 1
    assert spool.load(spool.names()[0]).data["escalation"]["reason"] == "verification failed"


def test_stats_depth_age_and_dead_letters(tmp_path, sensu_go):
    spool = Spool(str(tmp_path))
    assert spool.stats()["depth"] == 0 and spool.stats()["oldest_age"] is None
    spool.put(go_event(sensu_go, 1))
    spool.put(go_event(sensu_go, 2))
    spool.deadletter(b"\xff garbage", "not valid UTF-8", "sensu")
    stats = spool.stats(now=time.time() + 100)
    assert stats["depth"] == 2 and stats["deadletter"] == 1
    assert 99 <= stats["oldest_age"] <= 102


def test_dead_letters_keep_the_raw_bytes_and_the_reason(tmp_path):
    spool = Spool(str(tmp_path))
    path = spool.deadletter(b"\x00\xffraw", "bad input", "zabbix")
    with open(path, "rb") as handle:
        assert handle.read() == b"\x00\xffraw"
    with open(path[:-4] + ".json") as handle:
        meta = json.load(handle)
    assert meta["reason"] == "bad input" and meta["size"] == 5 and meta["source"] == "zabbix"


def test_a_corrupt_entry_is_reported_and_can_be_quarantined(tmp_path, sensu_go):
    spool = Spool(str(tmp_path))
    entry = spool.put(go_event(sensu_go, 1))
    with open(entry.path, "w") as handle:
        handle.write('{"v": 1, "event": ')
    with pytest.raises(CorruptEntry):
        spool.load(entry.name)
    spool.quarantine(entry.name, "test")
    assert spool.names() == [] and spool.stats()["deadletter"] == 1


def test_temp_files_of_killed_writers_are_swept_when_old(tmp_path):
    spool = Spool(str(tmp_path))
    os.makedirs(spool.dir)
    old = os.path.join(spool.dir, ".tmp-abc.part")
    new = os.path.join(spool.dir, ".tmp-def.part")
    for path in (old, new):
        with open(path, "w") as handle:
            handle.write("{half")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert spool.sweep_temp() == 1
    assert os.path.exists(new) and not os.path.exists(old)


WRITER = """\
import json, sys
from autoremedy.pipeline.event import from_sensu
from autoremedy.pipeline.spool import Spool
base = json.load(open(sys.argv[2]))
spool = Spool(sys.argv[1])
for n in range(int(sys.argv[3]), 10**6):
    base["id"] = f"kill-{n:07d}"
    base["check"]["output"] = "x" * 20000      # a few pages per entry: a wide window to die in
    spool.put(from_sensu(base))
    print(n, flush=True)
"""


def test_kill_9_during_spooling_never_leaves_a_corrupt_or_lost_entry(tmp_path, sensu_go):
    """Writers killed with SIGKILL at random moments: every event a writer reported
    as spooled is there and readable, and no file in the order is torn."""
    fixture = tmp_path / "event.json"
    fixture.write_text(json.dumps(sensu_go))
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    state = tmp_path / "state"
    rng = random.Random(4242)
    reported, start = set(), 0
    for _ in range(25):
        proc = subprocess.Popen([sys.executable, str(script), str(state), str(fixture), str(start)],
                                stdout=subprocess.PIPE, text=True)
        # Kill at a random moment once it is spooling: on a loaded machine the start-up
        # alone can outlast any fixed delay, and a writer killed before it begins tests nothing.
        first = proc.stdout.readline()
        time.sleep(rng.uniform(0.0, 0.2))
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        done = [int(line) for line in (first + out).split()]
        reported.update(f"kill-{n:07d}" for n in done)
        start = (max(done) + 1 if done else start) + 1000   # fresh ids for the next writer
    spool = Spool(str(state))
    ids = set()
    for name, entry in spool.entries():
        assert not isinstance(entry, CorruptEntry), f"torn spool file {name}"
        ids.add(entry.id)
    assert reported, "the writers never got to spool anything"
    assert reported <= ids                      # reported spooled => really spooled
    assert len(ids - reported) <= 25            # at most the one in flight per kill
    leftovers = [n for n in os.listdir(spool.dir) if n.startswith(".tmp-")]
    assert all(n.endswith(".part") for n in leftovers)
    assert spool.sweep_temp(now=time.time() + 3600) == len(leftovers)
