"""The codec's tests: labgob's TestGOB in Python form, plus what the codec refuses."""

from __future__ import annotations

import dataclasses
import io
import queue
import threading

import pytest

from labrpc.codec import CodecError, decode, encode


@dataclasses.dataclass
class T1:
    t1int0: int = 0
    t1int1: int = 0
    t1string0: str = ""
    t1string1: str = ""


@dataclasses.dataclass
class T3:
    t3int999: int = 0


@dataclasses.dataclass
class T2:
    t2slice: list = dataclasses.field(default_factory=list)
    t2map: dict = dataclasses.field(default_factory=dict)
    t2interface: object = None


class Slotted:
    __slots__ = ("a", "b")

    def __init__(self, a: object, b: object) -> None:
        self.a, self.b = a, b


def test_gob_roundtrip_of_nested_values():
    t1 = T1(0, 1, "", "6.824")
    t2 = T2([T1(), t1], {99: T1(1, 2, "x", "y")}, T3(999))
    values = [0, 1, t1, t2]
    decoded = [decode(encode(v)) for v in values]
    assert decoded[0] == 0 and decoded[1] == 1
    assert decoded[2] == t1
    got = decoded[3]
    assert len(got.t2slice) == 2 and got.t2slice[1] == t1
    assert len(got.t2map) == 1 and got.t2map[99].t1string1 == "y"
    assert isinstance(got.t2interface, T3) and got.t2interface.t3int999 == 999


def test_decode_gives_a_deep_copy():
    original = T2([T1(1, 2, "a", "b")], {1: [1, 2]}, None)
    copy = decode(encode(original))
    copy.t2slice[0].t1int0 = 42
    copy.t2map[1].append(3)
    assert original.t2slice[0].t1int0 == 1
    assert original.t2map[1] == [1, 2]


def test_big_ints_and_bytes_survive():
    value = {"cmd": 2**63 - 1, "snap": b"\x00\xff" * 10, "neg": -5, "f": 0.5, "set": {1, 2}}
    assert decode(encode(value)) == value


def _generator():
    yield 1


def _module_function() -> None:
    pass


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (threading.Lock(), "threading.Lock"),
        (threading.RLock(), "threading.RLock"),
        (threading.Condition(), "threading.Condition"),
        (threading.Event(), "threading.Event"),
        (threading.Semaphore(), "threading.Semaphore"),
        (threading.Thread(), "threading.Thread"),
        (queue.Queue(), "queue.Queue"),
        (queue.SimpleQueue(), "queue.SimpleQueue"),
        (_module_function, "function _module_function"),
        (lambda: 1, "function <lambda>"),
        (_generator(), "generator"),
        (io, "module"),
        (io.BytesIO(), "file"),
    ],
)
def test_refuses_what_cannot_cross_a_network(value, expected):
    with pytest.raises(CodecError) as err:
        encode(T2([T1(), Slotted(1, [value])]), "args")
    assert str(err.value).startswith(f"args.t2slice[1].b[0]: {expected}")


def test_refuses_an_object_that_holds_a_lock_naming_the_lock():
    class Peer:  # a Raft-like object with a lock inside
        def __init__(self) -> None:
            self.mu = threading.Lock()
            self.log = [1, 2]

    with pytest.raises(CodecError, match=r"^reply\.peer\.mu: threading\.Lock"):
        encode(_Holder(Peer()), "reply")


class _Holder:
    def __init__(self, peer: object) -> None:
        self.peer = peer


def test_plain_data_is_accepted_at_any_depth():
    deep: object = 1
    for _ in range(40):
        deep = [deep, {"k": (len(str(deep)),)}]
    assert decode(encode(deep)) == deep


# -- the fast paths: plain values, and classes checked once --------------------------


def test_fast_paths_give_exactly_pickles_bytes():
    import pickle

    from labrpc.codec import PROTOCOL
    for value in (111, "x" * 284, b"\x00", 1.5, True, None, T1(1, 2, "a", "b"),
                  T2([T3(1)], {"k": T3(2)}, "i"), [1, "two", (3,)]):
        assert encode(value) == pickle.dumps(value, PROTOCOL)  # byte counts stay the lab's


def test_a_class_once_accepted_still_carries_refused_values_inside():
    encode(T2([T3(1)], {}, None))  # T2 and T3 are now known to be fine
    with pytest.raises(CodecError, match=r"^args\.t2slice\[0\]\.t3int999: threading\.Lock "):
        encode(T2([T3(threading.Lock())], {}, None), "args")
    for _ in range(3):  # refusals are never remembered as acceptances
        with pytest.raises(CodecError, match=r"^value\.t2interface: function "):
            encode(T2([], {}, lambda: None))


def test_the_cache_of_accepted_classes_is_bounded():
    from labrpc import codec
    for i in range(codec._ACCEPTED_MAX + 100):  # one new class per value (and unpicklable)
        with pytest.raises(CodecError, match=rf"^value: tests\.test_codec\.Made{i} cannot be"):
            encode(type(f"Made{i}", (), {"__module__": __name__})())
    assert len(codec._ACCEPTED) <= codec._ACCEPTED_MAX


# -- reused picklers (labrpc.codec._SPARE): no state carries from one message to the next --


def test_reused_picklers_give_pickles_bytes_after_shared_objects_and_refusals():
    import pickle

    from labrpc.codec import PROTOCOL
    shared = T3(7)
    first = T2([shared, shared], {"again": shared}, shared)  # memoised within one message
    assert encode(first) == pickle.dumps(first, PROTOCOL)
    # The next message holds the same object: a memo left over would make it a
    # back-reference (shorter bytes, and a decode error on the other side).
    second = T2([shared], {}, None)
    assert encode(second) == pickle.dumps(second, PROTOCOL)
    assert decode(encode(second)) == second
    for bad in (T2([], {}, threading.Lock()), T2([], {}, lambda: None), T2([], {}, io.StringIO())):
        with pytest.raises(CodecError):
            encode(bad, "args")  # fails half-way through a pickler ...
        after = T2([T3(1)], {"k": "v"}, 3)  # ... and the next message is whole
        assert encode(after) == pickle.dumps(after, PROTOCOL)
        assert decode(encode(after)) == after


def test_reused_picklers_keep_no_message_alive_and_no_big_buffer():
    import gc
    import weakref

    from labrpc import codec
    value = T2([T3(i) for i in range(5)], {}, None)
    ref = weakref.ref(value.t2slice[0])
    encode(value)
    del value
    gc.collect()
    assert ref() is None, "a spare pickler's memo still holds the last message"
    codec._SPARE.clear()
    encode(T2([b"x" * (codec._SPARE_BUFFER_MAX * 4)], {}, None))  # a snapshot-sized message
    assert codec._SPARE == [], "a pickler whose buffer grew to a snapshot's size was kept"
    encode(T2([b"x"], {}, None))
    assert len(codec._SPARE) == 1
    assert all(buf.tell() == 0 and buf.getbuffer().nbytes == 0 for _, buf in codec._SPARE)
    with pytest.raises(CodecError):
        encode(T2([], {}, threading.Lock()))
    assert len(codec._SPARE) == 0, "a pickler that failed half-way went back for reuse"


def test_threads_encoding_at_once_never_mix_their_messages():
    import pickle

    from labrpc.codec import PROTOCOL
    errors: list[str] = []

    def worker(k: int) -> None:
        for i in range(300):
            value = T2([T3(k), T1(k, i, str(k), "x" * (i % 40))], {"i": i}, T3(-k))
            data = encode(value)
            if data != pickle.dumps(value, PROTOCOL) or decode(data) != value:
                errors.append(f"thread {k} message {i}")
                return

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
