"""``restart_request.py DIR``: the `restart_compute` argv of the real-Nova tests.

nova-compute runs under the test's harness, not systemd, so "restart it" is a
request the test process carries out: this writes DIR/restart.req, waits for
DIR/restart.done (the harness stopped and started the compute) and exits with the
status written there, as `systemctl restart` would.
"""
import os
import sys
import time

folder = sys.argv[1]
done = os.path.join(folder, "restart.done")
with open(os.path.join(folder, "restart.req"), "w", encoding="utf-8") as handle:
    handle.write(str(os.getpid()))
deadline = time.monotonic() + 150
while not os.path.exists(done):
    if time.monotonic() > deadline:
        sys.exit("restart_request: the harness did not restart nova-compute in 150 s")
    time.sleep(0.2)
with open(done, encoding="utf-8") as handle:
    said = handle.read()
os.unlink(done)
print(said)
sys.exit(0 if said.startswith("restarted") else 1)
