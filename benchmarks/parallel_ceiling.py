"""The parallel ceiling: how many concurrent 2A runs this machine takes with no failure
and no inconclusive run.

For each count N (ascending) it runs ``raftlab stress -k 2A -n N -p N --retries 0``:
N workers, each test of part 2A N times (3N runs, N at a time), with no rerun of
inconclusive runs, and counts passed, failed and inconclusive runs and the worst
timer lag from ``results.jsonl``.  The ceiling is the largest N before the first
count with any failed or inconclusive run (it stops there unless ``--all``).

The Go lab's figures on the same 2-core machine (issue 19: Go 1.19, the 2022 lab
with a public passing solution) are printed as the reference: 192 concurrent 2A
runs with 0 failures, 400 with 8.  If ``RAFTLAB_GO_LAB`` names the Go lab's
``src/raft`` folder and ``go`` is installed, the same counts are run there too,
side by side (N concurrent ``go test -run 2A`` processes of one compiled binary).

Usage::

    python benchmarks/parallel_ceiling.py                  # 48 96 144 192 256 300
    python benchmarks/parallel_ceiling.py 96 192 --all --json ceiling.json
    python benchmarks/parallel_ceiling.py 48 --impl path/to/raft.py

The runs use the stress command's local backend: by default one pytest session
that collects once and forks N warm workers (tools/stress/backends/forked.py);
``--xdist`` measures the older model (N fresh ``pytest -n N`` interpreters) for
comparison.  Each step's CPU time (the stress command and all its children) is
printed and stored beside the counts.

Every figure depends on what else runs on the machine: the load average before
each step is printed and stored.

Bytecode: the stress commands and every interpreter they start read their bytecode
from one cache filled by an unmeasured warm-up (``benchcommon.BYTECODE_MODE``): with
``PYTHONDONTWRITEBYTECODE=1`` each fresh ``--xdist`` worker used to compile the lab's
modules again, which the forked workers (started from a warm session) did not.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchcommon import BYTECODE_MODE, bytecode_env, go_binary, run_child, warm_bytecode

GO_REFERENCE = {"machine": "2 cores (issue 19)", "ceiling": 192,
                "runs": {"192": {"failed": 0, "of": 192}, "400": {"failed": 8, "of": 400}}}
DEFAULT_COUNTS = (48, 96, 144, 192, 256, 300)


REPO = Path(__file__).resolve().parent.parent


def raftlab_step(n: int, impl: str | None, seed: int, cache: Path,
                 xdist: bool = False) -> dict:
    out = Path(tempfile.mkdtemp(prefix=f"ceiling-{n}-"))
    cmd = [sys.executable, "-m", "tools.stress", "-k", "2A", "-n", str(n), "-p", str(n),
           "--retries", "0", "--seed", str(seed), "--no-live", "-o", str(out)]
    if impl:
        cmd += ["--impl", impl]
    env = bytecode_env(dict(os.environ, RAFTLAB_STRESS_XDIST="1" if xdist else "0"), cache)
    load = os.getloadavg()[0]
    proc, wall, cpu = run_child(cmd, env)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()
            if line.strip()] if (out / "results.jsonl").exists() else []
    count = {k: sum(r["outcome"] == k for r in rows) for k in ("passed", "failed", "error",
                                                                  "inconclusive")}
    lags = [r["properties"].get("timer_lag_max_ms", 0.0) for r in rows]
    # The failure itself, after an inconclusive run's "inconclusive (...): " prefix.
    messages = sorted({(r["message"] or "").split("): ", 1)[-1][:80]
                       for r in rows if r["outcome"] != "passed"})
    kept = bool(messages) or len(rows) != 3 * n or proc.returncode != 0
    if not kept:  # every run passed: nothing in the folder is worth a look
        shutil.rmtree(out, ignore_errors=True)
    return {"workers": n, "runs": len(rows), **count, "exit": proc.returncode,
            "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "load_before": round(load, 2),
            "process_model": "xdist" if xdist else "forked",
            "max_lag_ms": max(lags, default=0.0), "messages": messages[:5],
            "output": str(out) if kept else None}  # kept only when a run did not pass


def go_step(n: int, binary: Path, cwd: Path) -> dict:
    procs = [subprocess.Popen([str(binary), "-test.run", "2A"], cwd=cwd,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for _ in range(n)]
    failed = sum(p.wait() != 0 for p in procs)
    for p in procs:
        if p.stdout is not None:
            p.stdout.close()
    return {"workers": n, "runs": n, "failed": failed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("counts", nargs="*", type=int, default=list(DEFAULT_COUNTS))
    parser.add_argument("--impl", help="Raft implementation (default: the bundled one)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--all", action="store_true", help="go on after the first failure")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    parser.add_argument("--xdist", action="store_true",
                        help="N fresh xdist workers instead of N forked warm ones")
    args = parser.parse_args(argv)
    print(f"Go lab reference (issue 19): ceiling {GO_REFERENCE['ceiling']} concurrent 2A runs "
          "(192: 0 failed; 400: 8 of 400 failed)")
    lab = os.environ.get("RAFTLAB_GO_LAB")
    binary = go_binary(Path(lab)) if lab else None
    cache = Path(tempfile.mkdtemp(prefix="ceiling-pycache-"))
    try:
        return _steps(args, cache, binary, lab)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def _steps(args: argparse.Namespace, cache: Path, binary: Path | None, lab: str | None) -> int:
    steps, go_steps, ceiling, all_clean = [], [], 0, True
    warm = warm_bytecode(REPO, bytecode_env(dict(os.environ), cache), cwd=Path.cwd())
    print(f"bytecode: {BYTECODE_MODE}", flush=True)
    for n in sorted(args.counts):
        step = raftlab_step(n, args.impl, args.seed, cache, args.xdist)
        steps.append(step)
        clean = step["runs"] == 3 * n and step["failed"] == step["error"] == 0 \
            and step["inconclusive"] == 0
        print(f"raftlab {n:4d} workers: {step['runs']} runs, {step['failed']} failed, "
              f"{step['error']} errors, {step['inconclusive']} inconclusive, worst lag "
              f"{step['max_lag_ms']:.0f} ms, {step['wall_s']} s, CPU {step['cpu_s']} s, "
              f"load before {step['load_before']}"
              + (f"; {step['messages']}" if step["messages"] else ""),
              flush=True)
        if binary is not None and lab:
            g = go_step(n, binary, Path(lab))
            go_steps.append(g)
            print(f"go      {n:4d} concurrent: {g['failed']} of {g['runs']} failed", flush=True)
        all_clean = all_clean and clean
        if all_clean:
            ceiling = n
        if not clean and not args.all:
            break
    print(f"raftlab parallel ceiling for 2A on this machine: {ceiling} concurrent runs "
          f"(Go lab: {GO_REFERENCE['ceiling']})")
    if args.json:
        args.json.write_text(json.dumps({
            "ceiling": ceiling, "process_model": "xdist" if args.xdist else "forked",
            "steps": steps, "go": go_steps or None,
            "bytecode": {"mode": "cached", "description": BYTECODE_MODE, "warm_up_pycs": warm},
            "go_reference": GO_REFERENCE, "cores": os.cpu_count(),
            "time": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
