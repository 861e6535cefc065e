"""Print labrpc's speed and cost per RPC, optionally side by side with another commit.

Figures: wall µs per sequential RPC; RPCs/s with 1 and with 20 concurrent
callers; CPU (user + system, and the system part alone: the kernel's share,
mostly thread wake-ups and switches) µs per RPC; context switches (voluntary +
involuntary) per RPC.  ``--profile FILE`` instead runs the 20-caller case once
in this process with cProfile on every thread and writes the merged profile
(``python -m pstats FILE``), printing its top functions.  Each round runs in a
fresh child process.  With ``--baseline REV`` the ``labrpc`` package of commit
REV (``git archive``, the repository is not touched) is measured by the same code in the same
invocation, rounds interleaved so that the machine's load hits both alike,
and the ratios are printed.  Go's labrpc is the reference: 14.5 µs per
sequential RPC on the 2-core lab machine (issue #19), or measured when
``RAFTLAB_GO_LAB`` names a Go lab checkout and ``go`` is installed.

``--one-cpu``: every round's process holds itself to one CPU before it starts a
thread, as the harness holds a graded test's process (labtests/cpupin.py): the
figures of labrpc as the lab now runs it.  Without it the threads may use every
core, as a program using labrpc alone would.

Run: ``python benchmarks/labrpc_bench.py --baseline f9fc2f4 --json out.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GO_SEQUENTIAL_US = 14.5  # Go 1.19 labrpc TestBenchmark on the 2-core lab machine (issue #19)
TARGET_FACTOR = 2.0  # target: at most 2x Go per sequential RPC


class Echo:
    """A minimal service: the handler does no work, so the figure is the network's."""

    def handler2(self, args: int) -> str:
        return f"handler2-{args}"


def _usage() -> tuple[float, float, int]:
    """(CPU seconds user + system, system alone, context switches) of this process so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_stime, r.ru_nvcsw + r.ru_nivcsw


def _measured(calls: int, body: Callable[[], None]) -> dict[str, float]:
    """Run ``body`` (which makes ``calls`` RPCs in all) and give its figures per RPC."""
    cpu0, sys0, switches0 = _usage()
    start = time.perf_counter()
    body()
    wall = time.perf_counter() - start
    cpu1, sys1, switches1 = _usage()
    return {"us_per_rpc": wall / calls * 1e6, "rpcs_per_s": calls / wall,
            "cpu_us_per_rpc": (cpu1 - cpu0) / calls * 1e6,
            "sys_us_per_rpc": (sys1 - sys0) / calls * 1e6,
            "switches_per_rpc": (switches1 - switches0) / calls}


def _in_threads(target: Callable[..., None], args: list[Any], name: str) -> Callable[[], None]:
    """A body that runs ``target(arg)`` in one thread per arg and waits for them all."""
    def body() -> None:
        threads = [threading.Thread(target=target, args=(a,), name=f"{name}-{i}")
                   for i, a in enumerate(args)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return body


def _run(callers: int, calls_each: int) -> dict[str, float]:
    """``callers`` threads each make ``calls_each`` RPCs; wall, CPU and switches per RPC."""
    from labrpc import Network, Server, Service  # the tree under test, see --child

    net = Network()
    server = Server()
    server.add_service(Service(Echo()))
    net.add_server("server", server)
    ends = []
    for i in range(callers):
        end = net.make_end(i)
        net.connect(i, "server")
        net.enable(i, True)
        ends.append(end)
    ends[0].call("Echo.handler2", 0)  # warm the handler pool

    def client(end: Any) -> None:
        for j in range(calls_each):
            assert end.call("Echo.handler2", j) == f"handler2-{j}"

    calls = callers * calls_each
    try:
        if callers == 1:  # the caller is the main thread, as in Go's TestBenchmark
            figures = _measured(calls, lambda: client(ends[0]))
        else:
            figures = _measured(calls, _in_threads(client, ends, "bench-client"))
    finally:
        net.cleanup()
    assert server.get_count() == calls + 1
    return figures


def floor(callers: int, calls_each: int) -> dict[str, float]:
    """Two bare pipe hand-offs per "RPC", no network code: what labrpc cannot go below.

    Each caller hands a task to a pool of sleeping threads through one shared pipe and
    a deque, and sleeps on its own pipe until the task writes to it: labrpc's two
    hand-offs (the handler runs on a pool thread so that a dead server's call can fail
    at once) with nothing else.  The rest of labrpc's cost is Python: codec, locks,
    counts and the route checks.
    """
    from collections import deque

    tasks: deque[Any] = deque()
    pool_r, pool_w = os.pipe()

    def worker() -> None:
        while True:
            os.read(pool_r, 1)
            task = tasks.popleft()
            if task is None:
                return
            task()

    def client() -> None:
        reply_r, reply_w = os.pipe()

        def task() -> None:
            os.write(reply_w, b"\0")

        for _ in range(calls_each):
            tasks.append(task)
            os.write(pool_w, b"\0")
            os.read(reply_r, 1)
        os.close(reply_r)
        os.close(reply_w)

    workers = [threading.Thread(target=worker) for _ in range(callers)]
    for t in workers:
        t.start()
    calls = callers * calls_each
    figures = _measured(calls, _in_threads(lambda _: client(), [None] * callers, "floor-client"))
    for _ in workers:
        tasks.append(None)
        os.write(pool_w, b"\0")
    for t in workers:
        t.join()
    os.close(pool_r)
    os.close(pool_w)
    del figures["us_per_rpc"]  # the floor is a throughput, not a sequential latency
    return figures


def child(calls: int, callers: int) -> dict[str, Any]:
    """One round in this process: sequential (1 caller), then ``callers`` callers."""
    seq = _run(1, calls)
    conc = _run(callers, max(1, calls // callers))
    return {"sequential": seq, "concurrent": conc}


def profile(path: str, calls: int, callers: int) -> None:
    """The concurrent case once, with cProfile on every thread; merged stats into ``path``.

    Times are per thread and include waits (``posix.read`` is where a thread sleeps),
    so read ``tottime`` of Python functions as their cost and calls per RPC as counts.
    """
    import cProfile
    import pstats

    sys.path.insert(0, str(ROOT))
    profiles: list[cProfile.Profile] = []
    run = threading.Thread.run

    def profiled_run(self: threading.Thread) -> None:
        prof = cProfile.Profile()
        profiles.append(prof)  # list.append: atomic, no lock needed
        prof.enable()
        try:
            run(self)
        finally:
            prof.disable()

    threading.Thread.run = profiled_run  # type: ignore[method-assign]
    try:
        figures = _run(callers, max(1, calls // callers))
    finally:
        threading.Thread.run = run  # type: ignore[method-assign]
    stats = pstats.Stats(profiles[0])
    for prof in profiles[1:]:
        stats.add(prof)
    stats.dump_stats(path)
    print(f"{callers} callers under cProfile: {figures['rpcs_per_s']:.0f} RPCs/s, "
          f"{figures['cpu_us_per_rpc']:.1f} CPU µs/RPC (profiled); wrote {path}")
    stats.sort_stats("tottime").print_stats(15)


def _round(tree: Path, calls: int, callers: int, bare: bool = False,
           one_cpu: bool = False) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run(
        [sys.executable, __file__, "--child", "--calls", str(calls), "--callers", str(callers)]
        + (["--floor"] if bare else []) + (["--one-cpu"] if one_cpu else []),
        env=env, cwd=tree, capture_output=True, text=True, timeout=600, check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"benchmark round in {tree} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _export(rev: str, into: Path) -> Path:
    """The labrpc package of ``rev``, extracted into ``into`` (the repository is not changed)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "labrpc"],
                             capture_output=True, check=False)
    if archive.returncode != 0:
        raise SystemExit(f"--baseline {rev}: git archive failed: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def _median(rounds: list[dict[str, Any]], part: str, key: str) -> float:
    return statistics.median(r[part][key] for r in rounds)


def summarise(rounds: list[dict[str, Any]]) -> dict[str, float]:
    return {
        "sequential_us": _median(rounds, "sequential", "us_per_rpc"),
        "rpcs_per_s_1": _median(rounds, "sequential", "rpcs_per_s"),
        "rpcs_per_s_20": _median(rounds, "concurrent", "rpcs_per_s"),
        "cpu_us_per_rpc_1": _median(rounds, "sequential", "cpu_us_per_rpc"),
        "cpu_us_per_rpc_20": _median(rounds, "concurrent", "cpu_us_per_rpc"),
        "sys_us_per_rpc_1": _median(rounds, "sequential", "sys_us_per_rpc"),
        "sys_us_per_rpc_20": _median(rounds, "concurrent", "sys_us_per_rpc"),
        "switches_per_rpc_1": _median(rounds, "sequential", "switches_per_rpc"),
        "switches_per_rpc_20": _median(rounds, "concurrent", "switches_per_rpc"),
    }


_GO_UNITS = {"ns": 1e-3, "µs": 1.0, "us": 1.0, "ms": 1e3, "s": 1e6}


def go_sequential_us() -> tuple[float, str]:
    """Go's µs per sequential RPC: measured if RAFTLAB_GO_LAB and go are there, else issue #19's."""
    lab = os.environ.get("RAFTLAB_GO_LAB")
    go = shutil.which("go")
    if not lab or not go:
        return GO_SEQUENTIAL_US, "issue #19, same machine (set RAFTLAB_GO_LAB to measure)"
    src = Path(lab) / "src" / "labrpc"
    out = subprocess.run([go, "test", "-run", "TestBenchmark", "-count", "1", "-v", "."],
                         cwd=src, capture_output=True, text=True, timeout=600, check=False)
    match = re.search(r"([\d.]+)(ns|µs|us|ms|s) for (\d+)", out.stdout)
    if out.returncode != 0 or match is None:
        return GO_SEQUENTIAL_US, f"issue #19 (measuring in {src} failed)"
    total_us = float(match.group(1)) * _GO_UNITS[match.group(2)]
    return total_us / int(match.group(3)), f"measured in {src}"


def _line(name: str, fmt: str, now: float, base: float | None) -> str:
    text = f"  {name:<28} {format(now, fmt):>10}"
    if base is not None:
        text += f"   baseline {format(base, fmt):>10}   ratio {now / base:5.2f}"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="RPCs per measurement")
    parser.add_argument("--callers", type=int, default=20, help="concurrent callers")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per tree (median kept)")
    parser.add_argument("--baseline", metavar="REV", help="also measure labrpc of this commit")
    parser.add_argument("--json", metavar="FILE", help="write the figures here")
    parser.add_argument("--profile", metavar="FILE",
                        help="profile the concurrent case of this tree (every thread) into FILE")
    parser.add_argument("--one-cpu", action="store_true",
                        help="hold each round's process to one CPU, as a graded test's is")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--floor", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.one_cpu:  # before any thread starts: they inherit it
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        result = (floor(args.callers, max(1, args.calls // args.callers)) if args.floor
                  else child(args.calls, args.callers))
        print(json.dumps(result))
        return
    if args.profile:
        profile(args.profile, args.calls, args.callers)
        return

    trees: dict[str, Path] = {"current": ROOT}
    with tempfile.TemporaryDirectory(prefix="labrpc-bench-") as tmp:
        if args.baseline:
            trees["baseline"] = _export(args.baseline, Path(tmp))
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
        floors: list[dict[str, Any]] = []
        for _ in range(args.rounds):
            for name, tree in trees.items():  # interleaved: load hits both alike
                rounds[name].append(_round(tree, args.calls, args.callers,
                                           one_cpu=args.one_cpu))
            floors.append(_round(ROOT, args.calls, args.callers, bare=True,
                                 one_cpu=args.one_cpu))
    figures = {name: summarise(r) for name, r in rounds.items()}
    go_us, go_source = go_sequential_us()

    now, base = figures["current"], figures.get("baseline")
    print(f"labrpc, median of {args.rounds} rounds of {args.calls} RPCs"
          + (f" (baseline: {args.baseline}, interleaved)" if base else "")
          + ("; each process on one CPU, as a graded test's" if args.one_cpu else ""))
    rows = [("sequential µs/RPC", "sequential_us", ".1f"),
            ("RPCs/s, 1 caller", "rpcs_per_s_1", ".0f"),
            (f"RPCs/s, {args.callers} callers", "rpcs_per_s_20", ".0f"),
            ("CPU µs/RPC, 1 caller", "cpu_us_per_rpc_1", ".1f"),
            (f"CPU µs/RPC, {args.callers} callers", "cpu_us_per_rpc_20", ".1f"),
            ("  of which system, 1 caller", "sys_us_per_rpc_1", ".1f"),
            (f"  of which system, {args.callers}", "sys_us_per_rpc_20", ".1f"),
            ("switches/RPC, 1 caller", "switches_per_rpc_1", ".2f"),
            (f"switches/RPC, {args.callers} callers", "switches_per_rpc_20", ".2f")]
    for label, key, fmt in rows:
        print(_line(label, fmt, now[key], base[key] if base else None))
    bare = {key: statistics.median(f[key] for f in floors) for key in floors[0]}
    print(f"  floor, two bare pipe hand-offs per RPC, {args.callers} callers: "
          f"{bare['rpcs_per_s']:.0f} RPCs/s, {bare['cpu_us_per_rpc']:.1f} CPU µs/RPC "
          f"({bare['sys_us_per_rpc']:.1f} system), {bare['switches_per_rpc']:.2f} switches/RPC")
    print(f"  Go labrpc: {go_us:.1f} µs/RPC ({go_source}); target <= {TARGET_FACTOR * go_us:.1f}"
          f" µs; now {now['sequential_us'] / go_us:.2f}x Go")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "rounds": args.rounds, "calls": args.calls, "callers": args.callers,
            "one_cpu": args.one_cpu,
            "baseline_rev": args.baseline, "go_sequential_us": go_us, "go_source": go_source,
            "figures": figures, "floor": bare, "raw": rounds, "raw_floor": floors,
        }, indent=2) + "\n")
        print(f"  wrote {args.json}")


if __name__ == "__main__":
    main()
