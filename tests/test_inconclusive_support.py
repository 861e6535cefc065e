"""The self-tests' rule for a run that read inconclusive (tests/inconclusive_support.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from labtests import overload
from tests.inconclusive_support import RETRIES, rerun_while_inconclusive


@dataclass
class FakeRun:
    output: str
    late: dict[str, float] = field(default_factory=dict)


def _reruns(*runs: FakeRun) -> tuple[list[int], object]:
    attempts: list[int] = []

    def rerun(attempt: int) -> FakeRun:
        attempts.append(attempt)
        return runs[attempt]
    return attempts, rerun


def test_an_earned_inconclusive_runs_again_until_a_conclusive_run():
    over = overload.LAG_BOUND_MS + 50
    runs = (FakeRun("first", {"t": over}), FakeRun("second"), FakeRun("never"))
    attempts, rerun = _reruns(*runs)
    assert rerun_while_inconclusive(runs[0], lambda r: r.late, rerun, "toy") is runs[1]
    assert attempts == [1]


def test_reruns_stop_after_the_retries_with_the_last_run():
    over = overload.LAG_BOUND_MS
    runs = tuple(FakeRun(f"run {i}", {"t": over}) for i in range(RETRIES + 1))
    attempts, rerun = _reruns(*runs)
    assert rerun_while_inconclusive(runs[0], lambda r: r.late, rerun, "toy") is runs[-1]
    assert attempts == list(range(1, RETRIES + 1))


@pytest.mark.parametrize("lag", [overload.LAG_BOUND_MS - 1, float("nan")])
def test_an_inconclusive_the_lag_does_not_explain_fails_at_once(lag):
    attempts, rerun = _reruns(FakeRun("unused"), FakeRun("unused"))
    with pytest.raises(AssertionError, match=r"toy: reported inconclusive under the 200 ms"):
        rerun_while_inconclusive(FakeRun("first", {"t": lag}), lambda r: r.late, rerun, "toy")
    assert attempts == []
