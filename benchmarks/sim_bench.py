"""Benchmark of simulation mode against the issue-9 targets, on one core.

    python benchmarks/sim_bench.py                 # one pass + determinism check
    python benchmarks/sim_bench.py --runs 1000 --parts 2A   # plus 1000 seeds per test

Prints, for one pass of the graded suite in this process (so on one core):
each test's wall and virtual seconds, the 2A and whole-suite totals next to
their targets (<= 5 s and <= 60 s), and the determinism check (two runs with
one seed give the same debug log byte for byte).  With ``--runs N`` it then
runs every selected test N times with different seeds and reports failures,
wall time and runs per minute, next to the real-time figure (a run takes about
its virtual time in real time).
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import time
import traceback

from labtests import test_2a, test_2b, test_2c, test_2d
from labtests.driver import run_graded
from labtests.impl_loader import load
from raft import debuglog

PARTS = {"2A": test_2a, "2B": test_2b, "2C": test_2c, "2D": test_2d}
TARGET_2A_S = 5.0
TARGET_SUITE_S = 60.0


def tests_of(part: str) -> list:
    module = PARTS[part]
    return [getattr(module, n) for n in module.__dict__ if n.startswith("test_")]


class _Quiet:
    """Swallow the tests' own prints (the lab's begin/Passed lines)."""

    def __enter__(self) -> None:
        self._out = sys.stdout
        sys.stdout = io.StringIO()

    def __exit__(self, *exc: object) -> None:
        sys.stdout = self._out


def one_pass(parts: list[str], impl, seed: int) -> tuple[float, float]:
    print(f"{'test':<40} {'wall s':>7} {'virtual s':>9} {'switches':>9}")
    total = total_2a = 0.0
    for part in parts:
        for fn in tests_of(part):
            t0 = time.perf_counter()
            try:
                with _Quiet():
                    res = run_graded(fn, seed, impl)
                status = f"{res.virtual_s:9.1f} {res.switches:9d}"
            except BaseException as exc:  # noqa: BLE001 - reported in the table
                status = f"FAILED: {str(exc).splitlines()[0][:60]}"
            wall = time.perf_counter() - t0
            total += wall
            if part == "2A":
                total_2a += wall
            print(f"{fn.__name__:<40} {wall:7.2f} {status}", flush=True)
    return total, total_2a


def debug_log_of(fn, seed: int, impl) -> str:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logging.Formatter("%(message)s"))
    debuglog.logger.addHandler(handler)
    was = debuglog.enabled()
    debuglog.enable(True)
    try:
        with _Quiet():
            run_graded(fn, seed, impl)
    finally:
        debuglog.enable(was)
        debuglog.logger.removeHandler(handler)
    return buf.getvalue()


def stress(parts: list[str], impl, runs: int, base_seed: int) -> int:
    failures = 0
    for part in parts:
        for fn in tests_of(part):
            t0 = time.perf_counter()
            virtual = 0.0
            failed = []
            for i in range(runs):
                seed = base_seed * 1_000_003 + i
                try:
                    with _Quiet():
                        virtual += run_graded(fn, seed, impl).virtual_s
                except BaseException as exc:  # noqa: BLE001 - counted and shown
                    failed.append((seed, str(exc).splitlines()[0][:100]))
                    if len(failed) == 1:
                        traceback.print_exc(limit=3)
            wall = time.perf_counter() - t0
            failures += len(failed)
            rate = runs / wall * 60
            real_rate = runs / virtual * 60 if virtual else float("nan")
            print(f"{fn.__name__:<40} {runs} runs, {len(failed)} failed, {wall:6.1f} s wall, "
                  f"{rate:7.0f} runs/min simulated vs ~{real_rate:5.1f} runs/min in real time "
                  f"(one worker)", flush=True)
            for seed, msg in failed[:5]:
                print(f"    seed {seed}: {msg}")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="2A,2B,2C,2D")
    parser.add_argument("--impl", default=None, help="Raft implementation (default: bundled)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=0, help="stress: runs per test (0: skip)")
    args = parser.parse_args(argv)
    parts = [p.strip().upper() for p in args.parts.split(",") if p.strip()]
    impl = load(args.impl)

    total, total_2a = one_pass(parts, impl, args.seed)
    if "2A" in parts:
        print(f"2A: {total_2a:.2f} s wall (target <= {TARGET_2A_S:.0f} s): "
              f"{'MET' if total_2a <= TARGET_2A_S else 'MISSED'}")
    print(f"selected parts: {total:.2f} s wall on one core (suite target <= "
          f"{TARGET_SUITE_S:.0f} s): {'MET' if total <= TARGET_SUITE_S else 'MISSED'}")

    first = debug_log_of(test_2a.test_re_election_2a, args.seed, impl)
    second = debug_log_of(test_2a.test_re_election_2a, args.seed, impl)
    same = first == second and first.count("\n") > 10
    print(f"determinism: two runs of test_re_election_2a with seed {args.seed}: "
          f"{first.count(chr(10))} debug-log lines, identical byte for byte: {same}")

    failures = stress(parts, impl, args.runs, args.seed) if args.runs else 0
    return 0 if same and failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
