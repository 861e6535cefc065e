"""Benchmark of simulation mode: speed, determinism, and virtual against real time.

    python benchmarks/sim_bench.py                 # one pass + determinism check
    python benchmarks/sim_bench.py --real          # also each test in real time, side by side
    python benchmarks/sim_bench.py --runs 1000 --parts 2A   # plus 1000 seeds per test

Prints, for one pass of the graded suite in this process (so on one core):
each test's wall seconds in simulation, its virtual duration, its scheduling
steps and RPCs, the 2A and whole-suite totals next to their targets (<= 5 s
and <= 60 s), and the determinism check (two runs with one seed give the same
debug log byte for byte).  With ``--real`` every test also runs once in real
time with the same seed, and the table shows its real duration and RPCs next
to the virtual ones: the virtual clock charges ``--step-cost`` seconds per
scheduling step (default ``labtests.sim.STEP_COST``) so that busy phases take
about as long as in real time.  With ``--runs N`` it then runs every selected
test N times with different seeds and reports failures, wall time and runs
per minute, next to the real-time figure (a run takes about its virtual time
in real time).
"""

from __future__ import annotations

import argparse
import io
import logging
import statistics
import sys
import time
import traceback

from labtests import test_2a, test_2b, test_2c, test_2d
from labtests.driver import run_graded
from labtests.impl_loader import load
from labtests.sim import STEP_COST
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


def _run(fn, seed: int, impl, **kw):  # noqa: ANN001, ANN202 - (result, None) or (None, reason)
    try:
        with _Quiet():
            return run_graded(fn, seed, impl, **kw), None
    except BaseException as exc:  # noqa: BLE001 - reported in the table
        return None, f"FAILED: {str(exc).splitlines()[0][:50]}"


def one_pass(parts: list[str], impl, seed: int, real: bool,
             step_cost: float) -> tuple[float, float]:
    head = f"{'test':<38} {'wall s':>6} {'virtual s':>9} {'steps':>6} {'rpcs':>6}"
    if real:
        head += f" {'real s':>7} {'virt/real':>9} {'real rpcs':>9}"
    print(head)
    total = total_2a = 0.0
    ratios = []
    sums = {"virtual": 0.0, "real": 0.0}
    for part in parts:
        for fn in tests_of(part):
            res, why = _run(fn, seed, impl, step_cost=step_cost)
            line = f"{fn.__name__:<38} "
            if res is None:
                line += why or ""
            else:
                total += res.wall_s
                if part == "2A":
                    total_2a += res.wall_s
                line += (f"{res.wall_s:6.2f} {res.virtual_s:9.2f} {res.switches:6d} "
                         f"{res.figures['rpcs'] if res.figures else 0:6d}")
            if real:
                rres, rwhy = _run(fn, seed, impl, sim=False)
                if rres is None:
                    line += f"  real: {rwhy}"
                elif res is not None:
                    ratio = res.virtual_s / rres.virtual_s
                    ratios.append(ratio)
                    sums["virtual"] += res.virtual_s
                    sums["real"] += rres.virtual_s
                    line += (f" {rres.virtual_s:7.2f} {ratio:9.3f} "
                             f"{rres.figures['rpcs'] if rres.figures else 0:9d}")
            print(line, flush=True)
    if ratios:
        print(f"virtual/real duration: total {sums['virtual']:.1f} s / {sums['real']:.1f} s "
              f"= {sums['virtual'] / sums['real']:.3f}; per test median "
              f"{statistics.median(ratios):.3f}, min {min(ratios):.3f}, max {max(ratios):.3f} "
              f"(step cost {step_cost * 1e6:g} µs)")
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


def stress(parts: list[str], impl, runs: int, base_seed: int, step_cost: float) -> int:
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
                        virtual += run_graded(fn, seed, impl, step_cost=step_cost).virtual_s
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
    parser.add_argument("--real", action="store_true",
                        help="also run each test once in real time and compare durations")
    parser.add_argument("--step-cost", type=float, default=STEP_COST, metavar="S",
                        help=f"virtual seconds per scheduling step (default {STEP_COST:g})")
    args = parser.parse_args(argv)
    parts = [p.strip().upper() for p in args.parts.split(",") if p.strip()]
    impl = load(args.impl)

    total, total_2a = one_pass(parts, impl, args.seed, args.real, args.step_cost)
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

    failures = stress(parts, impl, args.runs, args.seed, args.step_cost) if args.runs else 0
    return 0 if same and failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
