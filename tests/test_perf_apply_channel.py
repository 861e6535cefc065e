"""ApplyChannel's direct hand-off (a send to a waiting receiver does not block).

The hand-off must not change what the lab sees: a message is received exactly
once, blocked receivers are served oldest first, a receiver that gave up (timed
out, or the channel closed) never swallows a later message, and a message a
send reported as received is returned even if the channel closes right after.
"""

from __future__ import annotations

import threading
import time

import pytest

from raft.apply_channel import ApplyChannel, ChannelClosed


def _wait_until(predicate, timeout: float = 30.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.002)


def _receivers(ch: ApplyChannel) -> int:
    with ch._cond:  # noqa: SLF001 - the count of blocked receivers is internal
        return len(ch._receivers)  # noqa: SLF001


def _start_receiver(ch: ApplyChannel, out: list, timeout: float | None = None) -> threading.Thread:
    def body() -> None:
        try:
            out.append(ch.get(timeout=timeout))
        except (ChannelClosed, TimeoutError) as exc:
            out.append(type(exc).__name__)
    t = threading.Thread(target=body, name="receiver", daemon=True)
    t.start()
    return t


def test_send_to_a_waiting_receiver_returns_at_once_and_survives_close():
    ch = ApplyChannel()
    got: list = []
    t = _start_receiver(ch, got)
    _wait_until(lambda: _receivers(ch) == 1)
    assert ch.put("m1") is True  # handed over: returns without waiting for the receiver to run
    ch.close()  # the receive already completed: the message is not lost
    t.join(5)
    assert got == ["m1"]
    assert ch.put("m2") is False


def test_waiting_receivers_are_served_oldest_first():
    ch = ApplyChannel()
    got: list[list] = [[] for _ in range(4)]
    threads = []
    for k in range(4):
        threads.append(_start_receiver(ch, got[k]))
        _wait_until(lambda k=k: _receivers(ch) == k + 1)
    for k in range(4):
        assert ch.put(k) is True
    for t in threads:
        t.join(5)
    assert got == [[0], [1], [2], [3]]


def test_a_receiver_that_timed_out_takes_nothing_later():
    """After a get() gave up, a send must block (nobody takes it), not report success."""
    ch = ApplyChannel()
    with pytest.raises(TimeoutError):
        ch.get(timeout=0.05)
    assert _receivers(ch) == 0
    result: list[bool] = []
    sender = threading.Thread(target=lambda: result.append(ch.put("late")), daemon=True)
    sender.start()
    _wait_until(lambda: ch.waiting_senders == 1)
    assert result == []  # still blocked: no stale receiver swallowed the message
    assert ch.get(timeout=5) == "late"
    sender.join(5)
    assert result == [True]


def test_a_receiver_woken_by_close_takes_nothing_later():
    ch = ApplyChannel()
    got: list = []
    t = _start_receiver(ch, got)
    _wait_until(lambda: _receivers(ch) == 1)
    ch.close()
    t.join(5)
    assert got == ["ChannelClosed"]
    assert _receivers(ch) == 0
    assert ch.put("x") is False


def test_many_senders_and_receivers_deliver_each_message_exactly_once():
    ch = ApplyChannel()
    n_senders, per_sender = 4, 300
    received: list = []
    lock = threading.Lock()
    sent_ok: list[bool] = []

    def send(s: int) -> None:
        for i in range(per_sender):
            ok = ch.put((s, i))
            with lock:
                sent_ok.append(ok)

    def receive() -> None:
        while True:
            try:
                item = ch.get()
            except ChannelClosed:
                return
            with lock:
                received.append(item)

    receivers = [threading.Thread(target=receive, daemon=True) for _ in range(3)]
    senders = [threading.Thread(target=send, args=(s,), daemon=True) for s in range(n_senders)]
    for t in receivers + senders:
        t.start()
    for t in senders:
        t.join(60)
    assert not any(t.is_alive() for t in senders)
    ch.close()
    for t in receivers:
        t.join(5)
    assert all(sent_ok) and len(sent_ok) == n_senders * per_sender
    assert sorted(received) == sorted((s, i) for s in range(n_senders) for i in range(per_sender))
