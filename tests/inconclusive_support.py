"""Self-tests' runs whose failure the overload rule made inconclusive: rerun, alone.

Several self-tests start many pytest runs at once on a 2-core machine, so a toy's
timing failure may rightly read *inconclusive* (the machine made timers late by the
bound or more: labtests/overload.py).  Such a run says nothing about the toy, so it
runs again -- alone -- at most :data:`RETRIES` times; but first the verdict must have
been earned: a run reported inconclusive with less lag than the bound is a bug in the
verdict, and fails the test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from labtests import overload

RETRIES = 2  # reruns, alone, of a run whose failure read inconclusive


class HasOutput(Protocol):
    output: str


Run = TypeVar("Run", bound=HasOutput)


def rerun_while_inconclusive(first: Run, late: Callable[[Run], dict[str, float]],
                             rerun: Callable[[int], Run], label: str) -> Run:
    """``first``, or the first of its reruns with no inconclusive test (or the last one).

    ``late(run)``: its failed tests reported inconclusive, with their timer lag in ms;
    ``rerun(attempt)`` runs it again (attempt 1, 2...), alone.
    """
    run = first
    for attempt in range(1, RETRIES + 1):
        found = late(run)
        if not found:
            break
        unearned = {test: lag for test, lag in found.items() if not lag >= overload.LAG_BOUND_MS}
        assert not unearned, (f"{label}: reported inconclusive under the "
                              f"{overload.LAG_BOUND_MS:.0f} ms bound: {unearned}\n"
                              f"{run.output[-4000:]}")
        run = rerun(attempt)
    return run
