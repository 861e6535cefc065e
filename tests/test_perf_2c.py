"""Part 2C's CPU: the bundled Raft spares the wake-ups that find nothing to do.

In real time a Python thread's wake-up costs more CPU than most decisions it
wakes for, and 2C commits thousands of entries.  So the reference Raft, in real
time only, (1) wakes its replicator only when a follower has something to be sent
sooner than it planned to look, and (2) hands a fresh commit straight to an apply
channel receiver already waiting, with a send that cannot block
(:meth:`raft.apply_channel.ApplyChannel.try_put`), instead of waking its applier.

Checked here: ``try_put`` never blocks and never queues; the hand-over keeps the
apply order exact against a receiver that dawdles (real threads, a one-peer
cluster committing as fast as it can); and in simulated time on the real-time
paths (deterministic for a seed) the graded churn test switches threads less
than with the spared wake-ups put back, while it still passes.
"""

from __future__ import annotations

import random
import threading
import time

import pytest

from raft.apply_channel import ApplyChannel, ChannelClosed
from raft.persister import Persister


def _receivers(ch: ApplyChannel) -> int:
    with ch._cond:  # noqa: SLF001 - the count of blocked receivers is internal
        return len(ch._receivers)  # noqa: SLF001


def test_try_put_without_a_waiting_receiver_sends_nothing_and_returns_at_once():
    ch = ApplyChannel()
    t0 = time.monotonic()
    assert ch.try_put("lost") is False
    assert time.monotonic() - t0 < 1.0
    assert ch.waiting_senders == 0  # not queued: a later receiver must not get it
    with pytest.raises(TimeoutError):
        ch.get(timeout=0.05)


def test_try_put_hands_over_to_the_waiting_receiver_and_not_after_close():
    ch = ApplyChannel()
    got: list = []
    t = threading.Thread(target=lambda: got.append(ch.get()), daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while _receivers(ch) == 0:
        assert time.monotonic() < deadline, "receiver never blocked"
        time.sleep(0.002)
    assert ch.try_put("m1") is True
    ch.close()  # the receive was complete when try_put returned
    t.join(5)
    assert got == ["m1"]
    assert ch.try_put("m2") is False
    with pytest.raises(ChannelClosed):
        ch.get()


def test_hand_over_keeps_the_apply_order_against_a_dawdling_receiver():
    """One peer commits each command at once, from the caller's thread: every commit
    races the applier thread and the hand-over.  The receiver sometimes waits (so
    commits are handed over), sometimes dawdles (so they pile up for the applier)."""
    from raft.reference.raft import make

    class CountingChannel(ApplyChannel):
        handed = 0

        def try_put(self, item):  # noqa: ANN001, ANN201
            ok = super().try_put(item)
            CountingChannel.handed += ok
            return ok

    ch = CountingChannel()
    rf = make([object()], 0, Persister(), ch)
    got: list[int] = []
    rng = random.Random(7)
    n = 400

    def receive() -> None:
        while len(got) < n:
            try:
                m = ch.get(timeout=30)
            except (ChannelClosed, TimeoutError):
                return
            got.append(m.command_index)
            if rng.random() < 0.3:
                time.sleep(rng.random() * 0.002)

    reader = threading.Thread(target=receive, daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while rf.get_state()[1] is False:  # a one-peer cluster elects itself
        assert time.monotonic() < deadline, "no leader"
        time.sleep(0.01)
    for k in range(n):
        index, _, ok = rf.start(k)
        assert ok and index == k + 1
        if rng.random() < 0.2:
            time.sleep(rng.random() * 0.002)
    reader.join(60)
    rf.kill()
    ch.close()
    assert got == list(range(1, n + 1))  # every index once, in order
    assert CountingChannel.handed > 0, "no commit was handed over: the fast path is dead"


def _switches(test_fn, spare: bool) -> int:  # noqa: ANN001
    """Thread switches of a graded test in simulated time on the real-time paths;
    ``spare=False`` puts back the wake-ups the reference spares."""
    import raft.reference.raft as reference
    from labtests.driver import run_graded

    init = reference.Raft.__init__

    def eager_init(self, *args, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
        init(self, *args, **kwargs)
        self._lazy = False  # every notify where it was (its threads have not run yet)
        self._try_put = None

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(reference, "real_threading", lambda: True)
        if not spare:
            mp.setattr(reference.Raft, "__init__", eager_init)
        result = run_graded(test_fn, seed=3)
    assert result.figures is not None  # passed
    return result.switches


def test_spared_wake_ups_cut_thread_switches_of_the_churn_test():
    pytest.importorskip("greenlet")
    from labtests import test_2c

    spared = _switches(test_2c.test_reliable_churn_2c, True)
    eager = _switches(test_2c.test_reliable_churn_2c, False)
    assert spared < 0.9 * eager, (spared, eager)


def test_persisting_a_long_log_makes_one_buffer_of_the_final_size():
    """encode_state joins the cached blocks once: its transient memory is about the
    result's size (pickling the blocks inside a tuple peaked at ~1.5x, through pickle's
    doubling buffers, whose holes were most of the churn tests' peak RSS)."""
    import tracemalloc

    from raft.reference.log import BLOCK, RaftLog, decode_state, encode_state

    log = RaftLog(40, 2)
    rng = random.Random(1)
    for _ in range(5000 + BLOCK // 2):
        log.append(3, rng.randrange(2**63))
    encode_state(4, 1, log)  # the blocks are pickled once and cached
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        data = encode_state(4, 1, log)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert peak < 1.3 * len(data), (peak, len(data))
    term, voted, back = decode_state(data)
    assert (term, voted, back.base_index, back.base_term) == (4, 1, 40, 2)
    assert back.entries == log.entries


@pytest.mark.parametrize("blocks, extra", [(0, 0), (0, 1), (1, -1), (1, 0), (1, 1), (2, 0),
                                           (2, 1)])
def test_persisted_state_round_trips_at_block_edges(blocks: int, extra: int) -> None:
    from raft.reference.log import BLOCK, RaftLog, decode_state, encode_state

    n = blocks * BLOCK + extra
    log = RaftLog(7, 5, [(6, f"c{i}") for i in range(n)])
    term, voted, back = decode_state(encode_state(9, -1, log))
    assert (term, voted, back.base_index, back.base_term, back.entries) == (
        9, -1, 7, 5, log.entries)
    back.append(9, "more")  # the decoded log keeps working (its cached blocks are valid)
    again = decode_state(encode_state(9, -1, back))[2]
    assert again.entries == log.entries + [(9, "more")]
