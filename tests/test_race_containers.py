"""``--race`` on the contents of lists, dicts and sets held in the implementation's fields:
races on contents are reported by field, ordered accesses are not, the containers behave
like plain ones (equality, slicing, pickling, copies) and nothing of them leaves the run."""

from __future__ import annotations

import copy
import pickle
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from labtests.race import format_races
from labtests.race.containers import RaceDict, RaceList, RaceSet
from labtests.race.detector import Detector
from labtests.race.instrument import instrumented


class Peer:
    def __init__(self) -> None:
        self.mu = threading.Lock()
        self.log: list[int] = [0]
        self.next: dict[int, int] = {}
        self.seen: set[int] = set()


class Slotted:
    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: list[int] = []


_MOD = type(sys)("race_containers_box")
for _cls in (Peer, Slotted):
    _cls.__module__ = _MOD.__name__
    setattr(_MOD, _cls.__name__, _cls)


@contextmanager
def detector() -> Iterator[Detector]:
    det = Detector()
    with instrumented(det, [_MOD], simulated=False):
        yield det


def in_thread(fn: Callable[[], Any]) -> threading.Thread:
    t = threading.Thread(target=fn)
    t.start()
    return t


def fields(det: Detector) -> set[str]:
    return {r.field for r in det.races}


@pytest.mark.parametrize("writer, reader, field", [
    (lambda p: p.log.append(1), lambda p: p.log[0], "Peer.log[...]"),
    (lambda p: p.log.__setitem__(0, 5), lambda p: len(p.log), "Peer.log[...]"),
    (lambda p: p.log.extend([1, 2]), lambda p: list(p.log), "Peer.log[...]"),
    (lambda p: p.next.__setitem__(1, 2), lambda p: p.next.get(1), "Peer.next[...]"),
    (lambda p: p.next.update({3: 4}), lambda p: [k for k in p.next], "Peer.next[...]"),
    (lambda p: p.seen.add(3), lambda p: 3 in p.seen, "Peer.seen[...]"),
    (lambda p: p.seen.discard(0), lambda p: sorted(p.seen), "Peer.seen[...]"),
], ids=["append/index", "setitem/len", "extend/iter", "dict set/get", "update/iter",
        "set add/in", "discard/sorted"])
def test_unlocked_contents_race_named_by_field(writer, reader, field) -> None:  # noqa: ANN001
    with detector() as det:
        p = Peer()
        go = threading.Event()  # published before either access: orders neither
        t = in_thread(lambda: (go.wait(), writer(p)))
        go.set()
        reader(p)
        t.join()
    assert fields(det) == {field}, format_races(det.races)
    race = det.races[0]
    assert {race.earlier.write, race.later.write} & {True}
    assert "test_race_containers.py" in race.later.where[0]


def test_contents_under_one_lock_and_after_join_are_not_races() -> None:
    with detector() as det:
        p = Peer()

        def work() -> None:
            for i in range(50):
                with p.mu:
                    p.log.append(i)
                    p.next[i] = i
                    p.seen.add(i)

        t = in_thread(work)
        for _ in range(50):
            with p.mu:
                _ = p.log[-1], len(p.next), 3 in p.seen
        t.join()
        p.log.clear()  # after join: ordered
    assert det.races == [], format_races(det.races)
    assert det.accesses > 100


def test_slotted_class_contents_are_tracked_and_locks_named() -> None:
    """The bundled Raft's log is a __slots__ class; a lock is named by the object holding it."""
    with detector() as det:
        s, p = Slotted(), Peer()

        def work() -> None:
            with p.mu:
                s.entries.append(1)

        t = in_thread(work)
        _ = s.entries[:]
        t.join()
    assert fields(det) == {"Slotted.entries[...]"}, format_races(det.races)
    assert "holding Peer.mu" in format_races(det.races)


def test_tracked_containers_behave_like_plain_ones_and_pickle_plain() -> None:
    with detector():
        p = Peer()
        p.log += [1, 2]
        p.next.update(a=1)
        p.seen |= {1}
        assert type(p.log) is RaceList and type(p.next) is RaceDict and type(p.seen) is RaceSet
        assert p.log == [0, 1, 2] and p.log[1:] == [1, 2] and type(p.log[1:]) is list
        assert p.next == {"a": 1} and p.seen == {1} and repr(p.seen) == "{1}"
        assert isinstance(p.log, list) and sorted(p.log, reverse=True) == [2, 1, 0]
        for value in (p.log, p.next, p.seen):
            assert type(pickle.loads(pickle.dumps(value))) in (list, dict, set)
            assert type(copy.deepcopy(value)) in (list, dict, set)
            assert type(copy.copy(value)) in (list, dict, set)
            assert pickle.loads(pickle.dumps(value)) == value
        assert b"race" not in pickle.dumps((p.log, p.next, p.seen))
        alias = p.log
        p.log = alias  # storing a tracked container again keeps it (no copy)
        assert p.log is alias
    assert p.log == [0, 1, 2]  # still usable after the detector is gone


def test_codec_encodes_tracked_containers_as_plain() -> None:
    from labrpc.codec import decode, encode

    with detector():
        p = Peer()
        p.log.append(7)
        data = encode({"entries": p.log, "next": p.next})
    assert decode(data) == {"entries": [0, 7], "next": {}}
    assert type(decode(data)["entries"]) is list


def test_simple_queue_hand_off_orders_accesses_in_real_time() -> None:
    """labrpc's pools hand tasks over through a queue.SimpleQueue: a task's data written
    before the put and used after the get is not a race; the same use without the
    hand-off is."""
    import queue

    with detector() as det:
        p = Peer()
        handed: queue.SimpleQueue = queue.SimpleQueue()
        done = threading.Event()

        def worker() -> None:
            handed.get()
            p.log.append(1)  # ordered after the main thread's writes below
            done.set()

        t = in_thread(worker)
        p.log[0] = 5
        handed.put("go")
        done.wait()
        t.join()
    assert det.races == [], format_races(det.races)
    with detector() as det:
        p = Peer()
        go = threading.Event()
        t = in_thread(lambda: (go.wait(), p.log.append(1)))
        go.set()
        p.log[0] = 5
        t.join()
    assert fields(det) == {"Peer.log[...]"}
