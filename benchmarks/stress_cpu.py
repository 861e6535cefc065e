"""CPU per forked 2A run, for two or more source trees measured in turns.

Why: the parallel ceiling is set by how much CPU one concurrent 2A run costs all
in (the stress command, its forked workers, the Raft, the network, the harness),
and one measurement on a shared machine moves by 20 % with the load.  This runs
``python -m tools.stress -k 2A -n N -p N --retries 0`` (N workers, 3N runs) in
each tree in turn, ``--rounds`` times, and prints each tree's CPU (user + system
of the whole process tree) per run: the median and every round.

Usage::

    python benchmarks/stress_cpu.py base=/tmp/tree-7fcb1c2 new=. --rounds 3 --json F

A tree is a folder holding the project's packages (a ``git archive`` of a commit,
say); its packages come first on ``PYTHONPATH``, so the installed venv's tools
and dependencies serve every tree.  ``-n 1`` measures the fixed cost (the
stress command, collection, one worker) to subtract: the marginal cost of a run
is (CPU(N) - CPU(1)) / (3N - 3).

Bytecode: each tree's commands keep their bytecode in a fresh cache of their own,
filled by one unmeasured warm-up per tree (``benchcommon.BYTECODE_MODE``), so that a
tree with a ``__pycache__`` (the checkout) and one without (an archive) start alike
under ``PYTHONDONTWRITEBYTECODE=1``; ``--bytecode as-is`` measures the old way.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchcommon import add_bytecode_option, bytecode_env, prepare_trees, run_child


def tree_env(tree: Path, cache: Path | None) -> dict[str, str]:
    """The commands' environment for ``tree``; with ``cache``, their bytecode goes there."""
    env = dict(os.environ, PYTHONPATH=str(tree.resolve()) + os.pathsep
               + os.environ.get("PYTHONPATH", ""), RAFTLAB_STRESS_XDIST="0")
    return bytecode_env(env, cache) if cache is not None else env


def one(tree: Path, n: int, seed: int, cache: Path | None = None) -> dict:
    out = Path(tempfile.mkdtemp(prefix="stress-cpu-"))
    cmd = [sys.executable, "-m", "tools.stress", "-k", "2A", "-n", str(n), "-p", str(n),
           "--retries", "0", "--seed", str(seed), "--no-live", "-o", str(out)]
    env = tree_env(tree, cache)
    load = os.getloadavg()[0]
    proc, wall, cpu = run_child(cmd, env, cwd=tree)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()
            if line.strip()] if (out / "results.jsonl").exists() else []
    outcomes = {k: sum(r["outcome"] == k for r in rows) for k in ("passed", "failed",
                                                                  "inconclusive")}
    kept = outcomes["passed"] != len(rows) or not rows or proc.returncode != 0
    if not kept:  # every run passed: nothing in the folder is worth a look
        shutil.rmtree(out, ignore_errors=True)
    return {"runs": len(rows), **outcomes, "cpu_s": round(cpu, 2), "wall_s": round(wall, 1),
            "load_before": round(load, 2), "exit": proc.returncode,
            "cpu_per_run_s": round(cpu / len(rows), 4) if rows else None,
            "output": str(out) if kept else None}  # kept only when a run did not pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs="+", help="NAME=PATH of each tree to measure")
    parser.add_argument("-n", type=int, default=12, help="workers (3 runs each)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path)
    add_bytecode_option(parser)
    args = parser.parse_args(argv)
    trees = dict(t.split("=", 1) for t in args.trees)
    cache_root = Path(tempfile.mkdtemp(prefix="stress-cpu-pycache-"))
    try:
        return _rounds(args, trees, cache_root)
    finally:
        shutil.rmtree(cache_root, ignore_errors=True)


def _rounds(args: argparse.Namespace, trees: dict[str, str], cache_root: Path) -> int:
    results: dict[str, list[dict]] = {name: [] for name in trees}
    resolved = {name: Path(path).resolve() for name, path in trees.items()}
    caches, bytecode = prepare_trees(args.bytecode, resolved, tree_env, cache_root)
    for r in range(args.rounds):
        for name, path in trees.items():
            step = one(Path(path), args.n, args.seed + r, caches[name])
            results[name].append(step)
            print(f"round {r + 1} {name:>10}: {step['runs']} runs ({step['failed']} failed, "
                  f"{step['inconclusive']} inconclusive), CPU {step['cpu_s']} s = "
                  f"{step['cpu_per_run_s']} s a run, wall {step['wall_s']} s, load before "
                  f"{step['load_before']}", flush=True)
    summary = {}
    for name, steps in results.items():
        per_run = [s["cpu_per_run_s"] for s in steps if s["cpu_per_run_s"] is not None]
        summary[name] = round(statistics.median(per_run), 4) if per_run else None
        print(f"{name:>10}: median CPU per run {summary[name]} s over {len(per_run)} rounds "
              f"(-n {args.n}, {3 * args.n} runs a round)")
    if args.json:
        args.json.write_text(json.dumps({"n": args.n, "median_cpu_per_run_s": summary,
                                         "rounds": results, "trees": trees,
                                         "bytecode": bytecode,
                                         "time": time.strftime("%Y-%m-%d %H:%M:%S")},
                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
