"""Side-by-side timing of whole commands, as ratios (the machine is shared and noisy).

``compare(a, b)`` runs A and B in turn (A B A B ...) after a warm-up, measures
each run's wall time and the children's CPU time and peak RSS from the kernel's
accounting (``wait4``), and reports the medians and the median of the pairwise
ratios A/B, which holds even when the machine's speed drifts during the run.
"""
import os
import statistics
import subprocess
import time

VENV_BIN = os.path.dirname(os.path.abspath(os.sys.executable))
AUTOREMEDY = os.path.join(VENV_BIN, "autoremedy")
PYTHON = os.sys.executable


def run_once(argv, env=None, stdin=None, cwd=None):
    """(wall s, cpu s, peak RSS KiB, returncode) of one whole process."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=cwd)
    if stdin is not None:
        proc.stdin.write(stdin if isinstance(stdin, bytes) else stdin.encode())
        proc.stdin.close()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, proc.returncode


def compare(a, b, runs=15, warmup=2, env=None, stdin_a=None, stdin_b=None, setup=None):
    """Interleaved A/B timing. ``setup`` (optional) runs before every single run."""
    for _ in range(warmup):
        if setup:
            setup()
        run_once(a, env, stdin_a)
        if setup:
            setup()
        run_once(b, env, stdin_b)
    rows_a, rows_b = [], []
    for _ in range(runs):
        if setup:
            setup()
        rows_a.append(run_once(a, env, stdin_a))
        if setup:
            setup()
        rows_b.append(run_once(b, env, stdin_b))
    ratios = [ra[0] / rb[0] for ra, rb in zip(rows_a, rows_b) if rb[0] > 0]
    cpu_ratios = [ra[1] / rb[1] for ra, rb in zip(rows_a, rows_b) if rb[1] > 0]
    return {
        "a_wall": statistics.median(r[0] for r in rows_a),
        "b_wall": statistics.median(r[0] for r in rows_b),
        "a_rss_kib": max(r[2] for r in rows_a),
        "b_rss_kib": max(r[2] for r in rows_b),
        "ratio": statistics.median(ratios),
        "cpu_ratio": statistics.median(cpu_ratios) if cpu_ratios else None,
        "a_rc": sorted({r[3] for r in rows_a}),
        "b_rc": sorted({r[3] for r in rows_b}),
        "runs": runs,
    }


def row(benchmark, a_label, b_label, result, target=None, better="lower"):
    """One line of the README table; ``target`` is the ratio to stay under (or over)."""
    ratio = result["ratio"]
    verdict = ""
    if target is not None:
        ok = ratio <= target if better == "lower" else ratio >= target
        verdict = ("meets" if ok else "MISSES") + f" target {'<=' if better == 'lower' else '>='} {target}x"
    return {"benchmark": benchmark, "a": a_label, "b": b_label,
            "a_ms": round(result["a_wall"] * 1000, 1), "b_ms": round(result["b_wall"] * 1000, 1),
            "ratio": round(ratio, 2), "a_rss_mib": round(result["a_rss_kib"] / 1024, 1),
            "verdict": verdict}


def table(rows):
    head = "| benchmark | A | B | A median | B median | A/B (median of pairs) | A peak RSS | verdict |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['benchmark']} | {r['a']} | {r['b']} | {r['a_ms']} ms | {r['b_ms']} ms | "
                     f"**{r['ratio']}x** | {r['a_rss_mib']} MiB | {r['verdict']} |")
    return "\n".join(lines)
