"""Run every benchmark (bench/bench_*.py) and print the README's table.

Each bench module has ``run() -> list of rows`` (bench.lib.row) and may print
extra figures of its own (throughput, scaling). ``bench/run.py NAME...`` runs
only the named modules (e.g. ``node``). The table is also written to
out/bench.md so README can be refreshed from it.
"""
import importlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench.lib import table  # noqa: E402


def main(argv):
    names = argv or sorted(f[6:-3] for f in os.listdir(HERE) if f.startswith("bench_") and f.endswith(".py"))
    rows, failed = [], []
    for name in names:
        print(f"== bench_{name}", flush=True)
        try:
            module = importlib.import_module(f"bench.bench_{name}")
            got = module.run()
        except Exception as exc:  # one broken benchmark must not hide the others
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        rows.extend(got)
        print(table(got), flush=True)
    print("\n## all benchmarks\n")
    text = table(rows)
    print(text)
    os.makedirs("out", exist_ok=True)
    with open(os.path.join("out", "bench.md"), "w") as handle:
        handle.write(text + "\n")
    for line in failed:
        print(f"FAILED {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
