"""The local stress backend's forked workers (tools/stress/backends/forked.py).

Same results as the xdist workers (each planned run exactly once, same outcomes,
same seeds, worker ids ``gw<k>``), for far less CPU at start; a worker that dies
part-way fails the run it was in and a new worker runs the rest; a worker cannot
outlive its session and still record results.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

from tests.test_stress import NO_HARNESS, results_of, run_stress
from tools.stress.backends.base import RunOptions
from tools.stress.backends.factory import make_backend

SUITE = '''
import os
from pathlib import Path

def test_passes(seed):
    pass

def test_flaky(seed):
    assert seed % 3 != 0, f"seed {seed} is a failing one"

def test_worker_dies_once():
    marker = Path(os.environ["RAFTLAB_TEST_MARKER"])
    if not marker.exists():
        marker.touch()
        os._exit(3)  # the forked worker itself dies, mid-run, with no report
'''

def test_local_backend_forks_by_default_and_xdist_on_request(monkeypatch):
    monkeypatch.delenv("RAFTLAB_STRESS_XDIST", raising=False)
    cmd = make_backend("local", RunOptions(), workers=5).command(Path("j.json"), ["t.py"])
    assert "--stress-forks=5" in cmd and "-n" not in cmd
    monkeypatch.setenv("RAFTLAB_STRESS_XDIST", "1")
    cmd = make_backend("local", RunOptions(), workers=5).command(Path("j.json"), ["t.py"])
    assert cmd[cmd.index("-n") + 1] == "5" and not any("stress-forks" in a for a in cmd)


def test_forked_and_xdist_workers_give_the_same_results(tmp_path, monkeypatch):
    root = tmp_path / "s"
    root.mkdir()
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "test_g.py").write_text(
        "import random\n"
        "def test_passes():\n    pass\n"
        "def test_flaky():\n    assert random.random() < 2\n")
    outs = {}
    for mode in ("0", "1"):
        monkeypatch.setenv("RAFTLAB_STRESS_XDIST", mode)
        out = tmp_path / f"out{mode}"
        rc, text = run_stress(["test_g.py", "-n", "5", "-p", "4", "--seed", "7", "-o", str(out),
                               "--no-live", *NO_HARNESS], cwd=root)
        assert rc == 0, text
        outs[mode] = out / "results.jsonl"
    forked, xdist = results_of(outs["0"]), results_of(outs["1"])
    assert sorted(r["job"] for r in forked) == list(range(10))  # each planned run once
    assert {(r["job"], r["test"], r["seed"], r["outcome"]) for r in forked} == \
        {(r["job"], r["test"], r["seed"], r["outcome"]) for r in xdist}
    assert {r["worker"] for r in forked} == {"gw0", "gw1", "gw2", "gw3"}
    assert set(forked[0]) == set(xdist[0])  # the same fields in every result line


def test_a_worker_that_dies_fails_the_run_it_was_in_and_a_new_worker_runs_the_rest(
        tmp_path, monkeypatch):
    """A forked worker that ends in the middle of a run: that run fails, naming how its
    process ended (as under xdist, and as ``raftlab test`` says it), and a new worker
    takes the runs it had not started.  Before, the whole session was restarted and the
    run that had killed its process was run again and passed: a Raft that ended its
    process one run in ten read as passing."""
    root = tmp_path / "s"
    root.mkdir()
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "test_d.py").write_text(SUITE.replace("(seed)", "()").replace(
        "    assert seed % 3 != 0, f\"seed {seed} is a failing one\"\n", "    pass\n"))
    monkeypatch.setenv("RAFTLAB_TEST_MARKER", str(tmp_path / "died"))
    monkeypatch.delenv("RAFTLAB_STRESS_XDIST", raising=False)
    out = tmp_path / "o"
    rc, text = run_stress(["test_d.py", "-n", "4", "-p", "3", "--seed", "3", "-o", str(out),
                           "--no-live", *NO_HARNESS], cwd=root)
    assert (tmp_path / "died").exists()
    assert rc == 1, text
    rows = results_of(out / "results.jsonl")
    assert sorted(r["job"] for r in rows) == list(range(12))  # every run exactly once
    failed = [r for r in rows if r["outcome"] != "passed"]
    assert len(failed) == 1 and failed[0]["test"].endswith("test_worker_dies_once"), failed
    assert re.fullmatch(r"the run's process \(forked worker gw[012]\) ended with exit status "
                        r"3 while this run was running", failed[0]["message"]), failed
    assert "restarted it for the" not in text  # pytest itself did not die


def test_forked_workers_cost_less_cpu_to_start_than_xdist(tmp_path, monkeypatch):
    """12 workers, one trivial run each: the forked session's CPU is a fraction of xdist's."""
    root = tmp_path / "s"
    root.mkdir()
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "test_t.py").write_text("def test_t():\n    pass\n")
    cpu = {}
    for mode in ("0", "1"):
        env = dict(os.environ, RAFTLAB_STRESS_XDIST=mode)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run(
            [sys.executable, "-m", "tools.stress", "test_t.py", "-n", "12", "-p", "12",
             "--seed", "1", "--no-live", "-o", str(tmp_path / f"o{mode}"), *NO_HARNESS],
            cwd=root, env=env, capture_output=True, text=True, timeout=300,
            check=False)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        cpu[mode] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        rows = [json.loads(x) for x in (tmp_path / f"o{mode}" / "results.jsonl").read_text()
                .splitlines() if x.strip()]
        assert len(rows) == 12 and all(r["outcome"] == "passed" for r in rows)
    assert cpu["0"] < 0.6 * cpu["1"], cpu
