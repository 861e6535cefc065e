"""The ``early-election`` monitor and the ``mute_after`` step that exposes a vote that
does not reset the election timer (mutant ``vote_no_timer``).

The monitor infers a vote only where it is certain (a leader that heard RequestVote
replies from exactly a majority minus one peers needed each of them), so its unit
tests check both that it fires on the certain case and that it stays silent when
the grant is not certain or the election came late enough.
"""

from __future__ import annotations

import os

import pytest

pytest.importorskip("greenlet")

from labtests.explore.monitors import EARLY_ELECTION, Monitors  # noqa: E402
from labtests.explore.runner import run_schedule  # noqa: E402
from labtests.explore.schedule import Schedule, ScheduleError, Step  # noqa: E402
from labtests.impl_loader import load  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def _mutant(name: str):
    from tests.mutants.make_mutants import materialize

    impl = load(materialize(name))
    assert impl.error is None, impl.error
    return impl


def _elected(m: Monitors, voters: list[int], leader: int = 0, term: int = 4) -> None:
    """``leader`` goes from term 3 to leading ``term`` after RequestVote replies of ``voters``."""
    m.state(leader, 1, term - 1, False, 1.0)
    for v in voters:
        m.vote_sent(leader, 1, 1.10)
        m.vote_reply(leader, 1, v, 1, 1.10, 1.10)
    m.state(leader, 1, term, True, 1.11)


def test_a_needed_voter_that_campaigns_at_once_is_an_early_election():
    m = Monitors(3)
    _elected(m, [1])
    m.vote_sent(1, 1, 1.10 + EARLY_ELECTION / 2)
    assert m.violation is not None and m.violation.monitor == "early-election"
    assert m.violation.kind == "liveness"
    assert "S1 sent a RequestVote" in m.violation.message
    assert "granted its vote to S0 for term 4" in m.violation.message


def test_no_verdict_when_the_vote_was_not_certainly_needed_or_the_election_came_late():
    both = Monitors(3)  # two replies in a 3-peer cluster: either vote was enough
    _elected(both, [1, 2])
    both.vote_sent(1, 1, 1.12)
    assert both.violation is None
    late = Monitors(3)
    _elected(late, [1])
    late.vote_sent(1, 1, 1.10 + EARLY_ELECTION + 0.001)
    assert late.violation is None
    restarted = Monitors(3)  # another run of the voter: its timer started afresh
    _elected(restarted, [1])
    restarted.vote_sent(1, 2, 1.12)
    assert restarted.violation is None


def test_mute_after_is_validated_like_crash_after():
    with pytest.raises(ScheduleError, match="event"):
        Schedule(3, 1, (Step(1.0, "mute_after", {"peer": 0, "event": "lunch", "delay": 0,
                                                  "down": 0.1}),), 5.0)
    with pytest.raises(ScheduleError, match="event must be one of vote, append"):
        Schedule(3, 1, (Step(1.0, "mute_after", {"peer": 0, "event": "persist", "delay": 0,
                                                  "down": 0.1}),), 5.0)
    with pytest.raises(ScheduleError, match="delay and down"):
        Schedule(3, 1, (Step(1.0, "mute_after", {"peer": 0, "event": "vote", "delay": 0,
                                                  "down": -1}),), 5.0)


def _quiet_voters(seed: int) -> Schedule:
    """Everyone apart, then S0 and S1 together (S2 away), each muted for 0.3 s as soon as
    its vote reply arrives (so the new leader's first heartbeat to it is lost)."""
    steps = [Step(0.5, "partition", {"groups": [[0], [1], [2]]}),
             Step(2.0, "partition", {"groups": [[0, 1], [2]]})]
    for p in (0, 1):
        for _ in range(2):
            steps.append(Step(2.0, "mute_after", {"peer": p, "event": "vote", "delay": 0.0,
                                                  "down": 0.3}))
    return Schedule(3, seed, tuple(steps), 6.0)


def test_vote_no_timer_is_an_early_election_and_the_bundled_raft_is_not():
    impl = _mutant("vote_no_timer")
    found = [v for seed in range(40)
             if (v := run_schedule(_quiet_voters(seed), impl).violation) is not None]
    assert found, "the vote-without-timer-reset mutant was never caught on its scenario"
    assert {v.monitor for v in found} == {"early-election"}, [v.headline() for v in found]
    for seed in range(40):
        v = run_schedule(_quiet_voters(seed), None).violation
        assert v is None, v.headline()
