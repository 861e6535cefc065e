"""Part 2C's CPU: the bundled Raft spares the wake-ups that find nothing to do.

In real time a Python thread's wake-up costs more CPU than most decisions it
wakes for, and 2C commits thousands of entries.  So the reference Raft, in real
time only, wakes its replicator only when a follower has something to be sent
sooner than it planned to look.  Checked here in simulated time on the real-time
paths (deterministic for a seed): the graded churn test still passes and switches
threads less than with every notify put back.  And persisting a long log makes one
buffer of the state's size, not pickle's doubling ones (their holes in the C heap
were most of the churn tests' peak memory).
"""

from __future__ import annotations

import random

import pytest


def _replicator_scans(test_fn, spare: bool) -> tuple[int, int]:  # noqa: ANN001
    """(replicator scans, commits) of a graded test in simulated time on the real-time
    paths; ``spare=False`` puts back every notify the reference spares."""
    import raft.reference.raft as reference
    from labtests.driver import run_graded

    init, next_send = reference.Raft.__init__, reference.Raft._next_send
    scans = [0]

    def eager_init(self, *args, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
        init(self, *args, **kwargs)
        self._lazy = False  # every notify where it was (its threads have not run yet)

    def counting_next_send(self, p: int):  # noqa: ANN001, ANN202
        scans[0] += 1  # one call per follower per scan of the replicator
        return next_send(self, p)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(reference, "real_threading", lambda: True)
        mp.setattr(reference.Raft, "_next_send", counting_next_send)
        if not spare:
            mp.setattr(reference.Raft, "__init__", eager_init)
        result = run_graded(test_fn, seed=3)
    assert result.figures is not None  # passed
    return scans[0], result.figures["commits"]


def test_spared_wake_ups_cut_the_replicator_scans_of_the_churn_test():
    pytest.importorskip("greenlet")
    from labtests import test_2c

    spared, commits = _replicator_scans(test_2c.test_reliable_churn_2c, True)
    eager, eager_commits = _replicator_scans(test_2c.test_reliable_churn_2c, False)
    assert commits > 100 and eager_commits > 100
    assert spared / commits < 0.85 * eager / eager_commits, (spared, commits, eager,
                                                             eager_commits)


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
