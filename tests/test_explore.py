"""Tests of ``raftlab explore``: schedules, monitors, runs, shrinking, exact replay, the CLI.

Runs are deterministic (simulated time), so the seeds used here give the same
runs on a loaded machine; the budgets are schedule counts, never wall time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("greenlet")

from labtests.explore.generator import generate  # noqa: E402
from labtests.explore.monitors import Monitors  # noqa: E402
from labtests.explore.runner import run_schedule  # noqa: E402
from labtests.explore.schedule import Schedule, ScheduleError, Step  # noqa: E402
from labtests.explore.shrink import Shrinker  # noqa: E402
from labtests.impl_loader import load  # noqa: E402
from tests.mutants.make_mutants import materialize  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def mutant(name: str):
    """The bundled Raft with one bug, rendered now from the reference (tests/mutants)."""
    impl = load(materialize(name))
    assert impl.error is None, impl.error
    return impl


def first_failure(impl, seeds: range):
    for seed in seeds:
        schedule = generate(seed)
        result = run_schedule(schedule, impl)
        if result.violation is not None:
            return seed, schedule, result
    return None


# -- schedules -------------------------------------------------------------------


def test_schedule_round_trips_through_json_and_is_deterministic():
    s = generate(7)
    assert generate(7) == s
    assert generate(8) != s
    again = Schedule.loads(s.dumps())
    assert again == s
    assert "heal everything" in s.describe()


@pytest.mark.parametrize("step, message", [
    (Step(1.0, "explode", {}), "unknown op"),
    (Step(1.0, "crash", {"peer": 3}), "no peer 3"),
    (Step(9.0, "crash", {"peer": 0}), "outside 0..horizon"),
    (Step(1.0, "link", {"src": 0, "dst": 1, "state": "maybe"}), "link state"),
    (Step(1.0, "crash_after", {"peer": 0, "event": "lunch", "delay": 0, "down": 0}), "event"),
])
def test_malformed_schedules_are_refused_by_name(step, message):
    with pytest.raises(ScheduleError, match=message):
        Schedule(n=3, seed=1, steps=(step,), horizon=5.0)


# -- monitors on hand-made observations --------------------------------------------


def test_monitor_election_safety_names_both_leaders():
    m = Monitors(3)
    m.state(0, 1, 4, True, 1.0)
    m.state(1, 1, 4, False, 1.0)
    assert m.violation is None
    m.state(2, 1, 4, True, 2.5)
    assert m.violation.monitor == "election-safety"
    assert "S0 and S2 were both leaders of term 4" in m.violation.message


def test_monitor_state_machine_safety_and_changed_entries():
    m = Monitors(3)
    for cmd in (101, 102, 103):
        m.submitted_cmd(cmd)
    m.applied(0, 1, 101, 1.0)
    m.applied(1, 1, 101, 1.1)
    assert m.violation is None
    m.applied(1, 2, 102, 1.2)
    m.restarted(1, 0, None, 1.5)  # a restarted peer applies from index 1 again
    m.applied(1, 1, 101, 1.6)
    m.applied(1, 2, 103, 1.7)
    assert m.violation.monitor == "state-machine-safety"
    assert "an applied entry changed" in m.violation.message


def test_monitor_apply_order_and_unsubmitted_commands():
    m = Monitors(3)
    m.submitted_cmd(101)
    m.applied(0, 2, 101, 1.0)
    assert m.violation.monitor == "apply-order"
    assert "S0 applied index 2 when 1 was next (a gap)" in m.violation.message
    m = Monitors(3)
    m.applied(0, 1, 999, 1.0)
    assert m.violation.monitor == "log-matching"
    assert "no client submitted" in m.violation.message


def test_monitor_leader_completeness_through_commits():
    m = Monitors(3)
    for cmd in (101, 102, 103):
        m.submitted_cmd(cmd)
    m.started(0, 1, 101, 1, 2, True, 1.0)
    m.applied(1, 1, 101, 1.5)
    m.state(1, 1, 2, False, 1.6)  # the applying peer is in term 2: index 1 committed by term <= 2
    m.started(2, 1, 102, 1, 2, True, 2.0)  # same term as the bound: not checked (same leader term)
    assert m.violation.monitor == "election-safety"  # S0 and S2 both led term 2
    m = Monitors(3)
    for cmd in (101, 102):
        m.submitted_cmd(cmd)
    m.started(0, 1, 101, 1, 2, True, 1.0)
    m.applied(1, 1, 101, 1.5)
    m.state(1, 1, 2, False, 1.6)
    m.started(2, 1, 102, 1, 3, True, 2.0)  # a leader of term 3 whose log is empty
    assert m.violation.monitor == "leader-completeness"
    assert "S2 led term 3 without committed index 1" in m.violation.message


def test_monitor_stale_leader_needs_evidence_and_grace():
    m = Monitors(2)
    m.state(1, 1, 5, False, 1.0)  # S1 is in term 5
    known = m.known_term(1)
    m.reply(0, 1, 1, known, 1, "Raft.append_entries", 1.2, 1.3)  # S0 hears back from S1
    m.state(0, 1, 3, True, 1.5)  # within the grace: fine
    assert m.violation is None
    m.state(0, 1, 3, True, 2.4)
    assert m.violation.monitor == "stale-leader"
    assert m.violation.kind == "liveness"
    # No evidence when S1 restarted between the sample and the reply.
    m = Monitors(2)
    m.state(1, 1, 5, False, 1.0)
    m.reply(0, 1, 1, m.known_term(1), 2, "Raft.append_entries", 1.2, 1.3)
    m.state(0, 1, 3, True, 9.0)
    assert m.violation is None


# -- runs ------------------------------------------------------------------------------


def test_bundled_raft_passes_a_few_hundred_schedules():
    bad = []
    for seed in range(200):
        result = run_schedule(generate(seed), None)
        if result.violation is not None:
            bad.append((seed, result.violation.headline()))
    assert bad == []


@pytest.mark.parametrize("name, monitors", [
    ("stale_replies", {"election-safety", "leader-completeness", "state-machine-safety",
                       "crash"}),
    ("ignore_reply_term", {"stale-leader"}),
    ("no_persist_vote", {"election-safety"}),
    ("vote_no_timer", {"early-election"}),
    # The Figure-8 bug shows as a committed entry applied differently, or as the
    # reference's own assertion that a follower never truncates a committed entry.
    ("commit_old_terms", {"state-machine-safety", "leader-completeness", "crash"}),
])
def test_explore_finds_mutants(name, monitors):
    found = first_failure(mutant(name), range(200))
    assert found is not None, f"no failure for mutant {name} in 200 schedules"
    _seed, _schedule, result = found
    assert result.violation.monitor in monitors, result.violation.headline()


def _stale_leader_returns_deaf(seed: int) -> Schedule:
    """S0 is cut off, the others move on, S0 is heard again only one way, both others restart."""
    steps = [Step(1.0, "clients", {"count": 1}),
             Step(2.0, "partition", {"groups": [[0], [1, 2]]}),
             Step(3.0, "link", {"src": 0, "dst": 1, "state": "deaf"}),
             Step(3.0, "link", {"src": 0, "dst": 2, "state": "deaf"}),
             Step(4.0, "crash", {"peer": 1}), Step(4.0, "crash", {"peer": 2}),
             Step(4.1, "restart", {"peer": 1}), Step(4.1, "restart", {"peer": 2})]
    return Schedule(3, seed, tuple(steps), 20.0)


def test_quorum_liveness_catches_a_timer_reset_by_stale_leaders_and_spares_the_bundled_raft():
    impl = mutant("stale_ae_timer")
    verdicts = [run_schedule(_stale_leader_returns_deaf(seed), impl).violation
                for seed in range(20)]
    found = [v for v in verdicts if v is not None]
    assert found, "the stale-AE timer mutant was never caught on its own scenario"
    assert {v.monitor for v in found} == {"quorum-liveness"}
    assert "elected no leader in 10s" in found[0].message
    for seed in range(20):
        v = run_schedule(_stale_leader_returns_deaf(seed), None).violation
        assert v is None, v.headline()


def test_shrunk_schedule_replays_exactly_in_process_and_from_the_command(tmp_path):
    impl = mutant("stale_replies")
    seed, schedule, result = first_failure(impl, range(200))
    shrinker = Shrinker(lambda s: run_schedule(s, impl), result.violation.monitor, max_runs=80)
    got = shrinker.shrink(schedule, result)
    assert len(got.schedule.steps) <= len(schedule.steps)
    assert got.result.violation.monitor == result.violation.monitor
    one = run_schedule(got.schedule, impl, debug=True)
    two = run_schedule(got.schedule, impl, debug=True)
    assert one.violation == two.violation == got.result.violation
    assert one.log == two.log and len(one.log) > 10
    path = tmp_path / "minimal.json"
    path.write_text(got.schedule.dumps())
    log = tmp_path / "replay.log"
    proc = subprocess.run(
        [sys.executable, "-m", "tools.explore", "--replay", str(path), "--impl",
         materialize("stale_replies"), "--log", str(log)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert proc.returncode == 1, proc.stderr
    assert f"[{result.violation.monitor}]" in proc.stderr
    assert log.read_text().splitlines() == one.log


# -- hostile implementations: a precise verdict, never a hang ------------------------------

HANDLER_RAISES = '''
from raft.reference.raft import Raft as _R, make as _make

class Raft(_R):
    def append_entries(self, args):
        raise RuntimeError("boom")

def make(peers, me, persister, apply_ch):
    return Raft(peers, me, persister, apply_ch)
'''

SPINS = '''
import time

class Raft:
    def __init__(self, peers, me, persister, apply_ch):
        pass
    def get_state(self):
        while True:  # polls the clock forever, never blocking
            time.monotonic()
    def start(self, command):
        return -1, 0, False
    def snapshot(self, index, data):
        pass
    def kill(self):
        pass

def make(peers, me, persister, apply_ch):
    return Raft(peers, me, persister, apply_ch)
'''


def _toy(tmp_path, name, text):
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    return str(path)


def test_a_raising_handler_is_a_crash_verdict(tmp_path):
    result = run_schedule(generate(3), _toy(tmp_path, "explore_raises", HANDLER_RAISES))
    assert result.violation.monitor == "crash"
    assert "append_entries raised RuntimeError('boom')" in result.violation.message


def test_a_deadlocking_raft_is_a_deadlock_verdict():
    impl = os.path.join(HERE, "toys_sim", "deadlock_raft.py")
    found = first_failure(load(impl), range(20))
    assert found is not None
    assert found[2].violation.monitor in ("deadlock", "liveness-leader")


def test_a_raft_that_spins_without_blocking_is_stopped_with_a_verdict(tmp_path):
    # (A loop that neither blocks nor reads the clock cannot be stopped inside the
    # simulation; the command's per-run watchdog handles that case.)
    schedule = Schedule(n=3, seed=1, steps=(), horizon=1.0)
    result = run_schedule(schedule, _toy(tmp_path, "explore_spins", SPINS), wall_limit=10.0)
    assert result.violation is not None
    assert result.violation.monitor == "time-limit"


# -- the command ---------------------------------------------------------------------------


def test_command_explores_shrinks_and_writes_results(tmp_path):
    from tools.explore.command import main

    out = tmp_path / "out"
    code = main(["--impl", materialize("ignore_reply_term"), "-n", "40", "-p", "2",
                 "-o", str(out), "--shrink-runs", "40"])
    assert code == 1
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(lines) == 40
    assert {rec["outcome"] for rec in lines} <= {"pass", "safety", "liveness", "error"}
    failing = {rec["monitor"] for rec in lines if rec["monitor"]}
    assert "stale-leader" in failing
    minimal = Schedule.loads((out / "failures" / "stale-leader.json").read_text())
    assert minimal.steps
    log = (out / "failures" / "stale-leader.log").read_text()
    assert "# replay: raftlab explore --replay" in log
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"] == 40 and summary["minimal"]["stale-leader"]["replay_matches"]


PURE_SPIN = '''
class Raft:
    def __init__(self, peers, me, persister, apply_ch):
        pass
    def get_state(self):
        while True:  # never blocks, never reads the clock: invisible to the simulation
            pass
    def start(self, command):
        return -1, 0, False
    def snapshot(self, index, data):
        pass
    def kill(self):
        pass

def make(peers, me, persister, apply_ch):
    return Raft(peers, me, persister, apply_ch)
'''


def test_command_counts_a_run_that_never_returns_as_hung(tmp_path):
    from tools.explore.command import main

    out = tmp_path / "out"
    code = main(["--impl", _toy(tmp_path, "explore_pure_spin", PURE_SPIN), "-n", "1", "-p", "1",
                 "-o", str(out), "--run-timeout", "5"])
    assert code == 1
    [rec] = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert rec["monitor"] == "hang" and rec["outcome"] == "error"


def test_monitor_ignores_the_term_of_a_refused_start():
    """A follower's start() may return any term (the API leaves it unspecified):
    a skeleton returning (-1, -1, False) must not read as a term going down."""
    m = Monitors(3)
    m.state(0, 1, 0, False, 0.5)
    m.started(0, 1, 101, -1, -1, False, 1.0)
    assert not m.failed
    m.state(0, 1, 2, False, 1.5)
    m.state(0, 1, 1, False, 2.0)
    assert m.failed and m.violation.monitor == "term-monotonicity"


def test_each_mutant_is_the_current_reference_with_its_edit_only(tmp_path):
    """Mutants are rendered from the reference as it is now: every file but the edited
    one(s) is the reference's (imports made relative), the edited one differs, and the
    package is written once per content and loads."""
    from tests.mutants.make_mutants import EXTRA, FILES, IMPORTS, MUTANTS, REFERENCE, render

    for name, (_bug, target, _old, new) in MUTANTS.items():
        files = render(name)
        edited = {target} | ({EXTRA[name][0]} if name in EXTRA else set())
        for fname in FILES:
            with open(os.path.join(REFERENCE, fname), encoding="utf-8") as f:
                ref = f.read()
            for a, b in IMPORTS:
                ref = ref.replace(a, b)
            if fname in edited:
                assert files[fname] != ref and new in files[fname], f"{name}/{fname} not edited"
            else:
                assert files[fname] == ref, f"{name}/{fname} differs from the reference"
        path = materialize(name, str(tmp_path))
        assert materialize(name, str(tmp_path)) == path
        impl = load(path)
        assert impl.error is None, impl.error


def test_a_mutant_whose_anchor_is_gone_fails_loudly(monkeypatch):
    from tests.mutants import make_mutants

    bug, target, _old, new = make_mutants.MUTANTS["vote_no_timer"]
    monkeypatch.setitem(make_mutants.MUTANTS, "vote_no_timer",
                        (bug, target, "text that is not in the reference", new))
    with pytest.raises(SystemExit, match="anchor found 0 times"):
        make_mutants.render("vote_no_timer")
