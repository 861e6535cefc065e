"""The bundled Raft's real-time-only paths, run deterministically in simulated time.

In real time the reference Raft sends with ``call_async`` (no thread waits for an
RPC) and its idle threads wait with no timeout, for a notify alone; in simulated
time and under the race detector it makes blocking calls and its idle waits end
after ``IDLE_WAIT`` (1 s), so the recorded schedules and explore's replays stay as
they were.  That split has a hazard: a missing notify hangs a thread forever in
real time but costs at most a second in ``--sim``, so the simulated soaks would
pass a reference Raft that real time fails.

These tests take the real-time branch (``real_threading()`` answers True for the
bundled Raft alone) inside a simulation: every graded test must still pass, and
a reference whose ``kill()`` forgets to wake its sleeping threads -- invisible to
plain ``--sim`` -- fails with the leak check's verdict, as it would in real time.
"""

from __future__ import annotations

import inspect

import pytest

pytest.importorskip("greenlet")

import raft.reference.raft as reference  # noqa: E402
from labtests import test_2a, test_2b, test_2c, test_2d  # noqa: E402
from labtests.driver import run_graded  # noqa: E402
from labtests.failures import RaftTestFailure  # noqa: E402

GRADED = [
    fn
    for module in (test_2a, test_2b, test_2c, test_2d)
    for name, fn in inspect.getmembers(module, inspect.isfunction)
    if name.startswith("test_") and fn.__module__ == module.__name__
]


@pytest.fixture
def realtime_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bundled Raft takes its real-time branch (``call_async``, untimed idle waits)."""
    monkeypatch.setattr(reference, "real_threading", lambda: True)


def _kill_without_waking(self: reference.Raft) -> None:
    """``kill()`` with its notify_all()s left out: the threads asleep never hear of it."""
    with self.mu:
        self._dead.set()
    self.pool.close()


def test_every_graded_test_is_collected():
    assert len(GRADED) == 28


@pytest.mark.parametrize("test_fn", GRADED, ids=lambda fn: fn.__name__)
def test_graded_test_passes_on_the_real_time_paths(realtime_paths: None, test_fn) -> None:
    seen: list[tuple[bool, float | None]] = []
    init = reference.Raft.__init__

    def recording_init(self: reference.Raft, *args: object, **kwargs: object) -> None:
        init(self, *args, **kwargs)
        seen.append((self._async, self._idle))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(reference.Raft, "__init__", recording_init)
        result = run_graded(test_fn, seed=0)
    assert result.figures is not None
    assert seen and set(seen) == {(True, None)}, "the peers did not take the real-time branch"


def test_a_kill_that_wakes_nobody_passes_plain_sim_but_not_the_real_time_paths(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reference.Raft, "kill", _kill_without_waking)
    run_graded(test_2a.test_initial_election_2a, seed=0)  # the 1 s idle bound hides it
    monkeypatch.setattr(reference, "real_threading", lambda: True)
    with pytest.raises(RaftTestFailure, match="threads still running after cleanup"):
        run_graded(test_2a.test_initial_election_2a, seed=0)
