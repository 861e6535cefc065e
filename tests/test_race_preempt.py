"""Seeded line preemption in simulated time: a read-modify-write split over lines loses
updates for some seeds, only in the files in scope, and a seed replays exactly."""

from __future__ import annotations

import threading

import pytest

pytest.importorskip("greenlet")

from labtests.sim import activate  # noqa: E402

HERE = __file__


def _racy_counter(seed: int, preempt: float, in_scope: bool) -> tuple[int, int]:
    """Two threads each add 1 to a shared counter 200 times without a lock."""
    box = {"n": 0}

    def work() -> None:
        for _ in range(200):
            seen = box["n"]
            seen += 1
            box["n"] = seen

    scope = (lambda f: f == HERE) if in_scope else (lambda f: False)
    with activate(seed, preempt=preempt, preempt_scope=scope) as sched:
        threads = [threading.Thread(target=work) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        switches = sched.line_preemption.switches
    return box["n"], switches


def test_without_preemption_no_update_is_lost() -> None:
    assert all(_racy_counter(seed, 0.0, True)[0] == 400 for seed in range(5))


def test_line_preemption_loses_updates_and_replays_exactly() -> None:
    results = [_racy_counter(seed, 0.05, True) for seed in range(5)]
    assert any(n < 400 for n, _ in results), results
    assert all(switches > 0 for _, switches in results)
    assert results == [_racy_counter(seed, 0.05, True) for seed in range(5)]


def test_code_out_of_scope_is_never_preempted_at_lines() -> None:
    for seed in range(5):
        n, switches = _racy_counter(seed, 0.5, False)
        assert (n, switches) == (400, 0)


def test_preemption_probability_is_checked() -> None:
    with pytest.raises(ValueError, match="probability"):
        with activate(1, preempt=1.5, preempt_scope=lambda f: True):
            pass
