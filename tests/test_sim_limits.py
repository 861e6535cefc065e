"""Simulated runs are judged on their work (CPU time), never on how loaded the machine is.

The budget (``cpu_limit``) stops a livelock and a run blocked in real calls the
simulation does not see, at the same point on an idle or a loaded machine; the
wall clock is only a backstop whose verdict is "inconclusive (machine
overloaded)".  One test here starves a run for real (a CPU hog pinned to the
run's CPU, the run at a lower priority), the others fake the measure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("greenlet")

from labtests.sim import SimOverloaded, SimTimeLimit, run_in_simulation, runqueue  # noqa: E402

HERE = Path(__file__).parent
TOYS = HERE / "toys_sim"
REAL_SLEEPER = TOYS / "real_sleeper.py"
_real_sleep = time.sleep  # bound before any simulation: real time inside one
_real_monotonic = time.monotonic
_real_thread_time = time.thread_time
LINUX_RUNQUEUE = runqueue.run_delay_s() is not None


def _spin_without_time() -> None:
    """A livelock that, with no step cost, keeps the virtual clock still."""
    while True:
        time.sleep(0)


def _blocks_in_real_time() -> None:
    """Sleeps in real time (invisible to the simulation), then yields, forever."""
    while True:
        _real_sleep(0.02)
        time.sleep(0.001)


def test_a_livelock_that_freezes_virtual_time_fails_on_its_cpu_budget():
    wall0 = _real_monotonic()
    with pytest.raises(SimTimeLimit, match=r"CPU-time limit of 1 s exceeded: the simulated "
                       r"run used 1\.\d s of CPU and reached only 0\.0 s of virtual") as info:
        run_in_simulation(_spin_without_time, 1, step_cost=0.0, cpu_limit=1.0, wall_limit=600)
    assert not isinstance(info.value, SimOverloaded)  # a failure of the code, not the machine
    assert _real_monotonic() - wall0 < 30.0
    assert "thread 'MainThread'" in info.value.report


@pytest.mark.skipif(not LINUX_RUNQUEUE, reason="needs /proc/thread-self/schedstat")
def test_a_run_blocked_in_real_calls_fails_on_the_same_budget():
    wall0 = _real_monotonic()
    with pytest.raises(SimTimeLimit, match=r"CPU-time limit of 0\.5 s exceeded by time "
                       r"blocked outside the simulation: \d+\.\d s in real calls") as info:
        run_in_simulation(_blocks_in_real_time, 2, cpu_limit=0.5, wall_limit=600)
    assert not isinstance(info.value, SimOverloaded)
    assert _real_monotonic() - wall0 < 30.0


def test_the_wall_backstop_is_inconclusive_when_the_run_waited_for_a_cpu(monkeypatch):
    monkeypatch.setattr(runqueue, "run_delay_s", lambda: _real_monotonic() - _real_thread_time())
    with pytest.raises(SimOverloaded, match=r"wall-clock backstop of 1 s exceeded before the "
                       r"CPU-time limit: the simulated run got 0\.\d s of CPU in \d s") as info:
        run_in_simulation(_blocks_in_real_time, 3, cpu_limit=0.5, wall_limit=1.0)
    assert info.value.detail.startswith("the simulated run got 0.")
    assert info.value.detail.endswith(" s of wall time")


def test_without_a_run_queue_measure_the_run_is_not_blamed_for_its_wall_time(monkeypatch):
    monkeypatch.setattr(runqueue, "run_delay_s", lambda: None)  # not Linux: unknown
    with pytest.raises(SimOverloaded):
        run_in_simulation(_blocks_in_real_time, 4, cpu_limit=0.5, wall_limit=1.0)


def test_a_cleanup_is_not_escalated_by_the_wall_clock_alone(monkeypatch):
    """After a failure the cleanup gets 10 s of virtual or CPU time; real time the
    process spends off the CPU (a loaded machine) does not count against it."""
    monkeypatch.setattr(runqueue, "run_delay_s", lambda: _real_monotonic() - _real_thread_time())

    def body() -> str:
        try:
            time.sleep(100)  # the virtual time limit fails the run here
        except SimTimeLimit:
            for _ in range(60):  # a 1.2 s real (off-CPU) cleanup, in 0.6 virtual s
                _real_sleep(0.02)
                time.sleep(0.01)
            return "cleaned up"
        return "not stopped"

    with pytest.raises(SimTimeLimit, match="virtual time limit of 50 s exceeded") as info:
        run_in_simulation(body, 5, time_limit=50, cpu_limit=5.0, wall_limit=60)
    assert "did not end within" not in str(info.value)


# -- a run starved for real -------------------------------------------------------------------

_STARVED_CHILD = textwrap.dedent("""
    import json, sys, time
    from labtests import test_2b
    from labtests.driver import run_graded
    from labtests.sim import SimOverloaded, runqueue

    def one(**limits):
        cpu0, wall0, delay0 = time.thread_time(), time.monotonic(), runqueue.run_delay_s()
        try:
            run_graded(test_2b.test_backup_2b, 3, None, **limits)
            verdict = "passed"
        except SimOverloaded as exc:
            verdict = "overloaded: " + str(exc).splitlines()[0]
        except AssertionError as exc:
            verdict = "failed: " + str(exc).splitlines()[0]
        return {"verdict": verdict, "cpu": time.thread_time() - cpu0,
                "wall": time.monotonic() - wall0, "waited": runqueue.run_delay_s() - delay0}

    one(cpu_limit=30, wall_limit=600)  # warm up (imports, caches) before the starving starts
    print("READY", flush=True)
    sys.stdin.readline()
    print(json.dumps([one(cpu_limit=CPU_LIMIT, wall_limit=600),
                      one(cpu_limit=CPU_LIMIT, wall_limit=BACKSTOP)]), flush=True)
""")


@pytest.mark.skipif(not (LINUX_RUNQUEUE and hasattr(os, "sched_setaffinity")),
                    reason="needs Linux (CPU affinity and /proc/thread-self/schedstat)")
def test_a_run_starved_by_a_real_cpu_hog_passes_on_its_budget_and_is_never_failed():
    """The run (at nice 10) shares one CPU with a busy loop (nice 0): it gets about a
    tenth of the CPU.  backup_2b needs about 0.2 s of CPU; its budget is 0.8 s.  Its
    wall time passes the budget (so a wall-clock limit of that size would fail it),
    yet it passes; with a 1 s backstop it is inconclusive, never failed."""
    cpu = max(os.sched_getaffinity(0))
    cpu_limit, backstop = 0.8, 1.0
    script = _STARVED_CHILD.replace("CPU_LIMIT", str(cpu_limit))
    script = script.replace("BACKSTOP", str(backstop))

    def pinned(niceness: int):
        def setup() -> None:
            os.sched_setaffinity(0, {cpu})
            os.nice(niceness)
        return setup

    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, preexec_fn=pinned(10))
    hog = None
    try:
        assert child.stdout is not None and child.stdin is not None
        for line in child.stdout:  # the lab's lines of the warm-up run, then READY
            if line.strip() == "READY":
                break
        else:
            pytest.fail("the child ended before it was ready")
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=pinned(0))
        _real_sleep(0.3)  # the hog is running
        child.stdin.write("go\n")
        child.stdin.flush()
        timer = threading.Timer(240, child.kill)
        timer.start()
        out = child.stdout.read()
        timer.cancel()
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
        child.kill()
        child.wait()
    budget_run, backstop_run = json.loads(out.strip().splitlines()[-1])
    assert budget_run["wall"] > cpu_limit, f"the hog did not starve the run: {budget_run}"
    assert budget_run["waited"] > budget_run["wall"] / 2, budget_run  # measured as a wait
    assert budget_run["verdict"] == "passed", budget_run
    assert backstop_run["verdict"].startswith(
        f"overloaded: wall-clock backstop of {backstop:g} s exceeded before the CPU-time "
        "limit"), backstop_run


# -- through pytest: the verdict lines and the exit status -----------------------------------

def _pytest_sim(*extra: str, plugin: bool = False, impl: Path = REAL_SLEEPER,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(env or {})}
    env.pop("RAFTLAB_SIM", None)
    cmd = [sys.executable, "-m", "pytest", "--pyargs", "labtests", "-p",
           "labtests.sim.pytest_plugin", "--sim", "-k", "test_initial_election_2a",
           "--raft-impl", str(impl), "--seed", "1", "-q", "-p", "no:randomly", *extra]
    if plugin:
        env["PYTHONPATH"] = os.pathsep.join([str(TOYS), env.get("PYTHONPATH", "")])
        cmd += ["-p", "fake_runqueue"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env,
                          cwd=HERE.parent)


@pytest.mark.skipif(not LINUX_RUNQUEUE, reason="needs /proc/thread-self/schedstat")
def test_pytest_fails_a_raft_blocked_in_real_calls_with_the_budget_message():
    proc = _pytest_sim("--sim-cpu-limit", "0.2")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert ("... FAILED -- CPU-time limit of 0.2 s exceeded by time blocked outside the "
            "simulation") in out
    assert "inconclusive" not in out.lower()


def test_pytest_reports_a_starved_run_as_inconclusive_with_exit_status_6():
    proc = _pytest_sim("--sim-cpu-limit", "0.2", "--sim-wall-limit", "0.3", plugin=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 6, out
    assert "... inconclusive (machine overloaded: the simulated run got 0." in out
    assert "-- wall-clock backstop of 0.3 s exceeded before the CPU-time limit" in out
    assert "rerun with:" in out and "--sim" in out


def test_pytest_timeouts_alarm_does_not_fail_a_starved_run_within_its_budget():
    """The alarm (--raft-timeout 0.5, and an explicit --timeout as `raftlab stress` passes)
    fires every 0.5 s of wall time during this starved run (about 3 s of wall time,
    little CPU); each time the run is within its budget, so it goes on, and passes."""
    for watchdog in (["--raft-timeout", "0.5"], ["--timeout", "0.5"]):
        proc = _pytest_sim(*watchdog, "--sim-cpu-limit", "5", "--sim-wall-limit", "30",
                           plugin=True)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out
        assert "1 passed" in out and "Timeout" not in out


@pytest.mark.parametrize("toy, env, reason", [
    (TOYS / "spins_unseen.py", {}, "CPU-time limit of 1.6 s exceeded: the simulated run used"),
    (REAL_SLEEPER, {"TOY_BLOCK_S": "1000"},
     "CPU-time limit of 1.6 s exceeded by time blocked outside the simulation"),
])
def test_pytest_timeouts_alarm_stops_a_run_out_of_the_schedulers_reach_with_its_verdict(
        toy, env, reason):
    """A loop that polls nothing the simulation sees, or a real call that blocks for good,
    never returns to the scheduler: the watchdog's alarm (--raft-timeout 2, budget 1.6 s)
    stops it, wherever it hits, with the budget's verdict, not a bare timeout."""
    if env and not LINUX_RUNQUEUE:
        pytest.skip("needs /proc/thread-self/schedstat")
    wall0 = _real_monotonic()
    proc = _pytest_sim("--raft-timeout", "2", impl=toy, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert f"... FAILED -- {reason}" in out
    assert "inconclusive" not in out.lower() and "Timeout (>" not in out
    assert _real_monotonic() - wall0 < 120.0


def test_stress_counts_a_starved_simulated_run_as_inconclusive_and_reruns_it(tmp_path,
                                                                              monkeypatch):
    """`raftlab stress --sim` on a machine faked as starving the runs: each run reaches the
    wall-clock backstop with little CPU, and is counted inconclusive and rerun, not failed."""
    from labtests.overload import EXIT_INCONCLUSIVE
    from tests.test_stress import run_stress
    from tools.stress.results import results_of

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(TOYS), *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.delenv("RAFTLAB_SIM", raising=False)
    out = tmp_path / "o"
    rc, text = run_stress(["labtests/test_2a.py::test_initial_election_2a", "-n", "1", "-p", "1",
                           "--sim", "--retries", "1", "--impl", str(REAL_SLEEPER), "-o", str(out),
                           "--no-live", "--", "-p", "fake_runqueue", "--sim-wall-limit", "0.3"],
                          cwd=HERE.parent)
    assert rc == EXIT_INCONCLUSIVE, text
    rows = results_of(out / "results.jsonl")
    assert [(r["outcome"], r["attempt"]) for r in rows] == [
        ("inconclusive", 1), ("inconclusive", 2)], text
    assert rows[0]["message"].startswith(
        "inconclusive (machine overloaded: the simulated run got 0."), rows[0]["message"]
    assert "wall-clock backstop of 0.3 s exceeded" in rows[0]["message"]
