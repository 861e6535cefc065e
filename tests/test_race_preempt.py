"""Seeded line preemption in simulated time: a read-modify-write split over lines loses
updates for some seeds, only in the files in scope, and a seed replays exactly."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

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


def test_frames_started_while_another_thread_is_preempted_get_the_line_tracer() -> None:
    """Tracing is suspended while a thread is preempted (the switch is made in its
    tracer), so frames other threads create meanwhile get no line tracer; when it
    resumes they must be given one.  Invariant checked: once every thread is blocked,
    each frame in scope of each simulated thread has its line tracer."""
    for seed in range(5):
        with activate(seed, preempt=0.5, preempt_scope=lambda f: f == HERE) as sched:
            go = threading.Event()  # made inside: the simulation's Event
            work = _nested_waiter(go)
            threads = [threading.Thread(target=work) for _ in range(4)]
            for t in threads:
                t.start()
            time.sleep(0.01)  # all four now wait in inner(), two frames in scope each
            untraced = [(task.thread.name, frame.f_code.co_name)
                        for task in sched.live_tasks() if task is not sched.main
                        for frame in _frames(task.glet.gr_frame)
                        if frame.f_code.co_filename == HERE and frame.f_trace is None]
            switches = sched.line_preemption.switches
            go.set()
            for t in threads:
                t.join()
        assert switches > 0
        assert untraced == [], (seed, untraced)


def _nested_waiter(go: threading.Event) -> Callable[[], None]:
    def inner() -> None:
        x = 1
        x += 1
        go.wait()

    def work() -> None:
        y = 1
        y += 1
        inner()
    return work


def _frames(frame: Any) -> list[Any]:
    out = []
    while frame is not None:
        out.append(frame)
        frame = frame.f_back
    return out


def test_gap_is_geometric_with_parameter_p() -> None:
    """One draw per preemption: the mean gap is 1/p and a gap is never below 1."""
    from labtests.sim.preempt import LinePreemption

    lines = LinePreemption(None, lambda f: True, 0.1, seed=5)
    gaps = [lines.gap() for _ in range(20000)]
    assert min(gaps) == 1
    assert 9.5 < sum(gaps) / len(gaps) < 10.5
    assert LinePreemption(None, lambda f: True, 1.0, seed=5).gap() == 1
