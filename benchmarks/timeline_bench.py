"""What the failure timeline costs: page size and open time, and the sampler's CPU.

Two measurements (numbers go to the README's timeline section):

* ``--page``: runs one graded test (default the longest, ``test_figure8_unreliable_2c``:
  5 peers, ~35 s) in real time against the bundled Raft, renders the events it
  recorded, and opens the page in headless Chromium: bytes, events, RPCs, and the
  time from navigation to the drawn timeline.
* ``--share PART``: runs each test of a part in this process (real time, bundled
  Raft) and adds up the process's CPU time and the CPU time of the sampler's own
  threads (``time.thread_time``, measured by the sampler): the sampler's share.
* ``--cpu PART``: runs a part (``2a``...) in a pytest subprocess, with and without
  the state sampler, alternating, ``--reps`` times each, and prints the child's
  CPU time (user + system) for each run (noisy on a loaded machine: the share
  above is the precise figure).

    python benchmarks/timeline_bench.py --page
    python benchmarks/timeline_bench.py --share 2a
    python benchmarks/timeline_bench.py --cpu 2a --reps 2
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchcommon import run_child

RPC_LINE = '<line class="rpc-msg rpc-o-'  # one RPC drawn (labtests/timeline/template.html)

NO_SAMPLER_PLUGIN = '''
import labtests.context as context
import labtests.timeline as timeline

_start = timeline.start_watch


def _no_sampling(cfg, **kw):
    kw["sample"] = False
    return _start(cfg, **kw)


context.timeline.start_watch = _no_sampling
'''


def page(test: str) -> None:
    from labtests import test_2a, test_2b, test_2c, test_2d
    from labtests.context import TestContext
    from labtests.impl_loader import load
    from labtests.timeline import html
    from labtests.timeline.recorder import header

    fn = next(getattr(m, test) for m in (test_2a, test_2b, test_2c, test_2d) if hasattr(m, test))
    ctx = TestContext(test, 1, load(None))
    t0 = time.monotonic()
    try:
        fn(ctx.make_config)
    finally:
        ctx.finish(body_failed=False)
    wall = time.monotonic() - t0
    events = ctx.configs[0].timeline.events()
    text = html.render(header(ctx.configs[0].n, test=test, seed=1, mode="real"), events)
    out = Path(tempfile.mkdtemp()) / "timeline.html"
    out.write_text(text)
    kinds: dict[str, int] = {}
    for ev in events:
        kinds[ev["k"]] = kinds.get(ev["k"], 0) + 1
    print(f"{test}: {wall:.1f} s, {ctx.figures}, {len(events)} events {kinds}")
    print(f"page {out}: {out.stat().st_size} bytes")
    end = max((ev["t"] for ev in events), default=0.0)
    # the whole test, then its last 2 s (zoomed in: each RPC drawn, as a reader would look)
    for label, uri in (("whole test", out.as_uri()),
                       ("last 2 s", f"{out.as_uri()}#t={max(0.0, end - 2):.3f},{end:.3f}")):
        with tempfile.TemporaryDirectory() as profile:
            t1 = time.monotonic()
            done = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                                   f"--user-data-dir={profile}", "--window-size=1400,640",
                                   "--dump-dom", uri],
                                  capture_output=True, text=True, timeout=120)
            chromium_wall = time.monotonic() - t1
        load_ms = re.search(r'data-load-ms="([\d.]+)"', done.stdout)
        render_ms = re.search(r'data-render-ms="([\d.]+)"', done.stdout)
        print(f"opened ({label}): navigation to drawn {load_ms.group(1) if load_ms else '?'} ms, "
              f"drawing {render_ms.group(1) if render_ms else '?'} ms, "
              f"{done.stdout.count(RPC_LINE)} RPC lines, "
              f"{done.stdout.count('class=' + chr(34) + 'seg seg-candidate')} candidate segments, "
              f"Chromium process {chromium_wall:.2f} s")


def share(part: str) -> None:
    import importlib

    from labtests.context import TestContext
    from labtests.impl_loader import load

    module = importlib.import_module(f"labtests.test_{part}")
    impl = load(None)
    total_cpu = sampler_cpu = 0.0
    for name in sorted(n for n in dir(module) if n.startswith("test_")):
        ctx = TestContext(name, 1, impl)
        c0 = time.process_time()
        try:
            getattr(module, name)(ctx.make_config)
        finally:
            ctx.finish(body_failed=False)
        cpu_used = time.process_time() - c0
        samplers = [cfg.watch.sampler for cfg in ctx.configs
                    if cfg.watch is not None and cfg.watch.sampler is not None]
        mine = sum(s.cpu_s for s in samplers)
        rounds = sum(s.rounds for s in samplers)
        total_cpu += cpu_used
        sampler_cpu += mine
        print(f"{name}: process CPU {cpu_used:.2f} s, sampler {1000 * mine:.1f} ms "
              f"({100 * mine / cpu_used:.2f} %) in {rounds} rounds")
    print(f"part {part}: process CPU {total_cpu:.2f} s, sampler {1000 * sampler_cpu:.1f} ms = "
          f"{100 * sampler_cpu / total_cpu:.2f} % (load {os.getloadavg()[0]:.1f})")


def _child_cpu(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    done, wall, cpu = run_child(cmd, env)
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "?"
    return cpu, wall, last


def cpu(part: str, reps: int, sim: bool) -> None:
    plugin_dir = Path(tempfile.mkdtemp())
    (plugin_dir / "no_timeline_sampler.py").write_text(NO_SAMPLER_PLUGIN)
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs",
            "labtests", "-m", f"part{part}"] + (["--sim"] if sim else [])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "RAFTLAB_"))}
    env_off = dict(env, PYTHONPATH=str(plugin_dir))
    totals: dict[str, list[float]] = {"with": [], "without": []}
    for rep in range(reps):
        for label, cmd, e in (("with", base, env),
                              ("without", base + ["-p", "no_timeline_sampler"], env_off)):
            c, w, last = _child_cpu(cmd, e)
            totals[label].append(c)
            print(f"rep {rep + 1} {label:7} sampler: CPU {c:6.2f} s, wall {w:5.1f} s  ({last}) "
                  f"load {os.getloadavg()[0]:.1f}")
    w, wo = sum(totals["with"]) / reps, sum(totals["without"]) / reps
    print(f"part {part}{' --sim' if sim else ''}: mean CPU with {w:.2f} s, without {wo:.2f} s, "
          f"difference {100 * (w - wo) / wo:+.1f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--page", nargs="?", const="test_figure8_unreliable_2c", default=None,
                        metavar="TEST")
    parser.add_argument("--share", metavar="PART", default=None, help="2a, 2b, 2c or 2d")
    parser.add_argument("--cpu", metavar="PART", default=None, help="2a, 2b, 2c or 2d")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--sim", action="store_true")
    args = parser.parse_args()
    if args.page:
        page(args.page)
    if args.share:
        share(args.share.lower())
    if args.cpu:
        cpu(args.cpu.lower(), args.reps, args.sim)


if __name__ == "__main__":
    main()
