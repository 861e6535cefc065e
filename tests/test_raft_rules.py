"""Unit tests of Raft's pure decision functions and of the snapshot-offset log.

No threads, no network, no clock: each case is a handful of plain values.
"""

from __future__ import annotations

import pytest

from raft.reference import rules
from raft.reference.log import RaftLog, decode_state, encode_state


def make_log(terms: list[int], base_index: int = 0, base_term: int = 0) -> RaftLog:
    """A log whose entries after ``base_index`` have ``terms`` (commands are 'c<index>')."""
    log = RaftLog(base_index, base_term)
    for k, t in enumerate(terms):
        log.append(t, f"c{base_index + 1 + k}")
    return log


# ----------------------------------------------------------------- the log


def test_log_indexing_without_snapshot():
    log = make_log([1, 1, 2])
    assert (log.last_index, log.last_term) == (3, 2)
    assert [log.term_at(i) for i in range(5)] == [0, 1, 1, 2, None]
    assert log.command_at(2) == "c2"
    assert log.slice(2) == [(1, "c2"), (2, "c3")]
    assert log.slice(1, 3) == [(1, "c1"), (1, "c2")]


def test_log_indexing_with_snapshot_offset():
    log = make_log([3, 3, 4], base_index=10, base_term=2)
    assert (log.last_index, log.last_term) == (13, 4)
    assert log.term_at(9) is None
    assert log.term_at(10) == 2
    assert log.term_at(11) == 3
    assert log.term_at(14) is None
    assert log.slice(12) == [(3, "c12"), (4, "c13")]


def test_log_compact_keeps_suffix_and_reset_drops_all():
    log = make_log([1, 1, 2, 2])
    log.compact_to(2)
    assert (log.base_index, log.base_term, log.last_index) == (2, 1, 4)
    assert log.slice(3) == [(2, "c3"), (2, "c4")]
    log.compact_to(4)
    assert (log.base_index, log.base_term, log.last_index, log.last_term) == (4, 2, 4, 2)
    log.reset(9, 5)
    assert (log.base_index, log.base_term, log.last_index, log.last_term) == (9, 5, 9, 5)


def test_log_truncate_and_extend():
    log = make_log([1, 1, 1], base_index=5, base_term=1)
    log.truncate_from(7)
    assert log.last_index == 6
    log.extend([(2, "x"), (2, "y")])
    assert log.last_index == 8 and log.term_at(8) == 2 and log.command_at(7) == "x"


def test_log_term_boundaries():
    log = make_log([1, 2, 2, 2, 4], base_index=0)
    assert log.first_index_of_term(4) == 2
    assert log.first_index_of_term(2) == 2
    assert log.first_index_of_term(1) == 1
    assert log.last_index_of_term(2) == 4
    assert log.last_index_of_term(3) is None
    assert log.last_index_of_term(4) == 5
    snap = make_log([3, 3], base_index=7, base_term=3)
    assert snap.first_index_of_term(9) == 8  # never reaches into the snapshot
    assert snap.last_index_of_term(3) == 9
    assert make_log([], base_index=7, base_term=3).last_index_of_term(3) == 7


def test_state_encoding_roundtrip_and_size():
    log = make_log([], base_index=40, base_term=3)
    for i in range(25):
        log.append(7, (1 << 62) + i)
    data = encode_state(7, 2, log)
    term, voted, back = decode_state(data)
    assert (term, voted, back.base_index, back.base_term) == (7, 2, 40, 3)
    assert back.entries == log.entries
    assert len(data) < 600  # 2D requires < 2000 bytes with ~20 entries


# --------------------------------------------------------------- elections


def test_majority():
    assert [rules.majority(n) for n in (1, 2, 3, 4, 5, 7)] == [1, 2, 2, 3, 3, 4]


@pytest.mark.parametrize(
    "mine, cand, ok",
    [
        ((5, 3), (5, 3), True),  # identical
        ((5, 3), (6, 3), True),  # same term, longer
        ((5, 3), (4, 3), False),  # same term, shorter
        ((5, 3), (1, 4), True),  # higher last term wins regardless of length
        ((5, 3), (9, 2), False),  # lower last term loses regardless of length
        ((0, 0), (0, 0), True),  # both empty
    ],
)
def test_log_up_to_date(mine, cand, ok):
    assert rules.log_up_to_date(*mine, *cand) is ok


def test_grant_vote_at_most_one_candidate_per_term():
    assert rules.grant_vote(rules.NO_VOTE, 2, True)
    assert rules.grant_vote(2, 2, True)  # the first reply may have been lost
    assert not rules.grant_vote(1, 2, True)
    assert not rules.grant_vote(rules.NO_VOTE, 2, False)


# ----------------------------------------------------------- AppendEntries


def test_check_prev_match_and_empty_log():
    log = make_log([1, 1, 2])
    assert rules.check_prev(log, 0, 0).ok
    assert rules.check_prev(log, 3, 2).ok
    assert rules.check_prev(log, 2, 1).ok


def test_check_prev_too_short_reports_length():
    log = make_log([1, 1])
    r = rules.check_prev(log, 5, 1)
    assert not r.ok
    assert (r.conflict_term, r.conflict_index) == (rules.NO_TERM, 3)


def test_check_prev_conflict_reports_first_index_of_term():
    log = make_log([1, 2, 2, 2])
    r = rules.check_prev(log, 4, 3)
    assert not r.ok
    assert (r.conflict_term, r.conflict_index) == (2, 2)


def test_check_prev_inside_snapshot_is_a_match():
    log = make_log([5], base_index=10, base_term=4)
    assert rules.check_prev(log, 3, 1).ok
    assert rules.check_prev(log, 10, 4).ok
    r = rules.check_prev(log, 11, 6)
    assert (r.ok, r.conflict_term, r.conflict_index) == (False, 5, 11)


def test_merge_point_appends_new_entries():
    log = make_log([1, 1])
    assert rules.merge_point(log, 2, [(1, "a"), (1, "b")]) == (0, 0)
    assert rules.merge_point(log, 1, [(1, "c2"), (2, "b")]) == (0, 1)


def test_merge_point_ignores_stale_duplicate():
    # A late AppendEntries carrying a prefix of what we have must not truncate.
    log = make_log([1, 1, 1, 1])
    assert rules.merge_point(log, 1, [(1, "c2")]) == (0, 1)
    assert rules.merge_point(log, 0, []) == (0, 0)


def test_merge_point_truncates_at_first_conflict():
    log = make_log([1, 1, 1, 1])
    assert rules.merge_point(log, 1, [(1, "c2"), (3, "x"), (3, "y")]) == (3, 1)


def test_merge_point_skips_entries_covered_by_snapshot():
    log = make_log([2, 2], base_index=10, base_term=2)
    entries = [(1, "c9"), (2, "c10"), (2, "c11"), (2, "c12"), (3, "new")]
    assert rules.merge_point(log, 8, entries) == (0, 4)
    assert rules.merge_point(log, 5, [(1, "c6")]) == (0, 1)


def test_follower_commit():
    assert rules.follower_commit(2, 5, 7) == 5
    assert rules.follower_commit(2, 9, 7) == 7  # only what this RPC verified
    assert rules.follower_commit(6, 9, 4) == 6  # never backwards


# ---------------------------------------------------------- leader commit


def test_leader_commit_majority_of_current_term():
    log = make_log([1, 2, 2, 2])
    assert rules.leader_commit(0, 2, [4, 3, 1], log) == 3
    assert rules.leader_commit(0, 2, [4, 4, 3, 1, 0], log) == 3
    assert rules.leader_commit(3, 2, [4, 3, 0], log) == 3


def test_leader_commit_figure8_old_term_not_counted():
    # Leader of term 4 holds entries of term 2 replicated on a majority: not committable.
    log = make_log([1, 2, 4])
    assert rules.leader_commit(1, 4, [3, 2, 2, 1, 1], log) == 1
    # Once an entry of term 4 reaches a majority, everything below commits with it.
    assert rules.leader_commit(1, 4, [3, 3, 3, 1, 1], log) == 3


def test_leader_commit_even_cluster_and_single():
    log = make_log([1, 1, 1])
    assert rules.leader_commit(0, 1, [3, 2, 1, 0], log) == 1  # 3 of 4 needed
    assert rules.leader_commit(0, 1, [3, 2, 2, 0], log) == 2
    assert rules.leader_commit(0, 1, [3], log) == 3


def test_leader_commit_inside_snapshot_stays():
    log = make_log([5], base_index=10, base_term=4)
    assert rules.leader_commit(10, 5, [11, 8, 10], log) == 10


# -------------------------------------------------------------- fast backup


def test_backup_leader_has_conflict_term():
    leader = make_log([1, 1, 2, 2, 3])
    assert rules.next_index_after_conflict(leader, 2, 2, 0) == 5


def test_backup_leader_lacks_conflict_term():
    leader = make_log([1, 1, 3, 3])
    assert rules.next_index_after_conflict(leader, 2, 3, 0) == 3


def test_backup_follower_log_too_short():
    leader = make_log([1, 1, 1, 1, 1])
    assert rules.next_index_after_conflict(leader, rules.NO_TERM, 3, 0) == 3


def test_backup_bounds():
    leader = make_log([1, 1, 1])
    assert rules.next_index_after_conflict(leader, rules.NO_TERM, 2, 2) == 3  # above match
    assert rules.next_index_after_conflict(leader, rules.NO_TERM, 9, 0) == 4  # within log
    assert rules.next_index_after_conflict(leader, rules.NO_TERM, 0, 0) == 1
    snap = make_log([3], base_index=10, base_term=2)
    # A term only present in the snapshot's last entry: resume just after it.
    assert rules.next_index_after_conflict(snap, 2, 4, 0) == 11
    # A term the leader never had, below the snapshot: the leader will send the snapshot.
    assert rules.next_index_after_conflict(snap, 1, 3, 0) == 3


def test_state_encoding_reuses_blocks_and_tracks_truncation():
    from raft.reference.log import BLOCK

    log = make_log([1] * (2 * BLOCK + 10))
    first = encode_state(1, 0, log)
    assert decode_state(first)[2].entries == log.entries
    log.truncate_from(BLOCK + 5)  # inside the second block: it must be re-pickled
    log.extend([(2, f"n{i}") for i in range(BLOCK)])
    term, voted, back = decode_state(encode_state(2, 1, log))
    assert (term, voted) == (2, 1)
    assert back.entries == log.entries
    assert back.term_at(BLOCK + 5) == 2 and back.command_at(BLOCK + 4) == f"c{BLOCK + 4}"
    back.compact_to(BLOCK + 7)  # compaction shifts every block
    again = decode_state(encode_state(2, 1, back))[2]
    assert (again.base_index, again.base_term) == (BLOCK + 7, 2)
    assert again.entries == back.entries
