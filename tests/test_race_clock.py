"""The detector's cost cuts keep what it computes: chunked clocks merge like flat
element-wise max, a thread's cached own entry is its clock's, a stack's line read from
the instruction offset is the frame's ``f_lineno``, and a test's detector is freed when
the test ends (no cycle keeps it and all it saw alive)."""

from __future__ import annotations

import gc
import random
import sys
import weakref

import pytest

pytest.importorskip("greenlet")

from labtests import test_2b  # noqa: E402
from labtests.race import clock  # noqa: E402
from labtests.race.detector import Detector, line_at  # noqa: E402
from tests.race_support import run_with_race, toy  # noqa: E402


def _clock(values: list[int]) -> clock.Clock:
    vc: clock.Clock = []
    for t, v in enumerate(values):
        if v:
            clock.set_entry(vc, t, v)
    return vc


def test_merge_is_the_element_wise_max_whatever_the_lengths_and_sharing() -> None:
    rng = random.Random(5)
    for _ in range(300):
        a = [rng.choice([0, 0, 1, 2, 5, 9]) for _ in range(rng.randrange(0, 5 * clock.CHUNK))]
        b = [rng.choice([0, 1, 2, 5, 9]) for _ in range(rng.randrange(0, 5 * clock.CHUNK))]
        va, vb = _clock(a), _clock(b)
        if rng.random() < 0.3 and va and vb:  # a shared chunk, as after a copy
            va[0] = vb[0]
            a = clock.flat(va)
        b_before = clock.flat(vb)
        clock.merge(va, vb)
        n = max(len(a), len(b))
        want = [max(x, y) for x, y in zip(a + [0] * (n - len(a)), b + [0] * (n - len(b)),
                                           strict=True)]
        got = clock.flat(va)
        assert (got + [0] * n)[:n] == want and not any(got[n:])
        assert clock.flat(vb) == b_before  # the other clock is never changed
        assert all(clock.entry(va, t) == w for t, w in enumerate(want))
        assert clock.entry(va, 10 * clock.CHUNK) == 0


def test_a_copy_shares_chunks_and_set_entry_never_changes_another_clock() -> None:
    vc = _clock([1, 2, 3] + [0] * (2 * clock.CHUNK) + [4])
    copy = list(vc)
    clock.set_entry(copy, 1, 7)
    clock.set_entry(copy, 3 * clock.CHUNK + 5, 1)
    assert clock.entry(vc, 1) == 2 and clock.entry(copy, 1) == 7
    assert clock.entry(vc, 3 * clock.CHUNK + 5) == 0
    assert vc[1] is copy[1]  # untouched chunks stay shared


def test_each_threads_cached_own_entry_is_its_clocks_entry() -> None:
    """``now`` is kept beside the clock; a merge must never move a thread's own entry."""
    seen: list[Detector] = []
    real_init = Detector.__init__

    def keep(self: Detector, *, simulated: bool = False) -> None:
        real_init(self, simulated=simulated)
        seen.append(self)

    Detector.__init__ = keep  # type: ignore[method-assign]
    try:
        run_with_race(test_2b.test_concurrent_starts_2b, 4, toy("check_then_act"))
    finally:
        Detector.__init__ = real_init  # type: ignore[method-assign]
    (det,) = seen
    assert len(det._threads) > 20
    for ts in det._threads.values():
        assert ts.now == clock.entry(ts.vc, ts.tid) >= 1, ts.name


def test_line_from_the_instruction_offset_is_f_lineno() -> None:
    def deep(n: int) -> list[tuple[int, int]]:
        if n:
            return deep(n - 1)
        out = []
        f = sys._getframe()
        while f is not None:
            out.append((line_at(f.f_code, f.f_lasti), f.f_lineno))
            f = f.f_back
        return out

    pairs = deep(3)
    assert len(pairs) > 4 and all(a == b for a, b in pairs), pairs


def test_a_tests_detector_is_freed_when_the_test_ends() -> None:
    refs: list[weakref.ref[Detector]] = []
    real_init = Detector.__init__

    def keep(self: Detector, *, simulated: bool = False) -> None:
        real_init(self, simulated=simulated)
        refs.append(weakref.ref(self))

    enabled = gc.isenabled()
    gc.disable()  # freed by reference counting, not by a later full collection
    Detector.__init__ = keep  # type: ignore[method-assign]
    try:
        det = run_with_race(test_2b.test_basic_agree_2b, 2, None)
        assert det.races == [] and det.accesses > 100
        del det
        assert refs and refs[0]() is None
    finally:
        Detector.__init__ = real_init  # type: ignore[method-assign]
        if enabled:
            gc.enable()


def test_has_dict_tells_slotted_classes_from_the_others() -> None:
    """The field hook skips the ``__dict__`` lookup (an exception each time) only for
    classes whose instances cannot have one; their slot fields are still seen.  A
    subclass in scope runs its base's hook once, not a hook wrapped in a hook (each
    access counted twice, and the report's stack one frame short)."""
    from labtests.race.instrument import has_dict, instrumented

    class Slotted:
        __slots__ = ("x",)

        def __init__(self) -> None:
            self.x = 1

    class Child(Slotted):  # no __slots__: its instances have a __dict__
        pass

    class Plain:
        pass

    assert not has_dict(Slotted) and has_dict(Child) and has_dict(Plain)
    mod = type(sys)("race_slots")
    for cls in (Slotted, Child):
        cls.__module__ = mod.__name__
    mod.Slotted, mod.Child = Slotted, Child  # type: ignore[attr-defined]
    det = Detector()
    obj, child = Slotted(), Child()
    with instrumented(det, [mod], simulated=False):
        before = det.accesses
        assert obj.x == 1 and child.x == 1
        child.y = 2  # type: ignore[attr-defined]
        assert child.y == 2  # type: ignore[attr-defined]
    assert det.accesses - before == 4  # two slot reads, one write, one dict read
    assert "__getattribute__" not in vars(Child) and "__setattr__" not in vars(Child)


def test_simulated_detector_is_a_detector_without_the_lock() -> None:
    det = Detector(simulated=True)
    assert isinstance(det, Detector) and type(det) is not Detector
    assert type(Detector()) is Detector
