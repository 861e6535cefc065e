"""Part 2C's two costs that follow its commit count: memory per commit and CPU per commit.

Why a bench of its own: 2C's whole-part figures swing with how many commits
``test_reliable_churn_2c`` makes in its fixed time (about 1 400 to 4 100 on one
seed), so two runs of one tree differ more than two trees do.  Per commit, they
compare.

* ``mem``: runs ``test_reliable_churn_2c`` (real time, bundled Raft) in a child
  process, without pytest, and prints its commits, the child's peak RSS and the
  live memory at the end of the test body (before cleanup, where the peak is):
  tracemalloc's total and its biggest sources by file and line, in MB and in MB
  per 1 000 commits.  tracemalloc slows the run, so its commit count is lower than
  a plain run's; the per-commit figures are what compare.  ``--no-trace``: peak RSS
  only, at full speed.
* ``cpu``: a steady 5-peer reliable cluster, three client threads each doing
  ``cfg.one()`` in a loop until ``--commits`` are made; prints the child's CPU
  (user + system) per commit, raw and less the idle cluster's CPU for the same
  wall time (measured just before), and voluntary context switches per commit.

* ``part``: the whole part, ``pytest --pyargs labtests -m part2c`` (as the lab runs it):
  its peak RSS and CPU, and the commits of the two churn tests, which set both.
  ``--sim``: in simulated time, run ``r`` with seed ``--seed + r`` in both trees, so
  both make the same commits (a seed replays exactly) and their peaks compare as they are.

``--baseline REV`` also measures a git worktree of REV, alternating with this
tree run by run (``--reps`` each), so load from other work hits both alike; every
tree's bytecode is compiled first, alike (``benchcommon.BYTECODE_MODE``).
``--json FILE`` writes every run's figures.

    python benchmarks/p2c_bench.py mem --reps 2
    python benchmarks/p2c_bench.py cpu --commits 1000 --reps 3 --baseline HEAD~1

``cpu --no-timeline`` stops the config's timeline (state sampler, RPC observer,
recorder) once the cluster is up: with ``--baseline`` naming this very commit, the
difference is what recording costs per commit.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchcommon import prepare_trees
from raft_parts_bench import make_worktree, remove_worktree, tree_env

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu() -> tuple[float, int]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime, ru.ru_nvcsw


def child_mem(trace: bool, seed: int, top: int) -> dict:
    """In the child: the churn test, and what is alive at the end of its body."""
    import gc
    import tracemalloc

    from labtests import test_2c
    from labtests.context import TestContext
    from labtests.impl_loader import load

    gc.collect()
    rss_before = _rss_mb()
    snaps = []
    if trace:
        tracemalloc.start(1)
        snaps.append(tracemalloc.take_snapshot())
    ctx = TestContext("test_reliable_churn_2c", seed, load(None))
    out: dict = {"labtests": test_2c.__file__}
    orig_end = None

    def end_and_snapshot(cfg):  # the end of the body: every commit made, nothing freed yet
        orig_end(cfg)
        gc.collect()
        if trace:
            out["traced_mb"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 2)
            snaps.append(tracemalloc.take_snapshot())

    from labtests.config import Config
    orig_end = Config.end
    Config.end = end_and_snapshot
    try:
        test_2c.test_reliable_churn_2c(ctx.make_config)
    finally:
        Config.end = orig_end
        ctx.finish(body_failed=False)
    figures = ctx.figures or {}
    commits = figures.get("commits", 0)
    out.update(commits=commits, rss_before_mb=round(rss_before, 1),
               peak_rss_mb=round(_rss_mb(), 1))
    if trace and len(snaps) == 2:
        stats = snaps[1].compare_to(snaps[0], "lineno")
        live = sum(s.size_diff for s in stats)
        per_k = 1000 / commits if commits else 0.0
        out["live_mb"] = round(live / 2**20, 2)
        out["live_mb_per_1000_commits"] = round(live / 2**20 * per_k, 3)
        out["top"] = [{"where": f"{s.traceback[0].filename.replace(str(REPO) + '/', '')}:"
                                f"{s.traceback[0].lineno}",
                       "mb": round(s.size_diff / 2**20, 3),
                       "mb_per_1000": round(s.size_diff / 2**20 * per_k, 3),
                       "blocks": s.count_diff}
                      for s in sorted(stats, key=lambda s: -s.size_diff)[:top]]
    return out


def child_cpu(commits: int, seed: int, timeline: bool = True) -> dict:
    """In the child: a steady cluster's CPU per commit (see the module docstring)."""
    from labtests.context import TestContext
    from labtests.impl_loader import load

    ctx = TestContext("p2c_bench_steady", seed, load(None))
    out: dict = {}
    try:
        cfg = ctx.make_config(5, False, False)
        if not timeline:  # what recording costs: no events, no RPC observer, no sampler
            cfg.watch.stop()
            cfg.timeline.enabled = False
        cfg.begin("p2c bench: steady commits")
        cfg.check_one_leader()
        for _ in range(20):  # warm up
            cfg.one(random.randrange(1 << 30), 5, True)
        idle_s = 2.0
        c0, _ = _cpu()
        time.sleep(idle_s)
        c1, _ = _cpu()
        idle_rate = (c1 - c0) / idle_s
        left = [commits]
        lock = threading.Lock()

        def client() -> None:
            rng = random.Random()
            while True:
                with lock:
                    if left[0] <= 0:
                        return
                    left[0] -= 1
                cfg.one(rng.randrange(1 << 30), 5, True)

        threads = [threading.Thread(target=client, name=f"bench-client-{i}") for i in range(3)]
        c0, v0 = _cpu()
        w0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - w0
        c1, v1 = _cpu()
        cpu = c1 - c0
        out = {"commits": commits, "timeline": timeline, "wall_s": round(wall, 2),
               "cpu_s": round(cpu, 3),
               "idle_cpu_per_s": round(idle_rate, 4),
               "cpu_ms_per_commit": round(cpu / commits * 1000, 4),
               "cpu_ms_per_commit_less_idle": round((cpu - idle_rate * wall) / commits * 1000, 4),
               "vol_switches_per_commit": round((v1 - v0) / commits, 2)}
        cfg.end()
    finally:
        ctx.finish(body_failed=False)
    return out


def run_part(tree: Path, env: dict[str, str], sim_seed: int | None = None) -> dict:
    """``pytest --pyargs labtests -m part2c`` in ``tree``: its rusage and the churn tests'
    commits (the last figure of the Passed line after each churn description)."""
    cmd = [sys.executable, "-m", "pytest", "--pyargs", "labtests", "-q", "-p", "no:cacheprovider",
           "-m", "part2c"]
    if sim_seed is not None:
        cmd += ["--sim", "--seed", str(sim_seed)]
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        _, status, ru = os.wait4(proc.pid, 0)
        out.seek(0)
        lines = out.read().decode(errors="replace").splitlines()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"part 2C failed in {tree}:\n" + "\n".join(lines[-30:]))
    churn = {}
    for k, line in enumerate(lines[:-1]):
        if line.startswith("Test (2C): ") and "churn" in line and "Passed" in lines[k + 1]:
            churn[line[len("Test (2C): "):].rstrip(" .")] = int(lines[k + 1].split()[-1])
    return {"part": "2C", "sim_seed": sim_seed, "cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
            "peak_rss_mb": round(ru.ru_maxrss / 1024, 1), "churn_commits": churn,
            "commits": sum(churn.values())}


def run(tree: Path, env: dict[str, str], args: argparse.Namespace, rep: int = 0) -> dict:
    if args.mode == "part":
        return run_part(tree, env, args.seed + rep if args.sim else None)
    cmd = [sys.executable, str(HERE / "p2c_bench.py"), "--child", args.mode,
           "--seed", str(args.seed), "--commits", str(args.commits)]
    if args.no_trace:
        cmd.append("--no-trace")
    if args.no_timeline:
        cmd.append("--no-timeline")
    cmd += ["--top", str(args.top)]
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"child in {tree} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def show(label: str, r: dict) -> None:
    if "part" in r:
        sim = f" --sim --seed {r['sim_seed']}" if r.get("sim_seed") is not None else ""
        print(f"{label:<9} part 2C{sim}: peak RSS {r['peak_rss_mb']:5.1f} MB, "
              f"CPU {r['cpu_s']:5.2f} s, "
              f"churn commits {r['churn_commits']}")
    elif "peak_rss_mb" in r:
        line = (f"{label:<9} commits {r['commits']:5d}  peak RSS {r['peak_rss_mb']:5.1f} MB "
                f"(before the test {r['rss_before_mb']:.1f})")
        if "live_mb" in r:
            line += (f"  live at the end {r['live_mb']:.2f} MB = "
                     f"{r['live_mb_per_1000_commits']:.3f} MB/1000 commits")
        print(line)
        for t in r.get("top", []):
            print(f"      {t['mb']:7.3f} MB {t['mb_per_1000']:7.3f}/1000  {t['blocks']:7d} "
                  f"blocks  {t['where']}")
    else:
        what = "" if r.get("timeline", True) else "no timeline "
        print(f"{label:<9} {what}{r['commits']} commits in {r['wall_s']} s: CPU "
              f"{r['cpu_ms_per_commit']:.3f} ms/commit "
              f"({r['cpu_ms_per_commit_less_idle']:.3f} less idle "
              f"{r['idle_cpu_per_s'] * 1000:.1f} ms/s), "
              f"{r['vol_switches_per_commit']:.1f} voluntary switches/commit")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("mem", "cpu", "part"))
    parser.add_argument("--commits", type=int, default=1000, help="cpu: commits to make")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--no-trace", action="store_true", help="mem: no tracemalloc")
    parser.add_argument("--sim", action="store_true",
                        help="part: simulated time, seed --seed + rep (both trees alike)")
    parser.add_argument("--no-timeline", action="store_true",
                        help="cpu: no timeline (recorder off, no observer, no sampler)")
    parser.add_argument("--top", type=int, default=12, help="mem: sources of live memory shown")
    parser.add_argument("--baseline", metavar="REV",
                        help="also measure a git worktree of REV, alternating with this tree")
    parser.add_argument("--json", type=Path, help="write every run's figures here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        r = child_mem(not args.no_trace, args.seed, args.top) if args.mode == "mem" \
            else child_cpu(args.commits, args.seed, not args.no_timeline)
        print(json.dumps(r))
        return 0
    base = make_worktree(args.baseline) if args.baseline else None
    trees = {"current": REPO, **({"baseline": base} if base is not None else {})}
    cache_root = Path(tempfile.mkdtemp(prefix="p2c-bench-pycache-"))
    runs: list[dict] = []
    try:
        caches, bytecode = prepare_trees("cached", trees, tree_env, cache_root)
        envs = {label: tree_env(tree, caches[label]) for label, tree in trees.items()}
        order = list(trees.items())
        for rep in range(args.reps):
            for label, tree in (order if rep % 2 == 0 else order[::-1]):
                r = run(tree, envs[label], args, rep)
                r["tree"] = label
                runs.append(r)
                show(label, r)
    finally:
        if base is not None:
            remove_worktree(base)
        shutil.rmtree(cache_root, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps({"mode": args.mode, "baseline": args.baseline,
                                         "bytecode": bytecode,
                                         "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
