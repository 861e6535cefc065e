"""The persister's contract (docs/api.md, Persistence) and the apply channel's Go semantics."""

from __future__ import annotations

import threading
import time

import pytest

from raft import ApplyChannel, ApplyMsg, ChannelClosed, Persister


def test_empty_persister_reads_empty_bytes():
    p = Persister()
    assert p.read_raft_state() == b"" and p.read_snapshot() == b""
    assert p.raft_state_size() == 0 and p.snapshot_size() == 0


def test_save_replaces_both_atomically_and_none_means_empty():
    p = Persister()
    p.save(b"state1", b"snap1")
    assert (p.read_raft_state(), p.read_snapshot()) == (b"state1", b"snap1")
    p.save(b"state22", None)
    assert (p.read_raft_state(), p.read_snapshot()) == (b"state22", b"")
    assert p.raft_state_size() == 7 and p.snapshot_size() == 0


def test_saved_bytes_cannot_be_changed_by_the_caller():
    p = Persister()
    state = bytearray(b"abc")
    p.save(state, memoryview(b"xyz"))
    state[0] = ord("z")
    assert p.read_raft_state() == b"abc"
    assert isinstance(p.read_snapshot(), bytes)


def test_copy_is_independent():
    p = Persister()
    p.save(b"s", b"n")
    twin = p.copy()
    p.save(b"later", b"later")
    assert (twin.read_raft_state(), twin.read_snapshot()) == (b"s", b"n")


def test_save_rejects_non_bytes_with_a_clear_error():
    with pytest.raises(TypeError, match="raftstate must be bytes"):
        Persister().save("text", None)


def test_channel_put_blocks_until_taken():
    ch = ApplyChannel()
    taken_at: list[float] = []
    returned_at: list[float] = []

    def sender() -> None:
        ch.put(ApplyMsg(command_valid=True, command=1, command_index=1))
        returned_at.append(time.monotonic())

    thread = threading.Thread(target=sender, name="sender")
    thread.start()
    time.sleep(0.2)
    assert not returned_at, "put returned before anyone received"
    taken_at.append(time.monotonic())
    msg = ch.get(timeout=1)
    thread.join(1)
    assert msg.command == 1 and returned_at and returned_at[0] >= taken_at[0]


def test_channel_keeps_order_and_hands_each_message_to_one_receiver():
    ch = ApplyChannel()
    received: list[int] = []

    def sender() -> None:
        for i in range(100):
            assert ch.put(i)

    thread = threading.Thread(target=sender, name="sender")
    thread.start()
    for _ in range(100):
        received.append(ch.get(timeout=1))
    thread.join(1)
    assert received == list(range(100))


def test_close_wakes_senders_and_receivers():
    ch = ApplyChannel()
    results: list[object] = []

    def sender() -> None:
        results.append(ch.put("x"))

    def receiver(other: ApplyChannel) -> None:
        try:
            other.get()
        except ChannelClosed:
            results.append("closed")

    other = ApplyChannel()
    threads = [threading.Thread(target=sender, name="s"),
               threading.Thread(target=receiver, args=(other,), name="r")]
    for t in threads:
        t.start()
    time.sleep(0.1)
    ch.close()
    other.close()
    for t in threads:
        t.join(1)
    assert not any(t.is_alive() for t in threads)
    assert sorted(map(str, results)) == ["False", "closed"]
    assert ch.put("y") is False


def test_get_timeout():
    with pytest.raises(TimeoutError):
        ApplyChannel().get(timeout=0.05)


def _wait_until(predicate, timeout: float = 30.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def test_blocked_senders_are_served_in_arrival_order():
    """Go serves goroutines blocked on a channel first come, first served; so does put.

    Each sender starts only once the previous one is blocked, so arrival order is
    known whatever the machine's load; eight senders, three rounds."""
    for _round in range(3):
        ch = ApplyChannel()
        threads = []
        for k in range(8):
            t = threading.Thread(target=ch.put, args=(k,), name=f"fifo-sender-{k}")
            t.start()
            threads.append(t)
            _wait_until(lambda k=k, ch=ch: ch.waiting_senders == k + 1)
        received = [ch.get(timeout=5) for _ in range(8)]
        for t in threads:
            t.join(5)
        assert received == list(range(8))
        assert not any(t.is_alive() for t in threads)


def test_close_withdraws_every_waiting_message():
    ch = ApplyChannel()
    results: list[bool] = []
    lock = threading.Lock()

    def send(k: int) -> None:
        ok = ch.put(k)
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=send, args=(k,), name=f"w-{k}") for k in range(4)]
    for k, t in enumerate(threads):
        t.start()
        _wait_until(lambda k=k: ch.waiting_senders == k + 1)
    assert ch.get(timeout=5) == 0  # the oldest is taken ...
    ch.close()  # ... the other three are withdrawn
    for t in threads:
        t.join(5)
    assert sorted(results) == [False, False, False, True]
    assert ch.waiting_senders == 0
