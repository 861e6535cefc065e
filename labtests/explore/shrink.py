"""Shrink a failing schedule to a small one that still fails the same monitor.

Every candidate is run again from scratch (runs are deterministic, so a
candidate that fails once fails on every replay), and kept only if it breaks
the *same* monitor -- a smaller schedule that fails differently is a different
bug.  The passes, repeated while one of them makes progress and the budget
lasts:

1. fewer peers: a 5-peer schedule is tried as 3 of its peers (renumbered);
2. cut the tail: steps after the violation are dropped, then the heal comes
   sooner;
3. drop steps, halves first, then quarters, ... then one at a time (ddmin);
4. simpler steps: crash triggers fire at once and restart sooner, bursts
   submit one command, crashes become triggered ones never;
5. shorter intervals: each gap between steps is halved (later steps move up).

The seed never changes: the schedule plus its seed is the replayable unit.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from labtests.explore.runner import RunResult
from labtests.explore.schedule import Schedule, ScheduleError, Step

Runner = Callable[[Schedule], RunResult]


@dataclass
class ShrinkResult:
    schedule: Schedule
    result: RunResult  # the RunResult of the minimal schedule's run
    runs: int
    steps_before: int
    steps_after: int


def _remap(schedule: Schedule, keep: tuple[int, ...]) -> Schedule | None:
    """The schedule restricted to peers ``keep``, renumbered 0..len-1."""
    new = {p: k for k, p in enumerate(keep)}
    steps = []
    for s in schedule.steps:
        a = dict(s.args)
        if s.op == "partition":
            groups = [[new[p] for p in g if p in new] for g in a["groups"]]
            a["groups"] = [g for g in groups if g]
        elif s.op == "link":
            if a["src"] not in new or a["dst"] not in new:
                continue
            a["src"], a["dst"] = new[a["src"]], new[a["dst"]]
        elif "peer" in a:
            if a["peer"] not in new:
                continue
            a["peer"] = new[a["peer"]]
        steps.append(Step(s.at, s.op, a))
    try:
        return schedule.with_changes(n=len(keep), steps=tuple(steps))
    except ScheduleError:
        return None


def _simplified(step: Step) -> Iterator[Step]:
    a = step.args
    if step.op in ("crash_after", "mute_after"):
        if a["delay"] > 0:
            yield Step(step.at, step.op, {**a, "delay": 0.0})
            yield Step(step.at, step.op, {**a, "delay": round(a["delay"] / 2, 3)})
        if a["down"] > 0.01:
            yield Step(step.at, step.op, {**a, "down": round(a["down"] / 2, 3)})
    elif step.op == "clients" and a["count"] > 1:
        yield Step(step.at, step.op, {**a, "count": 1})
        yield Step(step.at, step.op, {**a, "count": a["count"] // 2})


class Shrinker:
    """Greedy shrinking of one failing schedule within a run budget and a deadline."""

    def __init__(self, run: Runner, monitor: str, *,
                 max_runs: int = 400, deadline: float | None = None,
                 progress: Callable[[int, Schedule], None] | None = None) -> None:
        self.run = run
        self.monitor = monitor
        self.max_runs = max_runs
        self.deadline = deadline
        self.progress = progress
        self.runs = 0

    def _out_of_budget(self) -> bool:
        return self.runs >= self.max_runs or (
            self.deadline is not None and time.monotonic() > self.deadline)

    def _fails(self, candidate: Schedule | None) -> RunResult | None:
        if candidate is None or self._out_of_budget():
            return None
        self.runs += 1
        result = self.run(candidate)
        v = result.violation
        if v is not None and v.monitor == self.monitor:
            if self.progress is not None:
                self.progress(self.runs, candidate)
            return result
        return None

    def shrink(self, schedule: Schedule, result: RunResult) -> ShrinkResult:
        before = len(schedule.steps)
        best, best_result = schedule, result
        progress = True
        while progress and not self._out_of_budget():
            progress = False
            for step_pass in (self._peers, self._tail, self._drop, self._simplify, self._gaps):
                got = step_pass(best, best_result)
                if got is not None:
                    best, best_result = got
                    progress = True
        return ShrinkResult(best, best_result, self.runs, before, len(best.steps))

    # -- passes: each returns (smaller schedule, its result) or None ---------------

    def _peers(self, s: Schedule, r: RunResult) -> tuple[Schedule, RunResult] | None:
        if s.n <= 3:
            return None
        for keep in itertools.combinations(range(s.n), 3):
            cand = _remap(s, keep)
            res = self._fails(cand)
            if res is not None:
                return cand, res
            if self._out_of_budget():
                return None
        return None

    def _tail(self, s: Schedule, r: RunResult) -> tuple[Schedule, RunResult] | None:
        v = r.violation
        improved = None
        if v.at < s.horizon:
            kept = tuple(st for st in s.steps if st.at <= v.at)
            if len(kept) < len(s.steps):
                cand = s.with_changes(steps=kept)
                res = self._fails(cand)
                if res is not None:
                    s, r, improved = cand, res, (cand, res)
            horizon = round(max((st.at for st in s.steps), default=0.0) + 0.5, 3)
            horizon = max(horizon, round(v.at + 0.001, 3))
            if horizon < s.horizon:
                cand = s.with_changes(horizon=horizon)
                res = self._fails(cand)
                if res is not None:
                    improved = (cand, res)
        else:
            last = max((st.at for st in s.steps), default=0.0)
            if last + 0.5 < s.horizon:
                cand = s.with_changes(horizon=round(last + 0.5, 3))
                res = self._fails(cand)
                if res is not None:
                    improved = (cand, res)
        return improved

    def _drop(self, s: Schedule, r: RunResult) -> tuple[Schedule, RunResult] | None:
        improved = None
        chunk = max(len(s.steps) // 2, 1)
        while chunk >= 1 and s.steps and not self._out_of_budget():
            k = 0
            while k < len(s.steps) and not self._out_of_budget():
                steps = s.steps[:k] + s.steps[k + chunk:]
                cand = s.with_changes(steps=steps)
                res = self._fails(cand)
                if res is not None:
                    s, improved = cand, (cand, res)
                else:
                    k += chunk
            chunk //= 2
        return improved

    def _simplify(self, s: Schedule, r: RunResult) -> tuple[Schedule, RunResult] | None:
        improved = None
        k = 0
        while k < len(s.steps) and not self._out_of_budget():
            for simpler in _simplified(s.steps[k]):
                steps = s.steps[:k] + (simpler,) + s.steps[k + 1:]
                cand = s.with_changes(steps=steps)
                res = self._fails(cand)
                if res is not None:
                    s, improved = cand, (cand, res)
                    break
            else:
                k += 1
        return improved

    def _gaps(self, s: Schedule, r: RunResult) -> tuple[Schedule, RunResult] | None:
        improved = None
        times = sorted({0.0, *(st.at for st in s.steps)})
        for a, b in reversed(list(zip(times, times[1:], strict=False))):
            if self._out_of_budget():
                break
            gap = b - a
            if gap < 0.02:
                continue
            cut = round(gap / 2, 3)
            steps = tuple(Step(round(st.at - cut, 3) if st.at >= b else st.at, st.op, st.args)
                          for st in s.steps)
            cand = s.with_changes(steps=steps, horizon=round(s.horizon - cut, 3))
            res = self._fails(cand)
            if res is not None:
                s, improved = cand, (cand, res)
        return improved


def shrink(schedule: Schedule, result: RunResult, run: Runner, *,
           max_runs: int = 400, deadline: float | None = None) -> ShrinkResult:
    """Shrink ``schedule`` (whose run gave ``result``) keeping ``result``'s monitor."""
    monitor = result.violation.monitor
    return Shrinker(run, monitor, max_runs=max_runs, deadline=deadline).shrink(schedule, result)
