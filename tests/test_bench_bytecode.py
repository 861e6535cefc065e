"""The per-process benchmarks measure every tree with its bytecode compiled, and say so.

Written in session 8: with ``PYTHONDONTWRITEBYTECODE=1`` (set on the lab machine)
``benchmarks/raft_parts_bench.py`` let the checkout use whatever ``__pycache__`` it
had while a fresh baseline worktree compiled (and pytest assertion-rewrote) every
module in every process, about 0.2 s of CPU per part charged to one side.  Now each
tree's children keep their bytecode in a cache of their own, filled by a warm-up
(``benchmarks/benchcommon.py``), and the JSON states the mode and what each run
found.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
sys.path.insert(0, str(BENCH))

from benchcommon import BYTECODE_MODE, bytecode_env  # noqa: E402


def _env(cache: Path) -> dict[str, str]:
    base = dict(os.environ, PYTHONDONTWRITEBYTECODE="1",
                PYTHONPATH=os.pathsep.join([str(REPO), str(BENCH)]))
    return bytecode_env(base, cache)


def test_children_write_their_bytecode_into_the_trees_own_cache(tmp_path: Path) -> None:
    env = _env(tmp_path / "cache")
    assert "PYTHONDONTWRITEBYTECODE" not in env
    out = subprocess.run([sys.executable, "-c", "import sys; print(sys.dont_write_bytecode, "
                          "sys.pycache_prefix)"], env=env, capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.split() == ["False", str(tmp_path / "cache")]


def test_the_parts_bench_json_states_its_bytecode_mode_and_what_each_run_found(
        tmp_path: Path) -> None:
    out_json = tmp_path / "parts.json"
    done = subprocess.run([sys.executable, str(BENCH / "raft_parts_bench.py"), "2A", "--json",
                           str(out_json), "--", "--sim"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"bytecode: {BYTECODE_MODE}" in done.stdout
    data = json.loads(out_json.read_text())
    assert data["bytecode"]["mode"] == "cached"
    assert data["bytecode"]["description"] == BYTECODE_MODE
    warm = data["bytecode"]["warm_up_pycs"]["current"]
    # compileall wrote the plain bytecode, the collection pytest's rewritten one too.
    assert 0 < warm["after_compileall"] < warm["after_warm_up"]
    run = data["parts"]["2A"]["current"]
    assert run["exit"] == 0
    found = run["bytecode"]
    assert found["dont_write_bytecode"] is False
    assert found["pycache_prefix"] and Path(found["pycache_prefix"]).name == "current"
    # What pytest rewrote is on record (the count depends on how raftlab is installed).
    assert isinstance(found["rewrite_marks"], list)
    assert 0 <= found["rewritten_modules"] <= found["lab_modules"]
    assert found["lab_modules"] > 0
    # After the warm-up, the measured run compiled nothing: it is a second run.
    assert run["pycs_written"] == 0
    # The fixed cost: what the process had used when collection was done.
    assert 0 < run["before_tests_cpu_s"] <= run["cpu_s"]
    assert 0 < run["before_tests_rss_mb"] <= run["rss_mb"]
    assert "before the first test: current" in done.stdout


def test_the_whole_lab_run_is_measured_as_one_raftlab_test_and_compiles_nothing(
        tmp_path: Path) -> None:
    """``--whole``: the parts in one ``raftlab test`` (the README's main job), warmed up too."""
    out_json = tmp_path / "parts.json"
    done = subprocess.run([sys.executable, str(BENCH / "raft_parts_bench.py"), "2A", "--whole",
                           "--json", str(out_json), "--", "--sim"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2A in one `raftlab test`" in done.stdout
    whole = json.loads(out_json.read_text())["whole_lab"]["current"]
    assert whole["exit"] == 0
    assert whole["result"].startswith("3 passed, 0 failed"), whole["result"]
    # The command's own modules were compiled by the warm-up: a second run, as the parts.
    assert whole["pycs_written"] == 0
    # The figures are the whole tree's: the raftlab process waited for its pytest child,
    # whose collection alone takes more than the command's own start-up.
    assert whole["cpu_s"] > whole["before_tests_cpu_s"] > 0
    # The command's own share: the tree's CPU less the pytest child's at its end.
    assert 0 < whole["cpu_s"] - whole["test_process_cpu_s"] < whole["cpu_s"]
    assert "the command's own process (and the child's exit): current" in done.stdout
