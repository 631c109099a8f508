"""Replay cost per event, commits side by side (not part of ``bench/run.py``).

    .venv/bin/python bench/replay_ab.py [--rounds N] COMMIT COMMIT...

Each commit is installed from ``git archive`` into its own directory (no deps:
the venv's are used) and run as ``autoremedy replay --json`` with that directory
first on PYTHONPATH. Rounds alternate the commits (A B C A B C ...); each round
spools 2,000 events (bench_handlers' spooler) and replays them to the StackStorm
double (its own process) over one kept-alive connection. Printed per commit:
the rate replay reports, and the replay process's CPU (user + system, from
wait4) per event — on this shared 2-core machine the rate swings with other
runs' load, the CPU per event far less, so the ratios quoted are the medians of
the pairwise CPU ratios against the first commit.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import bench_handlers as handlers  # noqa: E402
from bench.lib import PYTHON  # noqa: E402

COUNT = 2000
REPLAY = "import sys; from autoremedy.cli import main; sys.exit(main(['replay', '--json']))"


def install(commit, where):
    """The bundle of ``commit`` installed (no deps) into ``where``."""
    source = os.path.join(where, "src")
    os.makedirs(source)
    archive = subprocess.run(["git", "-C", ROOT, "archive", commit], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", source], input=archive, check=True)
    target = os.path.join(where, "site")
    subprocess.run([PYTHON, "-m", "pip", "install", "-q", "--no-deps", "--target", target, source],
                   check=True, stdout=subprocess.DEVNULL)
    return target


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("commits", nargs="+")
    args = p.parse_args(argv)
    base = tempfile.mkdtemp(prefix="bench-replay-ab-")
    double = None
    try:
        sites = {c: install(c, os.path.join(base, f"tree-{i}")) for i, c in enumerate(args.commits)}
        double = handlers.Double("up")
        setting = handlers.Setting(base, "replay", double.url)
        spooler = os.path.join(base, "spooler.py")
        with open(spooler, "w") as handle:
            handle.write(handlers.SPOOLER)
        fixture = os.path.join(base, "event.json")
        with open(fixture, "wb") as handle:
            handle.write(handlers._event())
        rates = {c: [] for c in args.commits}
        cpu = {c: [] for c in args.commits}
        for _ in range(args.rounds):
            for commit in args.commits:
                env = dict(setting.env, PYTHONPATH=sites[commit])
                subprocess.run([PYTHON, spooler, setting.state, fixture, str(COUNT)], check=True,
                               cwd=base, env=env)
                proc = subprocess.Popen([PYTHON, "-c", REPLAY], env=env, cwd=base,
                                        stdout=subprocess.PIPE)
                out = proc.stdout.read()
                _, _, usage = os.wait4(proc.pid, 0)
                summary = json.loads(out)
                assert summary["delivered"] == COUNT, (commit, summary)
                rates[commit].append(summary["rate"])
                cpu[commit].append((usage.ru_utime + usage.ru_stime) / COUNT * 1000)
    finally:
        if double is not None:
            double.stop()
        shutil.rmtree(base, ignore_errors=True)
    first = args.commits[0]
    for commit in args.commits:
        ratio = statistics.median(a / b for a, b in zip(cpu[commit], cpu[first]))
        print(f"{commit}: {statistics.median(rates[commit]):.0f} events/s "
              f"(rates {rates[commit]}), CPU {statistics.median(cpu[commit]):.3f} ms/event, "
              f"{ratio:.2f}x {first}'s (median of pairs)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
