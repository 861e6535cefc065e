"""Seeded preemption in simulated time: a read-modify-write split over statements loses
updates for some seeds, only in the files in scope, and a seed replays exactly.

Preemption points come from ticks compiled into the functions of the files in scope
(labtests/sim/ticks.py), so the functions these tests preempt live at module level
here (the file in scope) and are looked up when the simulation starts."""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import traceback

import pytest

pytest.importorskip("greenlet")

from labtests.sim import activate  # noqa: E402
from labtests.sim.preempt import LinePreemption  # noqa: E402

HERE = __file__


def _work(box: dict[str, int]) -> None:
    for _ in range(200):
        seen = box["n"]
        seen += 1
        box["n"] = seen


def _racy_counter(seed: int, preempt: float, in_scope: bool,
                  order: list[str] | None = None) -> tuple[int, int]:
    """Two threads each add 1 to a shared counter 200 times without a lock."""
    box = {"n": 0}
    scope = (lambda f: f == HERE) if in_scope else (lambda f: False)
    with activate(seed, preempt=preempt, preempt_scope=scope) as sched:
        threads = [threading.Thread(target=_work, args=(box,), name=f"w{i}")
                   for i in range(2)]
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


def test_gap_is_geometric_with_parameter_p() -> None:
    """One draw per preemption: the mean gap is 1/p and a gap is never below 1."""
    lines = LinePreemption(None, lambda f: True, 0.1, seed=5)
    gaps = [lines.gap() for _ in range(20000)]
    assert min(gaps) == 1
    assert 9.5 < sum(gaps) / len(gaps) < 10.5
    assert LinePreemption(None, lambda f: True, 1.0, seed=5).gap() == 1


# -- where the points are: with p = 1 every point is a switch, so switches count them --


def _spin(n: int) -> int:
    i = 0
    while i < n:
        i += 1
    return i


def _spin_true(n: int) -> int:
    i = 0
    while True:
        i += 1
        if i >= n:
            break
    return i


def _squares(n: int) -> list[int]:
    return [x * x for x in range(n)]


def _nested(n: int) -> int:
    def inner(k: int) -> int:
        return k + 1

    total = 0
    for _ in range(n):
        total = inner(total)
    return total


def _with_lambda(n: int) -> list[int]:
    f = lambda k: k * 2  # noqa: E731 - a lambda is what is tested
    return [f(k) for k in range(n)]


def _documented() -> int:
    """A docstring is no statement to preempt at."""
    global _GLOBAL_SEEN
    _GLOBAL_SEEN = 1
    return _GLOBAL_SEEN


_GLOBAL_SEEN = 0


def _points(fn, *args) -> tuple[object, int]:  # noqa: ANN001
    with activate(1, preempt=1.0, preempt_scope=lambda f: f == HERE) as sched:
        result = fn(*args)
        return result, sched.line_preemption.switches


@pytest.mark.parametrize(("fn", "arg", "result", "points"), [
    # i = 0; n + 1 checks of the condition; n increments; return
    (_spin, 5, 5, 1 + 6 + 5 + 1),
    # i = 0; `while True:` once (no condition to re-check); per iteration: i += 1
    # and the if; break; return
    (_spin_true, 5, 5, 1 + 1 + 5 * 2 + 1 + 1),
    # return; one per comprehension step
    (_squares, 4, [0, 1, 4, 9], 1 + 4),
    # the def, total = 0, the for, per iteration: the body statement + inner's return
    (_nested, 3, 3, 3 + 3 * 2 + 1),
    # f = ...; return; per step: the comprehension's point + the lambda's
    (_with_lambda, 3, [0, 2, 4], 2 + 3 * 2),
    # no point at the docstring or the global declaration
    (_documented, None, 1, 2),
], ids=lambda v: getattr(v, "__name__", None))
def test_preemption_points_are_statements_loop_checks_and_steps(fn, arg, result,  # noqa: ANN001
                                                                points) -> None:  # noqa: ANN001
    args = () if arg is None else (arg,)
    assert _points(fn, *args) == (result, points)


def test_no_trace_function_and_own_code_back_after_the_run() -> None:
    before = _work.__code__
    with activate(2, preempt=0.5, preempt_scope=lambda f: f == HERE) as sched:
        assert sys.gettrace() is None
        assert _work.__code__ is not before
        assert sched.line_preemption.instrumented >= 8
    assert _work.__code__ is before
    with pytest.raises(RuntimeError):
        with activate(2, preempt=0.5, preempt_scope=lambda f: f == HERE):
            raise RuntimeError("the body failed")
    assert _work.__code__ is before


def _fails_here() -> None:
    x = 1
    raise KeyError(x)  # FAILS-HERE


def test_tracebacks_keep_their_line_numbers() -> None:
    line = next(i for i, text in enumerate(open(HERE), 1) if "# FAILS-HERE" in text
                and "next(" not in text)
    with activate(3, preempt=1.0, preempt_scope=lambda f: f == HERE):
        try:
            _fails_here()
        except KeyError as exc:
            frames = traceback.extract_tb(exc.__traceback__)
    assert (frames[-1].name, frames[-1].lineno) == ("_fails_here", line)


def test_a_file_edited_since_import_refuses_the_run_and_is_left_alone(tmp_path) -> None:  # noqa: ANN001
    """Its functions no longer match the source: swapping them would run other code, and
    leaving them alone would lose their points (the seed would interleave otherwise than
    in a fresh process).  So the simulation refuses to start, naming the function, and
    leaves its code as it is; with the file as loaded again it runs as before."""
    from labtests.sim.ticks import StaleSource

    path = tmp_path / "edited_mod.py"
    loaded = "def f():\n    a = 1\n    return a\n"
    path.write_text(loaded)
    spec = importlib.util.spec_from_file_location("raftlab_edited_mod", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    try:
        spec.loader.exec_module(mod)
        own = mod.f.__code__
        with activate(1, preempt=1.0, preempt_scope=lambda f: f == str(path)) as sched:
            assert sched.line_preemption.instrumented == 1
            assert mod.f() == 1 and sched.line_preemption.switches == 2
        path.write_text("def f():\n    a = 2\n    return a * 10\n")
        os.utime(path, ns=(1, 1))  # a different version, whatever the clock's resolution
        with pytest.raises(StaleSource, match=r"changed on disk after this process loaded "
                           r"it.*\n  .*edited_mod\.py:1 f \(edited since it was loaded\)"):
            with activate(1, preempt=1.0, preempt_scope=lambda f: f == str(path)):
                raise AssertionError("the simulation must not start")
        assert mod.f.__code__ is own and mod.f() == 1
        path.write_text(loaded)
        os.utime(path, ns=(2, 2))
        with activate(1, preempt=1.0, preempt_scope=lambda f: f == str(path)) as sched:
            assert sched.line_preemption.instrumented == 1  # no simulation was left active
            assert mod.f() == 1 and sched.line_preemption.switches == 2
        assert mod.f.__code__ is own
    finally:
        del sys.modules[spec.name]


def _logged_work(box: dict[str, int], log: list[str]) -> None:
    me = threading.current_thread().name
    for _ in range(50):
        seen = box["n"]
        log.append(f"{me} read {seen}")
        box["n"] = seen + 1


def test_same_seed_same_interleaving_log() -> None:
    """Exact replay: the log of who read what, in order, is the same for the same seed
    and differs between seeds."""
    def run(seed: int) -> list[str]:
        box, log = {"n": 0}, []
        with activate(seed, preempt=0.1, preempt_scope=lambda f: f == HERE):
            threads = [threading.Thread(target=_logged_work, args=(box, log), name=f"w{i}")
                       for i in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        return log

    logs = [run(seed) for seed in range(4)]
    assert logs == [run(seed) for seed in range(4)]
    assert len({tuple(log) for log in logs}) > 1


def test_same_seed_same_debug_log_of_a_graded_test_under_sim_race() -> None:
    """Exact replay on a whole graded test: the bundled Raft's debug log (every vote,
    append and commit, with virtual timestamps) under --sim --race with preemption is
    the same line for line for the same seed, and differs without the preemption."""
    import logging

    from labtests import test_2b
    from raft import debuglog
    from tests.race_support import run_with_race

    class Keep(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.lines: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.lines.append(record.getMessage())

    def run(seed: int, preempt: float = 0.02) -> list[str]:
        keep = Keep()
        debuglog.logger.addHandler(keep)
        was = debuglog.enabled()
        debuglog.enable(True)
        try:
            det = run_with_race(test_2b.test_concurrent_starts_2b, seed, None, preempt=preempt)
        finally:
            debuglog.enable(was)
            debuglog.logger.removeHandler(keep)
        assert det.races == []
        return keep.lines

    first, again, other = run(8), run(8), run(9)
    # A whole run, not a stub: from the test's start to its end, every peer committing.
    # (Its length follows the reference's code: 59 lines before session 7's changes, 50 now.)
    assert first[0].endswith("=== test_concurrent_starts_2b (seed 8, impl raft)")
    assert first[-1].endswith("=== test_concurrent_starts_2b finished")
    assert all(any(f" CMIT S{p} commit " in line for line in first) for p in range(3)), first
    assert first == again
    assert first != other
    assert first != run(8, preempt=0.0)
