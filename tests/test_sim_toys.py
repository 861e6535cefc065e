"""Simulation mode catches deadlocks at once, with a report, and replays them exactly."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time

import pytest

pytest.importorskip("greenlet")

from labtests import test_2a, test_2b  # noqa: E402
from labtests.driver import run_graded  # noqa: E402
from labtests.sim import SimDeadlock, SimTimeLimit  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEADLOCK_TOY = os.path.join(HERE, "toys_sim", "deadlock_raft.py")
HANGS_TOY = os.path.join(HERE, "toys", "hangs.py")
NO_STEP_DOWN_TOY = os.path.join(HERE, "toys_sim", "no_step_down.py")
CTRL_C_TOY = os.path.join(HERE, "toys_sim", "ctrl_c_in_a_raft_thread.py")


def _deadlock_report(toy: str, seed: int) -> str:
    with pytest.raises(SimDeadlock) as info:
        run_graded(test_2a.test_initial_election_2a, seed, toy)
    return info.value.report


def test_lock_order_deadlock_is_reported_with_both_threads_and_replays_exactly():
    wall0 = time.perf_counter()
    report, again = (_deadlock_report(DEADLOCK_TOY, 5) for _ in range(2))
    assert time.perf_counter() - wall0 < 10.0
    headline = report.splitlines()[0]
    assert headline.startswith("deadlock: threads 'toy-S")
    assert "-ticker' -> 'labrpc-worker-" in headline
    assert "each wait for a lock the next one holds" in headline
    assert "waits for Lock created at" in report and "deadlock_raft.py:43" in report
    assert "with self.vote_mu:" in report and "with self.mu:" in report  # both sides' frames
    assert again == report  # same seed, same report


def test_forgotten_unlock_is_reported_as_a_self_deadlock():
    report = _deadlock_report(HANGS_TOY, 3)
    assert "thread 'MainThread': waits for Lock created at" in report
    assert "held by this same thread (it never releases it)" in report
    assert "in get_state" in report


def test_pytest_sim_option_fails_the_toy_as_a_deadlock_with_a_replay_command():
    cmd = [
        sys.executable, "-m", "pytest", "--pyargs", "labtests", "-p", "labtests.sim.pytest_plugin",
        "--sim", "-k", "test_initial_election_2a", "--raft-impl", DEADLOCK_TOY, "--seed", "5",
        "-q", "-p", "no:randomly",
    ]

    def run(command: list[str], hashseed: str) -> str:
        env = dict(os.environ, PYTHONHASHSEED=hashseed)
        env.pop("RAFTLAB_SIM", None)
        proc = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env,
                              cwd=os.path.dirname(HERE))
        assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout

    out = run(cmd, "1")
    assert "SimDeadlock: deadlock: threads 'toy-S" in out
    hint = f"pytest --pyargs labtests -k test_initial_election_2a --seed 5 " \
        f"--raft-impl {DEADLOCK_TOY} --sim"
    assert hint in out
    # The printed command replays the run exactly, in another process with another hash seed.
    again = run([sys.executable, "-m", *shlex.split(hint), "-q", "-p", "no:randomly"], "2")
    report = [line for line in out.splitlines() if line.startswith("E ")]
    assert len(report) > 10
    assert report == [line for line in again.splitlines() if line.startswith("E ")]


def test_a_ctrl_c_in_a_raft_thread_stops_the_run_and_fails_no_test():
    """The simulated threads share the test's OS thread, so a Ctrl-C's handler runs in
    whichever of them runs.  In a Raft's thread its KeyboardInterrupt used to end that
    thread: the test failed with "uncaught exception in thread ...: KeyboardInterrupt()"
    and the run went on (exit 1).  Now it stops the run, as in real time."""
    cmd = [sys.executable, "-m", "pytest", "--pyargs", "labtests", "--sim", "-m", "part2a",
           "--raft-impl", CTRL_C_TOY, "--seed", "5", "-q", "-p", "no:randomly",
           "-p", "no:cacheprovider"]
    env = dict(os.environ)
    env.pop("RAFTLAB_SIM", None)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env,
                          cwd=os.path.dirname(HERE))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]  # pytest's status for an interrupted session
    assert "!! KeyboardInterrupt !!" in out, out[-3000:]
    assert "uncaught exception" not in out and "failed" not in out, out[-3000:]
    assert "test_many_elections_2a" not in out, out[-3000:]  # nothing ran after the stop


# A deposed leader that does not step down on a higher-term reply keeps exchanging
# zero-delay RPCs with its followers until the new leader's heartbeat reaches it.
# In real time the whole graded suite passes for it (checked by hand: `pytest --pyargs
# labtests -n 2 --raft-impl tests/toys_sim/no_step_down.py`, 28 passed in 172 s), so
# simulated time must pass it too, in bounded wall time.


def test_deposed_leader_that_keeps_sending_passes_the_whole_suite_in_sim_as_in_real_time():
    cmd = [sys.executable, "-m", "pytest", "--pyargs", "labtests", "--sim", "--raft-impl",
           NO_STEP_DOWN_TOY, "--seed", "7", "--raft-timeout", "60", "-q", "-p", "no:randomly"]
    env = dict(os.environ)
    env.pop("RAFTLAB_SIM", None)
    wall0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env,
                          cwd=os.path.dirname(HERE))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "28 passed" in proc.stdout
    assert time.perf_counter() - wall0 < 120.0


def test_deposed_leader_exchange_is_reproducible_and_needs_the_step_cost():
    runs = [run_graded(test_2b.test_rejoin_2b, 3, NO_STEP_DOWN_TOY) for _ in range(2)]
    assert runs[0].figures == runs[1].figures and runs[0].virtual_s == runs[1].virtual_s
    reference = run_graded(test_2b.test_rejoin_2b, 3)
    assert runs[0].figures["rpcs"] > 2 * reference.figures["rpcs"]  # it did exchange busily
    # The same exchange without the charge freezes the clock: only the CPU limit ends it.
    wall0 = time.perf_counter()
    with pytest.raises(SimTimeLimit, match="CPU-time limit of 3 s exceeded: the simulated run"):
        run_graded(test_2b.test_rejoin_2b, 3, NO_STEP_DOWN_TOY, step_cost=0.0, cpu_limit=3.0,
                   wall_limit=600)
    assert time.perf_counter() - wall0 < 30.0
