"""``benchmarks/phase_plugin.py`` records what a pytest process has used at each phase.

Why: issue 19's per-part CPU target (2A <= 0.33 s) is about as large as the fixed
cost of a pytest process, so the benchmarks report that cost (CPU and memory when
collection is done) apart from the tests'.  These tests check the plugin's rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_every_phase_is_recorded_in_order_with_cpu_and_memory(tmp_path: Path) -> None:
    (tmp_path / "test_two.py").write_text("def test_one():\n    pass\n\n\n"
                                          "def test_two():\n    pass\n")
    out_json = tmp_path / "phases.json"
    env = dict(os.environ, PYTHONPATH=str(BENCH), RAFTLAB_PHASES_JSON=str(out_json))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "phase_plugin", "test_two.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads(out_json.read_text())
    assert [r["phase"] for r in rows] == [
        "plugins", "configured", "collected",
        "test_one setup", "test_one call", "test_one teardown",
        "test_two setup", "test_two call", "test_two teardown", "finished", "unconfigured"]
    cpu = [r["cpu_s"] for r in rows]
    assert cpu == sorted(cpu) and cpu[0] > 0
    assert all(0 < r["rss_mb"] <= r["hwm_mb"] for r in rows)
    hwm = [r["hwm_mb"] for r in rows]
    assert hwm == sorted(hwm)  # a peak never goes down
    assert "phase" in done.stdout and "collected" in done.stdout  # the printed table
