"""Which inconclusive runs to rerun, and on how many workers: one planner for stress and grade.

An inconclusive run failed while the machine made timers late beyond the lab's
tolerance (:mod:`labtests.overload`): the machine's fault, not the Raft's.  Both
``raftlab stress`` and ``raftlab grade`` rerun such runs with the same seed, on
half the workers of the round before (the point is a less loaded machine), up to
a number of rounds.  The decisions live here so the two commands cannot drift
apart; how a round is run (backend, budget, display) stays with each command.

This module imports only :mod:`.backends.base`, so the grader can use it without
pulling in stress's command or display.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from tools.stress.backends.base import Job, RunResult


@dataclass(frozen=True)
class RerunRound:
    """One planned rerun round: which planned jobs run again, and on how many workers."""

    number: int  # 1 for the first rerun
    retries: int  # the most rounds there will be
    jobs: tuple[Job, ...]  # the planned jobs (their own indices), in the order found
    workers: int

    @property
    def renumbered(self) -> list[Job]:
        """The jobs as a backend wants them (indices 0..n-1, same tests and seeds)."""
        return [Job(i, job.test, job.seed) for i, job in enumerate(self.jobs)]

    def planned(self, result: RunResult) -> RunResult:
        """A result of this round (numbered as in :attr:`renumbered`) named by its planned job."""
        return replace(result, job=self.jobs[result.job].index)

    def note(self, prefix: str = "") -> str:
        """The line both commands print and keep in their reports."""
        return (f"{prefix}rerun {len(self.jobs)} inconclusive run(s) with the same seeds on "
                f"{self.workers} worker(s) (rerun {self.number} of at most {self.retries})")


def inconclusive_jobs(jobs: Sequence[Job], results: Iterable[RunResult]) -> list[Job]:
    """The jobs of ``jobs`` whose result in ``results`` is inconclusive, in the results' order.

    Results of jobs not in ``jobs`` are ignored; a passed, failed, errored or skipped
    run is never rerun (a real failure must not get a second chance).
    """
    by_index = {job.index: job for job in jobs}
    return [by_index[r.job] for r in results if r.inconclusive and r.job in by_index]


class Reruns:
    """Plans rerun rounds: at most ``retries`` of them, halving the workers each round.

    Call :meth:`next_round` after each round with the jobs that round ran and their
    latest results (named by planned job); ``None`` means stop (nothing inconclusive,
    or no rounds left).  Workers never drop below one nor exceed the runs to do.
    """

    def __init__(self, workers: int, retries: int) -> None:
        if retries < 0:
            raise ValueError(f"retries must be at least 0, not {retries}")
        self.workers = max(1, workers)
        self.retries = retries
        self.rounds = 0

    def next_round(self, jobs: Sequence[Job], results: Iterable[RunResult]) -> RerunRound | None:
        if self.rounds >= self.retries:
            return None
        todo = inconclusive_jobs(jobs, results)
        if not todo:
            return None
        self.rounds += 1
        self.workers = max(1, min(len(todo), self.workers // 2))
        return RerunRound(self.rounds, self.retries, tuple(todo), self.workers)
