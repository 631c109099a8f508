"""``make demo`` end to end: the outcome of every step, and a clean machine
afterwards (no service, no StackStorm double, no mount, no temp directory),
also when the demo is interrupted."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(ROOT, "scripts", "demo.py")


def clean_env():
    return {k: v for k, v in os.environ.items() if not k.startswith("AUTOREMEDY_")}


def base_of(output):
    match = re.search(r"everything lives under (\S+);", output)
    assert match, output[:500]
    return match.group(1)


def leftovers(base):
    """Processes, mounts and files the demo left behind under ``base``."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as handle:
                    if base.encode() in handle.read():
                        found.append(f"process {name}")
            except OSError:
                continue
    with open("/proc/mounts") as handle:
        found += [f"mount {line.split()[1]}" for line in handle if base in line]
    if os.path.exists(base):
        found.append(f"directory {base}")
    return found


def run_demo(*args):
    return subprocess.run([sys.executable, DEMO, *args], capture_output=True, text=True,
                          env=clean_env(), cwd=ROOT, timeout=300)


STEPS = [
    "PROCESS CRITICAL: 0 processes matching pidfile",                 # detected
    "process demo-svc: remediated: verified OK",                      # guarded restart, verified
    "process sshd: refused: 'sshd' is not in remediations.process.targets",
    "process demo-svc: remediated: verified OK [verify OK]",          # the audit trail
    "DISK CRITICAL:",
    "would: remove ",                                                 # dry-run lists the files
    "disk ", "remediated: verified OK",
    "# left under log/: nova-compute.log",                            # the live log survived
    "StackStorm not reached: connection refused",                     # unreachable
    "local process demo-svc: remediated: verified OK",                # fell back
    "event kept in the spool for replay",                             # spooled
    "SPOOL OK: 1 event(s) waiting",
    "stackstorm: open: StackStorm unreachable",
    "HTTP 202 (remediated locally: process demo-svc remediated)",     # replayed, marked
    "remediated_locally   True",
    "spool: 0 event(s) waiting",
    "stackstorm: closed: delivering to StackStorm",
    "delivered to StackStorm (HTTP 202",                              # direct while up
    "== demo OK",
]


def assert_steps(output):
    position = 0
    for step in STEPS:
        found = output.find(step, position)
        assert found >= 0, f"missing (in order) {step!r}\n{output}"
        position = found


def test_demo_runs_the_whole_flow_and_cleans_up():
    ran = run_demo()
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "Traceback" not in ran.stdout + ran.stderr
    assert_steps(ran.stdout)
    if os.geteuid() == 0:
        assert "A 16 MiB tmpfs is mounted on" in ran.stdout
    assert leftovers(base_of(ran.stdout)) == []


def test_demo_without_a_mount_uses_a_scratch_directory():
    ran = run_demo("--no-mount")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    flat = " ".join(ran.stdout.split())          # narration is wrapped at 100 columns
    assert "Scratch directory" in flat and "just above the filesystem's current use" in flat
    assert_steps(ran.stdout)
    assert leftovers(base_of(ran.stdout)) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_demo_still_cleans_up(sig):
    proc = subprocess.Popen([sys.executable, DEMO], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=clean_env(), cwd=ROOT)
    lines = []
    deadline = time.monotonic() + 120
    while True:
        line = proc.stdout.readline()
        assert line, "".join(lines) + proc.stderr.read()
        lines.append(line)
        if line.startswith("== 3."):      # the service, the double and the mount are all up
            break
        assert time.monotonic() < deadline
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "demo interrupted" in err
    base = base_of("".join(lines))
    assert leftovers(base) == []


@pytest.mark.parametrize("argv", [["--help"]])
def test_demo_help(argv):
    ran = run_demo(*argv)
    assert ran.returncode == 0 and "make demo" in ran.stdout
