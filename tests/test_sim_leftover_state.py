"""A simulated run is the same run whatever ran before it in the process.

Seen once: after a simulated run whose main thread deadlocked (tests/toys/hangs.py),
the next simulated run in the same process took one scheduler switch fewer than
the same run alone.  The cause: the deadlocked run's timeline sampler was left
blocked in the Raft and *abandoned* (:func:`labtests.watchdog.abandon`), which
remembered it by thread ident; simulated threads are numbered from the same
value in every run, so a thread of the next run carried that ident and was left
out of its test's leak check -- the cleanup did not wait for it.  Abandoned
threads are now remembered by Thread object.

Each case runs in a fresh process (the reference for "alone" must be untouched)
and compares switch count, virtual time and the whole debug log, byte for byte.
The normal run is tests/toys/slow_to_end.py, whose threads end only a while
after kill(), so that which threads the cleanup waits for shows in the count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("greenlet")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SLOW_TO_END = os.path.join(HERE, "toys", "slow_to_end.py")
HANGS = os.path.join(HERE, "toys", "hangs.py")
KILL_BLOCKS = os.path.join(HERE, "toys", "kill_blocks.py")
NO_STEP_DOWN = os.path.join(HERE, "toys_sim", "no_step_down.py")

# Runs ``before`` (a failing simulated run, or nothing), then the normal run, with the
# debug log on; prints what the normal run did as JSON on the last line.
SCRIPT = r"""
import json, logging, sys
from labtests import test_2a, test_2b
from labtests.driver import run_graded
from raft import debuglog

lines = []
class Keep(logging.Handler):
    def emit(self, record):
        lines.append(record.getMessage())
debuglog.enable(True)
debuglog.logger.handlers[:] = [Keep()]
before, toy, hangs, kill_blocks, no_step_down = sys.argv[1:6]
failed = None
try:
    if before == "deadlock":
        run_graded(test_2a.test_initial_election_2a, 3, hangs)
    elif before == "cpu-watchdog":  # a livelock the simulation's CPU-time watchdog ends
        run_graded(test_2b.test_rejoin_2b, 3, no_step_down, step_cost=0.0, cpu_limit=1.0,
                   wall_limit=600)
    elif before == "cleanup-watchdog":  # a kill() that blocks: the cleanup's bound ends it
        run_graded(test_2a.test_initial_election_2a, 3, kill_blocks)
except AssertionError as exc:
    failed = type(exc).__name__ + ": " + str(exc).splitlines()[0]
lines.clear()
run = run_graded(test_2a.test_initial_election_2a, 3, toy)
print(json.dumps({"failed": failed, "switches": run.switches, "virtual": run.virtual_s,
                  "log": lines}))
"""


def _normal_run_after(before: str) -> dict:
    env = dict(os.environ)
    env.pop("RAFTLAB_SIM", None)
    env.pop("RAFTLAB_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, before, SLOW_TO_END, HANGS, KILL_BLOCKS, NO_STEP_DOWN],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def alone() -> dict:
    run = _normal_run_after("nothing")
    assert run["failed"] is None
    assert any("replicator ended" in line for line in run["log"])  # the toy's threads linger
    return run


@pytest.mark.parametrize("before, verdict", [
    ("deadlock", "SimDeadlock: deadlock"),
    ("cpu-watchdog", "SimTimeLimit: CPU-time limit of 1 s exceeded"),
    ("cleanup-watchdog", "RaftTestFailure: cleanup did not end within 10 s"),
])
def test_a_failed_simulated_run_leaves_nothing_that_changes_the_next(
        alone: dict, before: str, verdict: str):
    after = _normal_run_after(before)
    assert after["failed"] is not None and after["failed"].startswith(verdict), after["failed"]
    assert after["switches"] == alone["switches"]
    assert after["virtual"] == alone["virtual"]
    assert after["log"] == alone["log"]  # byte for byte, line for line


def _unnamed_thread_names() -> list[str]:
    import threading

    threads = [threading.Thread(target=lambda: None) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [t.name for t in threads]


def test_unnamed_threads_are_numbered_from_1_in_every_simulation_and_the_real_count_goes_on():
    """``Thread-N`` comes from a process-wide counter: a deadlock report naming
    'Thread-57 (ticker)' in a suite would read 'Thread-3 (ticker)' in its replay alone."""
    import threading

    from labtests.sim import run_in_simulation

    first = run_in_simulation(_unnamed_thread_names, 1)
    real = threading.Thread(target=lambda: None).name  # a real thread between two runs
    again = run_in_simulation(_unnamed_thread_names, 1)
    assert first == again == ["Thread-1 (<lambda>)", "Thread-2 (<lambda>)"]
    after = threading.Thread(target=lambda: None).name
    assert int(after.split("-")[1].split()[0]) == int(real.split("-")[1].split()[0]) + 1


# -- the same through pytest --sim, after a test the per-test watchdog ended ----------------

SPINS_IN_ONE_TEST = os.path.join(HERE, "toys", "spins_in_one_test.py")
RECORDER = '''
import json, os
import pytest
from labtests.sim import pytest_plugin as sim_plugin

@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    try:
        return (yield)
    finally:
        sched = item.stash.get(sim_plugin._SCHED, None)
        if sched is not None:
            with open(os.environ["RAFTLAB_SWITCH_FILE"], "a") as f:
                f.write(json.dumps([item.name, sched.switches, sched.now]) + "\\n")
'''


def _pytest_sim(tmp_path, selection: str) -> tuple[dict, list[str], str]:
    """Run ``selection`` of the graded tests with the spinning toy in one pytest --sim
    process; (test -> [switches, virtual s], test_re_election_2a's debug log, stdout)."""
    (tmp_path / "switch_recorder.py").write_text(RECORDER)
    record = tmp_path / f"switches-{len(selection)}.jsonl"
    env = dict(os.environ, RAFTLAB_SWITCH_FILE=str(record), PYTHONPATH=os.pathsep.join(
        [str(tmp_path), ROOT, *filter(None, [os.environ.get("PYTHONPATH")])]),
        RAFTLAB_TOY_SPIN_TEST="test_initial_election_2a")
    for name in ("RAFTLAB_SIM", "RAFTLAB_DEBUG"):
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--pyargs", "labtests", "--sim", "-p", "switch_recorder",
         "-k", selection, "--raft-impl", SPINS_IN_ONE_TEST, "--seed", "4", "--raft-timeout",
         "5", "-q", "-s", "--raft-debug", "-p", "no:randomly", "-p", "no:cacheprovider"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    got = {name: [switches, now] for name, switches, now in
           (json.loads(line) for line in record.read_text().splitlines())}
    log = proc.stderr.split("=== test_re_election_2a", 1)[-1].splitlines()
    return got, [x for x in log if x[:6].isdigit()], proc.stdout


def test_a_test_the_watchdog_ended_leaves_nothing_that_changes_the_next(tmp_path):
    after, after_log, out = _pytest_sim(tmp_path, "test_initial_election_2a or test_re_election_2a")
    assert "1 failed, 1 passed" in out, out[-3000:]
    assert "SimTimeLimit: CPU-time limit of 4 s exceeded" in out  # the alarm, judged
    alone, alone_log, out = _pytest_sim(tmp_path, "test_re_election_2a")
    assert "1 passed" in out, out[-3000:]
    assert after["test_re_election_2a"] == alone["test_re_election_2a"]
    assert len(alone_log) > 20 and after_log == alone_log
