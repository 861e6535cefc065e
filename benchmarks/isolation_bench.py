"""What isolated mode costs: the graded parts in-process and isolated, side by side.

For each part (2A..2D, one pytest run per part and mode, as ``go test -run 2X``
does) it prints real time, CPU time of the tester plus every peer (``wait4``'s
resource usage of the pytest process, which includes the peers and the
template it reaped), and peak memory (the largest sum of PSS over the pytest
process and all its descendants, sampled every 0.2 s; PSS shares the pages
that forked peers have in common).  Then the cost of one sequential RPC round
trip through the tester's network, in-process and isolated (the same toy
Raft, ``tests/toys_isolated/echo.py``, on both sides), of one tester request
to a peer (``get_state``), and of a crash + restart of a peer.

    python benchmarks/isolation_bench.py                 # all parts, both modes
    python benchmarks/isolation_bench.py --parts 2A 2B --json out.json
    python benchmarks/isolation_bench.py --rpc-only

Bytecode: the pytest runs and every peer they start read their bytecode from one
cache filled by an unmeasured warm-up (``benchcommon.BYTECODE_MODE``): with
``PYTHONDONTWRITEBYTECODE=1`` each isolated peer used to compile what it imports
(an installed lab has its bytecode), charging isolated mode for that.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchcommon import BYTECODE_MODE, bytecode_env, warm_bytecode

ROOT = Path(__file__).resolve().parent.parent
ECHO_TOY = ROOT / "tests" / "toys_isolated" / "echo.py"
PARTS = ("2A", "2B", "2C", "2D")
SAMPLE_S = 0.2


def _tree(root: int) -> list[int]:
    """``root`` and all its descendants, from one scan of /proc."""
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        ppid = int(data[data.rfind(b")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(kids.get(pid, ()))
    return found


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_env(cache: Path) -> dict[str, str]:
    """The pytest runs' environment: no inherited harness settings, bytecode in ``cache``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "RAFTLAB_"))}
    return bytecode_env(env, cache)


def run_part(part: str, isolate: bool, cache: Path) -> dict[str, object]:
    """One pytest run of one part; its real time, CPU time, peak memory and outcome."""
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--pyargs", "labtests",
           "-m", f"part{part.lower()}", "-q"]
    if isolate:
        cmd.append("--isolate")
    env = run_env(cache)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd="/tmp")
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(SAMPLE_S):
            peak[0] = max(peak[0], sum(_pss_kib(p) for p in _tree(proc.pid)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    real = time.monotonic() - t0
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    last = output.strip().splitlines()[-1] if output.strip() else ""
    return {
        "part": part, "mode": "isolated" if isolate else "in-process",
        "real_s": round(real, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_mib": round(peak[0] / 1024, 1), "exit": proc.returncode, "summary": last,
    }


def rpc_costs(n: int = 2000, restarts: int = 20) -> dict[str, float]:
    """µs per sequential RPC in both modes; µs per get_state and ms per restart isolated."""
    from labtests.config import Config
    from labtests.impl_loader import load
    from labtests.isolation import IsolatedImplementation

    results: dict[str, float] = {}
    for mode in ("in-process", "isolated"):
        impl = IsolatedImplementation(str(ECHO_TOY)) if mode == "isolated" \
            else load(str(ECHO_TOY))
        cfg = Config(2, False, False, impl=impl, seed=1)
        try:
            cfg.start_peers()
            cfg.rafts[0].start(("bench", 200))  # warm up pools and caches
            ns, got, _ = cfg.rafts[0].start(("bench", n))
            if got != n:
                raise RuntimeError(f"{mode}: only {got} of {n} echo RPCs came back")
            results[f"rpc_us_{mode}"] = round(ns / 1000, 1)
            if mode == "isolated":
                t0 = time.perf_counter()
                for _ in range(n):
                    cfg.rafts[1].get_state()
                results["get_state_us_isolated"] = round(
                    (time.perf_counter() - t0) / n * 1e6, 1)
                t0 = time.perf_counter()
                for _ in range(restarts):
                    cfg.start1(1)  # crash (kill(); the echo toy has no threads) and restart
                    cfg.connect(1)
                results["restart_ms_isolated"] = round(
                    (time.perf_counter() - t0) / restarts * 1e3, 1)
        finally:
            cfg.cleanup()
            if mode == "isolated":
                impl.close()
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="*", default=list(PARTS), choices=PARTS)
    ap.add_argument("--rpc-only", action="store_true", help="only the RPC/restart costs")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args(argv)

    figures: dict[str, object] = {"machine": {"cores": os.cpu_count(),
                                              "load": os.getloadavg()}}
    rows = []
    if not args.rpc_only:
        cache = Path(tempfile.mkdtemp(prefix="isolation-bench-pycache-"))
        figures["bytecode"] = {"mode": "cached", "description": BYTECODE_MODE,
                               "warm_up_pycs": warm_bytecode(ROOT, run_env(cache),
                                                             cwd=Path("/tmp"))}
        print(f"bytecode: {BYTECODE_MODE}", flush=True)
        print(f"{'part':<5}{'mode':<12}{'real s':>8}{'cpu s':>8}{'peak MiB':>10}  outcome",
              flush=True)
        for part in args.parts:
            pair = []
            for isolate in (False, True):
                row = run_part(part, isolate, cache)
                rows.append(row)
                pair.append(row)
                print(f"{part:<5}{row['mode']:<12}{row['real_s']:>8}{row['cpu_s']:>8}"
                      f"{row['peak_mib']:>10}  {row['summary']}", flush=True)
            ratio = pair[1]["real_s"] / pair[0]["real_s"] if pair[0]["real_s"] else 0
            print(f"{part:<5}{'isolated/in-process real time':<36}{ratio:>6.3f}", flush=True)
        total = {m: sum(r["real_s"] for r in rows if r["mode"] == m)
                 for m in ("in-process", "isolated")}
        print(f"all  real time in-process {total['in-process']:.1f} s, isolated "
              f"{total['isolated']:.1f} s", flush=True)
        figures["parts"] = rows
    costs = rpc_costs()
    figures["rpc"] = costs
    print(f"sequential RPC: in-process {costs['rpc_us_in-process']} µs, isolated "
          f"{costs['rpc_us_isolated']} µs; get_state (tester -> peer) "
          f"{costs['get_state_us_isolated']} µs; crash + restart of a peer "
          f"{costs['restart_ms_isolated']} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
