"""Per graded part: real time, CPU (user and system), peak RSS, wake-ups and thread creations.

Each part runs as its own ``pytest`` process, sequentially, as ``go test -run 2X``
does.  Its resource use comes from ``os.wait4`` (that child's own rusage: user
and system CPU, peak RSS, voluntary context switches -- a thread that blocks and
is woken again counts one -- and involuntary ones).  The thread counts and the CPU
per thread kind come from ``benchmarks/thread_cpu_plugin.py``, loaded into the
run with ``-p thread_cpu_plugin``; what the process had used when collection was
done (the fixed cost: interpreter, pytest, plugins, collection) from
``benchmarks/phase_plugin.py``.

``--baseline REV`` measures a git worktree of REV in the same invocation, the two
trees alternating part by part (which one goes first alternates too), so load
from other work hits both alike; it prints current/baseline ratios.  The Go lab's
figures (issue 19: same 2-core machine, Go 1.19, the 2022 lab with a public
passing solution) are printed as the reference, or measured when
``RAFTLAB_GO_LAB`` names the Go lab's ``src/raft`` folder and ``go`` is on PATH.

Bytecode: every measured run is a *second* run of an installed lab (Go's figures
are for a compiled test binary).  Each tree's children keep their bytecode in a
fresh ``PYTHONPYCACHEPREFIX`` of their own with ``PYTHONDONTWRITEBYTECODE``
dropped, filled by one unmeasured warm-up per tree (``benchcommon.warm_bytecode``:
compileall, then a collection importing every lab module under pytest's assertion
rewriting).  Before session 8 the checkout found its ``__pycache__`` (when one had
been written) while a baseline worktree compiled -- and pytest rewrote -- its
modules in every process: about 0.2 s of CPU per part charged to one side only.
The baseline worktree also gets a copy of the checkout's ``raftlab.egg-info``
(left there by the editable install), so that pytest marks the same packages for
assertion rewriting in both trees (all four, as in an installed lab; each run's
marks and rewritten modules are in the JSON).  ``--bytecode as-is`` keeps the old
bytecode behaviour (the environment and the trees' own caches; the egg-info copy
stays) to measure what it costs.

    python benchmarks/raft_parts_bench.py                    # all four parts
    python benchmarks/raft_parts_bench.py 2A 2B --json out.json
    python benchmarks/raft_parts_bench.py --baseline f9fc2f4 --json cmp.json
    python benchmarks/raft_parts_bench.py 2A --impl path/to/raft.py -- --sim
    python benchmarks/raft_parts_bench.py --whole --baseline 17763eb   # also: raftlab test

``--whole`` also runs the chosen parts the way the README's main job runs the whole
lab -- ``raftlab test``: the parts in one pytest process, under the ``raftlab``
command's own process -- once per tree after the parts (order alternating on).
Its figures are those of the whole process tree (``wait4`` of the ``raftlab``
process counts the pytest child it waited for; peak RSS is the larger of the two).
The issue's "whole lab <= 12 s" is printed against both: the sum of the per-part
processes (four start-ups, as four ``go test -run 2X``) and this one run.
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

from benchcommon import add_bytecode_option, bytecode_env, count_pycs, go_binary, prepare_trees

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PARTS = ("2A", "2B", "2C", "2D")
# Go lab (issue 19): real s, CPU s, peak RSS MB per part, and the whole lab's CPU.
GO = {"2A": (16.4, 0.22, 12), "2B": (52.5, 1.22, 13), "2C": (126.2, 3.18, 24),
      "2D": (222.5, 3.53, 12)}
GO_LAB_CPU_S = 8.2
TARGET = {"cpu_x_go": 1.5, "lab_cpu_s": 12.0, "rss_mb": 40.0}
# CPU per thread kind; CPU and memory when collection is done (the fixed cost).
PLUGINS = ("thread_cpu_plugin", "phase_plugin")


def pytest_command(part: str, impl: str | None, extra: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", "--pyargs", "labtests", "-q",
           "-p", "no:cacheprovider", *[a for p in PLUGINS for a in ("-p", p)],
           "-m", f"part{part.lower()}"]
    if impl:
        cmd.append(f"--raft-impl={impl}")
    return cmd + extra


def whole_lab_command(parts: list[str], impl: str | None, extra: list[str]) -> list[str]:
    """``raftlab test PARTS`` (one pytest process) with this bench's plugins."""
    cmd = [sys.executable, "-c", "import sys; from tools.cli import main; "
           "sys.exit(main(sys.argv[1:]))", "test", *parts]
    if impl:
        cmd.append(f"--impl={impl}")
    return cmd + ["--", *[a for p in PLUGINS for a in ("-p", p)], *extra]


def warm_whole_lab(trees: dict[str, Path], caches: dict[str, Path | None],
                   impl: str | None) -> None:
    """One unmeasured simulated ``raftlab test`` of one test per tree, so the measured
    ``raftlab test`` compiles nothing either: the command's own modules (and the
    standard library's they import: with a cache prefix Python looks for every pyc
    there) are not imported by the parts' warm-up collection."""
    for name, tree in trees.items():
        if caches[name] is None:
            continue
        cmd = whole_lab_command(["test_initial_election_2a"], impl, ["--sim"])
        done = subprocess.run(cmd, cwd=tree, env=tree_env(tree, caches[name]),
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise RuntimeError(f"the `raftlab test` warm-up of {tree} failed "
                               f"(exit {done.returncode}):\n{done.stdout[-2000:]}")


def measure(cmd: list[str], cwd: Path, env: dict[str, str]) -> dict:
    """Run ``cmd``; its own rusage (``wait4``), wall time and last output line."""
    with tempfile.TemporaryFile() as out:
        start = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        _, status, ru = os.wait4(proc.pid, 0)
        real = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    summary = [ln for ln in text.splitlines() if " passed" in ln or " failed" in ln
               or " error" in ln]
    return {"exit": proc.returncode, "real_s": round(real, 2), "user_s": round(ru.ru_utime, 3),
            "system_s": round(ru.ru_stime, 3), "cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
            "rss_mb": round(ru.ru_maxrss / 1024, 1), "voluntary_ctx": ru.ru_nvcsw,
            "involuntary_ctx": ru.ru_nivcsw,
            "result": summary[-1].strip("= ") if summary else text.strip()[-200:]}


def tree_env(tree: Path, cache: Path | None) -> dict[str, str]:
    """The children's environment for ``tree``; with ``cache``, their bytecode goes there."""
    env = dict(os.environ)
    # The tree's own packages first (a worktree must not import this checkout's).
    env["PYTHONPATH"] = os.pathsep.join([str(tree), str(HERE)])
    return bytecode_env(env, cache) if cache is not None else env


def run_raftlab(part: str | list[str], tree: Path, impl: str | None, extra: list[str],
                cache: Path | None) -> dict:
    """One part as its own pytest process; a list of parts: one ``raftlab test`` of them."""
    with tempfile.TemporaryDirectory(prefix="parts-bench-") as tmp:
        threads_json = Path(tmp) / "threads.json"
        env = tree_env(tree, cache)
        env["RAFTLAB_THREAD_CPU_JSON"] = str(threads_json)
        phases_json = Path(tmp) / "phases.json"
        env["RAFTLAB_PHASES_JSON"] = str(phases_json)
        pycs = count_pycs(cache) if cache is not None else 0
        cmd = (pytest_command(part, impl, extra) if isinstance(part, str)
               else whole_lab_command(part, impl, extra))
        row = measure(cmd, tree, env)
        if cache is not None:
            # Bytecode this run had to compile after all (0 when the warm-up did it all).
            row["pycs_written"] = count_pycs(cache) - pycs
        if threads_json.exists():
            threads = json.loads(threads_json.read_text())
            row["threads_created"] = threads["threads_created"]
            # The pytest process's own CPU when it unconfigured; for ``raftlab test`` the
            # rest of the tree's (its interpreter's exit, and the command's process).
            row["test_process_cpu_s"] = threads["process_cpu_s"]
            row["main_thread_s"] = threads["main_thread_s"]
            row["by_kind"] = threads["by_kind"]
            row["labtests"] = threads.get("labtests", "")
            row["bytecode"] = threads.get("bytecode", {})
        if phases_json.exists():
            phases = json.loads(phases_json.read_text())
            collected = next((p for p in phases if p["phase"] == "collected"), None)
            if collected:
                # Before the first test: interpreter, pytest, plugins, collection.
                row["before_tests_cpu_s"] = collected["cpu_s"]
                row["before_tests_rss_mb"] = collected["hwm_mb"]
            row["phases"] = phases
    return row


def run_go(part: str, binary: Path, lab: Path) -> dict:
    return measure([str(binary), "-test.run", part], lab, dict(os.environ))


def make_worktree(rev: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix="raftlab-baseline-")) / "tree"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), rev],
                   check=True, capture_output=True)
    # The same rewrite marks as the checkout (see the module docstring).
    for info in REPO.glob("*.egg-info"):
        shutil.copytree(info, path / info.name)
    return path


def remove_worktree(path: Path) -> None:
    subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)],
                   check=False, capture_output=True)
    shutil.rmtree(path.parent, ignore_errors=True)


def line(label: str, r: dict) -> str:
    return (f"  {label:<9} {r['real_s']:7.1f} {r['user_s']:6.2f} {r['system_s']:6.2f} "
            f"{r['cpu_s']:6.2f} {r['rss_mb']:6.1f} {r['voluntary_ctx']:8d} "
            f"{r['involuntary_ctx']:7d} {r.get('threads_created', 0):7d}  {r['result']}"
            + (f" (compiled {r['pycs_written']} pyc)" if r.get("pycs_written") else ""))


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("parts", nargs="*", default=list(PARTS), metavar="PART")
    parser.add_argument("--impl", help="Raft implementation (default: the bundled one)")
    parser.add_argument("--baseline", metavar="REV",
                        help="also measure a git worktree of REV, alternating with this tree")
    parser.add_argument("--json", type=Path, help="write every figure here as JSON")
    parser.add_argument("--whole", action="store_true",
                        help="also run the parts in one `raftlab test` (the README's main job)")
    add_bytecode_option(parser)
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    parts = [p.upper() for p in args.parts]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    lab = os.environ.get("RAFTLAB_GO_LAB")
    binary = go_binary(Path(lab)) if lab else None
    base = make_worktree(args.baseline) if args.baseline else None
    print(f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}")
    trees = {"current": REPO, **({"baseline": base} if base else {})}
    cache_root = Path(tempfile.mkdtemp(prefix="parts-bench-pycache-"))
    caches, bytecode = prepare_trees(args.bytecode, trees, tree_env, cache_root, PLUGINS)
    if args.whole:
        warm_whole_lab(trees, caches, args.impl)
    print(f"  {'':<9} {'real s':>7} {'user':>6} {'sys':>6} {'CPU s':>6} {'RSS MB':>6} "
          f"{'vol.ctx':>8} {'inv.ctx':>7} {'threads':>7}  result")
    results: dict[str, dict] = {}
    failed = False
    try:
        for k, part in enumerate(parts):
            row: dict = {"load_before": round(os.getloadavg()[0], 2)}
            order = [("current", REPO)] + ([("baseline", base)] if base else [])
            if k % 2:
                order.reverse()
            for name, tree in order:
                row[name] = run_raftlab(part, tree, args.impl, extra, caches[name])
            if binary is not None and lab:
                row["go"] = run_go(part, binary, Path(lab))
            results[part] = row
            print(f"{part}  (load before {row['load_before']})")
            for name in ("current", "baseline", "go"):
                if name in row:
                    print(line(name, row[name]))
            cur = row["current"]
            failed |= cur["exit"] != 0
            go_real, go_cpu, go_rss = GO[part]
            if "go" in row:
                go_real, go_cpu, go_rss = (row["go"]["real_s"], row["go"]["cpu_s"],
                                           row["go"]["rss_mb"])
            else:
                print(f"  {'Go (#19)':<9} {go_real:7.1f} {'':>6} {'':>6} {go_cpu:6.2f} "
                      f"{go_rss:6.1f}")
            print("  before the first test: " + "; ".join(
                f"{name} {row[name]['before_tests_cpu_s']:.2f} s CPU, "
                f"{row[name]['before_tests_rss_mb']:.1f} MB" for name in ("current", "baseline")
                if "before_tests_cpu_s" in row.get(name, {})))
            if base:
                b = row["baseline"]
                print(f"  current/baseline: real {ratio(cur['real_s'], b['real_s'])}, CPU "
                      f"{ratio(cur['cpu_s'], b['cpu_s'])}, RSS {ratio(cur['rss_mb'], b['rss_mb'])}"
                      f", wake-ups {ratio(cur['voluntary_ctx'], b['voluntary_ctx'])}, threads "
                      f"{ratio(cur.get('threads_created', 0), b.get('threads_created', 0))}")
            print(f"  current/Go: real {ratio(cur['real_s'], go_real)}, CPU "
                  f"{ratio(cur['cpu_s'], go_cpu)} (target <= {TARGET['cpu_x_go']}), RSS "
                  f"{cur['rss_mb']:.0f} MB (target <= {TARGET['rss_mb']:.0f})", flush=True)
        if args.whole:
            whole = {"load_before": round(os.getloadavg()[0], 2)}
            order = [("current", REPO)] + ([("baseline", base)] if base else [])
            if len(parts) % 2:
                order.reverse()
            for name, tree in order:
                whole[name] = run_raftlab(parts, tree, args.impl, extra, caches[name])
            print(f"{' '.join(parts)} in one `raftlab test` (load before {whole['load_before']})")
            for name in ("current", "baseline"):
                if name in whole:
                    print(line(name, whole[name]))
            print("  the command's own process (and the child's exit): " + "; ".join(
                f"{name} {whole[name]['cpu_s'] - whole[name]['test_process_cpu_s']:.2f} s"
                for name in ("current", "baseline")
                if "test_process_cpu_s" in whole.get(name, {})))
            failed |= whole["current"]["exit"] != 0
    finally:
        if base:
            remove_worktree(base)
        shutil.rmtree(cache_root, ignore_errors=True)
    totals = {name: round(sum(r[name]["cpu_s"] for r in results.values() if name in r), 2)
              for name in ("current", "baseline", "go")}
    go_total = totals["go"] if binary else round(sum(GO[p][1] for p in parts), 2)
    print(f"all parts CPU: current {totals['current']} s"
          + (f", baseline {totals['baseline']} s" if base else "")
          + f", Go {go_total} s" + (f" (whole lab target <= {TARGET['lab_cpu_s']:.0f} s)"
                                      if len(parts) == len(PARTS) else ""))
    if args.whole:
        print(f"in one `raftlab test`: current {whole['current']['cpu_s']} s"
              + (f", baseline {whole['baseline']['cpu_s']} s" if base else "")
              + (f" (whole lab target <= {TARGET['lab_cpu_s']:.0f} s, Go {GO_LAB_CPU_S} s)"
                 if len(parts) == len(PARTS) else ""))
    if args.json:
        args.json.write_text(json.dumps({
            "parts": results, "cpu_total_s": totals,
            "whole_lab": whole if args.whole else None, "go_reference": {
                p: dict(zip(("real_s", "cpu_s", "rss_mb"), GO[p], strict=True)) for p in PARTS},
            "go_measured": binary is not None, "baseline": args.baseline, "targets": TARGET,
            "bytecode": bytecode,
            "cores": os.cpu_count(), "time": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
