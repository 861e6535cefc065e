"""``--race``: mutants of the bundled Raft get a report naming the field and both lines;
the bundled Raft gets none.  Under --sim each seed is one exact run, so the counts are
deterministic; the real-time checks accept any run that shows the race."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("greenlet")

from labtests import test_2a, test_2b, test_2c  # noqa: E402
from labtests.race import format_races  # noqa: E402
from labtests.race.detector import Detector  # noqa: E402
from tests.race_support import marked_lines, names_mutant, run_with_race, toy  # noqa: E402

PART_TEST = test_2b.test_concurrent_starts_2b  # one graded test of part 2B per seed
SEEDS = range(20)
MUTANTS = {
    # toy name: the fields its racy line touches
    "unlocked_get_state": {"Raft.term", "Raft.role"},
    "check_then_act": {"Raft.role", "Raft.election_deadline"},
    "applier_unlocked": {"Raft.commit_index", "Raft.last_applied"},
    # its only race is on a list's contents (the log's entries, sliced by the RPC's
    # pool thread without the lock while start() appends)
    "replicator_log_unlocked": {"RaftLog.entries[...]"},
}
# applier_unlocked: 18 of 20 seeds of test_concurrent_starts_2b, 20 of 20 of this one
PART_TESTS = {"replicator_log_unlocked": test_2c.test_unreliable_agree_2c,
              "applier_unlocked": test_2c.test_unreliable_agree_2c}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_mutant_reported_in_19_of_20_seeds_under_sim(name: str) -> None:
    """20 seeds in a fresh process (tests.race_support.main): exact per seed whatever this
    process ran before."""
    path = toy(name)
    assert marked_lines(path), f"{path} marks no line with '# RACE'"
    test_fn = PART_TESTS.get(name, PART_TEST)
    proc = subprocess.run(
        [sys.executable, "-m", "tests.race_support", test_fn.__module__, test_fn.__name__,
         path, *sorted(MUTANTS[name]), "--", *map(str, SEEDS)],
        cwd=ROOT, capture_output=True, text=True, timeout=1800)
    out = [ln for ln in proc.stdout.splitlines() if ln.startswith("MISSED ")]
    assert proc.returncode == 0 and out, proc.stdout[-2000:] + proc.stderr[-3000:]
    missed = json.loads(out[-1][len("MISSED "):])
    assert len(missed) <= 1, f"{name}: no report naming its race in seeds {missed}"


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_mutant_reported_in_real_time(name: str) -> None:
    """One real-time run of the part's test (up to three: real time is not replayable)."""
    path = toy(name)
    lines = marked_lines(path)
    for attempt in range(3):
        det = run_with_race(PART_TESTS.get(name, PART_TEST), 100 + attempt, path, sim=False)
        if any(names_mutant(r, MUTANTS[name], path, lines) for r in det.races):
            return
    pytest.fail(f"{name}: three real-time runs without a report naming its race")


def test_report_is_one_screen_with_field_threads_lines_and_locks() -> None:
    path = toy("unlocked_get_state")
    det = run_with_race(test_2a.test_initial_election_2a, 1, path)
    text = format_races(det.races, det.dropped)
    assert text.startswith("DATA RACE")
    assert "field Raft.term" in text or "field Raft.role" in text
    assert "toys_race/unlocked_get_state.py:" in text and "reference/raft.py:" in text
    assert "holding no locks" in text and "holding Raft.mu" in text
    assert len(text.splitlines()) <= 40, text


def test_same_seed_same_report_under_sim() -> None:
    path = toy("check_then_act")
    first = format_races(run_with_race(PART_TEST, 7, path).races)
    again = format_races(run_with_race(PART_TEST, 7, path).races)
    assert first and first == again


@pytest.mark.parametrize("test_fn", [
    *[getattr(test_2a, n) for n in dir(test_2a) if n.startswith("test_")],
    *[getattr(test_2b, n) for n in dir(test_2b) if n.startswith("test_")],
], ids=lambda f: f.__name__)
def test_bundled_raft_has_no_race_under_sim(test_fn) -> None:  # noqa: ANN001
    det = run_with_race(test_fn, 3, None)
    assert det.accesses > 100, "the detector saw (almost) nothing: is it connected?"
    assert det.races == [], format_races(det.races, det.dropped)


def test_event_loop_raft_has_no_race_under_sim() -> None:
    """All state in one thread fed by a queue: nothing to report, many accesses seen."""
    for seed in range(2):
        det = run_with_race(test_2b.test_basic_agree_2b, seed, toy("event_loop"))
        assert det.accesses > 100
        assert det.races == [], format_races(det.races, det.dropped)


def test_happens_before_through_start_join_and_locks_is_not_a_race() -> None:
    """Writes before start(), after join() and under one lock: no report; one unlocked
    write from two threads: exactly that field."""
    import threading

    from labtests.race.instrument import instrumented

    class Box:
        def __init__(self) -> None:
            self.before = 1
            self.locked = 0
            self.racy = 0

    mod = type(sys)("race_box")
    Box.__module__ = mod.__name__
    mod.Box = Box  # type: ignore[attr-defined]
    det = Detector()
    with instrumented(det, [mod], simulated=False):
        box = Box()
        mu = threading.Lock()

        def work() -> None:
            _ = box.before
            with mu:
                box.locked += 1
            box.racy = 2

        t = threading.Thread(target=work)
        t.start()
        with mu:
            box.locked += 1
        t.join()
        box.before = 3  # after join: ordered
        u = threading.Thread(target=lambda: setattr(box, "racy", 4))
        box.racy = 5  # before u starts: ordered with u; unordered with nothing
        u.start()
        u.join()
        v = threading.Thread(target=lambda: setattr(box, "racy", 6))
        v.start()
        box.racy = 7  # v runs concurrently: a race
        v.join()
    fields = {r.field for r in det.races}
    assert fields == {f"{Box.__qualname__}.racy"}, format_races(det.races)


def test_pytest_race_option_fails_the_test_with_the_report() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--pyargs", "labtests", "-k", "initial_election",
         "--sim", "--race", "-p", "no:cacheprovider", "--raft-impl",
         toy("unlocked_get_state"), "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "DATA RACE" in proc.stdout and "RaceFailure" in proc.stdout, proc.stdout[-3000:]


def test_pytest_race_warn_passes_the_test_with_a_warning() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--pyargs", "labtests", "-k", "initial_election",
         "--sim", "--race-warn", "-p", "no:cacheprovider", "--raft-impl",
         toy("unlocked_get_state"), "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "RaceWarning: DATA RACE" in proc.stdout, proc.stdout[-3000:]


def test_hostile_classes_keep_working_and_hooks_are_removed() -> None:
    """A class with its own __setattr__/__getattr__, a frozen dataclass, a __slots__ class:
    behaviour unchanged under the detector, and every hook gone afterwards."""
    import dataclasses
    import threading

    from labtests.race.instrument import instrumented

    class Custom:
        def __init__(self) -> None:
            self.seen: list[str] = []

        def __setattr__(self, name: str, value: object) -> None:
            object.__setattr__(self, name, value)
            if name != "seen":
                self.seen.append(name)

        def __getattr__(self, name: str) -> str:
            return f"missing {name}"

    @dataclasses.dataclass(frozen=True)
    class Frozen:
        x: int

    class Slotted:
        __slots__ = ("y",)

        def __init__(self) -> None:
            self.y = 1

    mod = type(sys)("race_hostile")
    for cls in (Custom, Frozen, Slotted):
        cls.__module__ = mod.__name__
        setattr(mod, cls.__name__, cls)
    original_setattr = Custom.__dict__["__setattr__"]
    det = Detector()
    with instrumented(det, [mod], simulated=False):
        assert Custom.__dict__["__setattr__"] is not original_setattr  # hooked
        c = Custom()
        c.a = 1
        assert c.seen == ["a"] and c.nothing == "missing nothing"
        f = Frozen(3)
        with pytest.raises(dataclasses.FrozenInstanceError):
            f.x = 4  # type: ignore[misc]
        s = Slotted()
        t = threading.Thread(target=lambda: setattr(s, "y", 2))
        t.start()
        t.join()
        assert s.y == 2
    assert "__getattribute__" not in Custom.__dict__ and "__setattr__" in Custom.__dict__
    assert Custom.__dict__["__setattr__"] is original_setattr
    assert "__getattribute__" not in Frozen.__dict__
    assert threading.Lock is not None and threading.Lock.__name__ != "TrackedLock"
