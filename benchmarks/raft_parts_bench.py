"""Print, per graded part, the real time and CPU time of the test process.

Each part runs as its own ``pytest`` process (sequentially, no xdist, as
``go test -run 2X`` does), and its CPU time is the process's user+sys time
(``resource.getrusage(RUSAGE_CHILDREN)`` before and after).  The targets are
the issue's: real time per part no worse than the Go lab here, and whole-lab
CPU time <= 24 s (the Go test process uses about 12 s).  The Go figures cannot
be measured in the same run (no Go toolchain or lab sources on this machine);
they are the handout's sample totals, as written in the spec.

    python benchmarks/raft_parts_bench.py               # all four parts, bundled Raft
    python benchmarks/raft_parts_bench.py 2A 2B --impl path/to/raft.py
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

# Go lab real-time figures per part, in seconds (the lab handout's sample runs; README table).
GO_REAL_S = {"2A": 15.0, "2B": 48.0, "2C": 127.0, "2D": 231.0}
CPU_TARGET_S = 24.0


def run_part(part: str, impl: str | None, extra: list[str]) -> tuple[int, float, float, str]:
    """Run one part; return (exit code, real s, cpu s, pytest's last line)."""
    cmd = [sys.executable, "-m", "pytest", "--pyargs", "labtests", "-q",
           "-p", "no:cacheprovider", "-m", f"part{part.lower()}"]
    if impl:
        cmd.append(f"--raft-impl={impl}")
    cmd += extra
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    real = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = proc.stdout.strip().splitlines()
    return proc.returncode, real, cpu, lines[-1] if lines else proc.stderr.strip()[-200:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="*", default=list(GO_REAL_S), metavar="PART")
    parser.add_argument("--impl", help="Raft implementation (default: the bundled one)")
    args, extra = parser.parse_known_args()
    parts = [p.upper() for p in args.parts]
    unknown = [p for p in parts if p not in GO_REAL_S]
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(GO_REAL_S)}")
    print(f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}")
    print(f"{'part':<5} {'real s':>8} {'Go real s':>10} {'CPU s':>7}  result")
    total_real = total_cpu = 0.0
    failed = False
    for part in parts:
        rc, real, cpu, last = run_part(part, args.impl, extra)
        total_real += real
        total_cpu += cpu
        failed |= rc != 0
        verdict = "ok" if real <= GO_REAL_S[part] else "slower than Go"
        print(f"{part:<5} {real:8.1f} {GO_REAL_S[part]:10.0f} {cpu:7.1f}  {last} ({verdict})")
    go_total = sum(GO_REAL_S[p] for p in parts)
    print(f"{'all':<5} {total_real:8.1f} {go_total:10.0f} {total_cpu:7.1f}  "
          f"CPU target <= {CPU_TARGET_S:.0f} s for the whole lab")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
