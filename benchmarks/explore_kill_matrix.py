"""Kill matrix: which mutants of the bundled Raft the graded suite and ``raftlab explore`` catch.

For each mutant of ``tests/mutants/make_mutants.py`` (rendered from the reference
into a temporary directory) and the bundled Raft as the control:

* graded suite: the 28 graded tests once, in simulated time (``raftlab test
  --sim``; one seed per test, as a student's ``go test`` run would give);
* explore: ``--schedules`` schedules (default 1000) from seed 0, in this process's
  worker pool; the monitors that fired, and the first failing schedule seed.

Usage: ``python benchmarks/explore_kill_matrix.py [--schedules N] [-p WORKERS]``.
Run it under ``nice``: it keeps every core busy.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.mutants.make_mutants import MUTANTS, materialize  # noqa: E402
from tools.explore import work  # noqa: E402


def graded(impl: str | None) -> str:
    cmd = [sys.executable, "-m", "tools.cli", "test", "--sim"]
    if impl:
        cmd += ["--impl", impl]
    cmd += ["--", "-q", "-p", "no:cacheprovider"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-200:]
    failed = re.search(r"(\d+) failed", tail)
    passed = re.search(r"(\d+) passed", tail)
    f, p = int(failed.group(1)) if failed else 0, int(passed.group(1)) if passed else 0
    return f"killed ({f}/{f + p} fail)" if f else f"survived ({p}/{p} pass)"


def explore(impl: str | None, n: int, workers: int) -> tuple[str, float]:
    t0 = time.monotonic()
    counts: Counter[str] = Counter()
    first = None
    with ProcessPoolExecutor(workers) as pool:
        for seed, rec in zip(range(n), pool.map(work.explore_one, range(n), [impl] * n,
                                                chunksize=8), strict=True):
            if rec["monitor"]:
                counts[rec["monitor"]] += 1
                first = seed if first is None else first
    took = time.monotonic() - t0
    if not counts:
        return f"survived (0/{n})", took
    monitors = ", ".join(f"{m} {c}" for m, c in counts.most_common())
    return f"killed ({sum(counts.values())}/{n}; first seed {first}; {monitors})", took


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--schedules", "-n", type=int, default=1000)
    ap.add_argument("-p", "--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-graded", action="store_true", help="skip the graded-suite column")
    args = ap.parse_args()
    rows = [("bundled Raft (control)", None)] + [
        (f"{name}: {bug}", materialize(name))
        for name, (bug, *_rest) in MUTANTS.items()]
    print(f"| mutant | graded suite (28 tests, --sim) | explore ({args.schedules} schedules) "
          f"| explore wall time |")
    print("|---|---|---|---|")
    for label, impl in rows:
        g = "-" if args.no_graded else graded(impl)
        e, took = explore(impl, args.schedules, args.workers)
        print(f"| {label} | {g} | {e} | {took:.0f} s |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
