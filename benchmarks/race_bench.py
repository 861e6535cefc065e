"""What ``--race`` costs: wall time of graded parts with and without it, real and --sim.

Runs ``pytest --pyargs labtests`` once per mode (same seed for all) in a child
process and prints the wall and CPU time of each and the ratios to the same
clock without ``--race`` (in real time the tests mostly sleep, so the CPU time
shows the detector's cost and the wall time whether it changes the tests).
Under ``--sim``, ``--race`` also turns on line preemption (``RACE_PREEMPT``);
the mode with ``--sim-preempt 0`` measures the detector alone and the one
without ``--race`` the preemption alone, so the two costs can be told apart.

    python benchmarks/race_bench.py                 # parts 2A and 2B
    python benchmarks/race_bench.py --parts 2A 2B 2C 2D --seed 7
    python benchmarks/race_bench.py -k test_figure8_unreliable_2c --no-real   # one test

Bytecode: the runs read their bytecode from a cache filled by an unmeasured warm-up
(``benchcommon.BYTECODE_MODE``), as an installed lab's second run does.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchcommon import BYTECODE_MODE, bytecode_env, warm_bytecode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(parts: list[str], seed: int, extra: list[str], keyword: str | None = None,
        env: dict[str, str] | None = None) -> tuple[float, float, int, str]:
    keyword = keyword or " or ".join(p.lower() for p in parts)
    cmd = [sys.executable, "-m", "pytest", "--pyargs", "labtests", "-k", keyword,
           "--seed", str(seed), "-q", "-p", "no:cacheprovider", *extra]
    t0, cpu0 = time.perf_counter(), _child_cpu()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    last = (proc.stdout.strip().splitlines() or ["?"])[-1]
    return time.perf_counter() - t0, _child_cpu() - cpu0, proc.returncode, last


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["2A", "2B"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-real", action="store_true", help="only the --sim modes")
    parser.add_argument("-k", dest="keyword", help="a pytest -k expression instead of --parts")
    args = parser.parse_args(argv)
    modes = [("sim", ["--sim"]), ("sim --race", ["--sim", "--race"]),
             ("sim --race (no preemption)", ["--sim", "--race", "--sim-preempt", "0"]),
             ("sim --sim-preempt 0.02", ["--sim", "--sim-preempt", "0.02"])]
    if not args.no_real:
        modes = [("real", []), ("real --race", ["--race"]), *modes]
    base: dict[str, tuple[float, float]] = {}
    chosen = f"-k {args.keyword!r}" if args.keyword else f"parts {' '.join(args.parts)}"
    print(f"{chosen}, seed {args.seed}; wall and CPU time of the pytest "
          "process, ratio to the same clock without --race or preemption")
    env = bytecode_env(dict(os.environ), Path(tempfile.mkdtemp(prefix="race-bench-pycache-")))
    warm_bytecode(Path(ROOT), env)
    print(f"bytecode: {BYTECODE_MODE}")
    for label, extra in modes:
        wall, cpu, status, last = run(args.parts, args.seed, extra, args.keyword, env)
        clock = "sim" if "--sim" in extra else "real"
        wall0, cpu0 = base.setdefault(clock, (wall, cpu))
        print(f"{label:<28} wall {wall:6.1f} s x{wall / wall0:5.2f}  cpu {cpu:6.1f} s "
              f"x{cpu / cpu0:5.2f}  (exit {status}: {last})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
