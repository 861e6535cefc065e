"""Raft's protocol decisions as small pure functions (Figure 2 of the paper).

Each function answers one question -- grant a vote? do the logs match at the
previous entry? where do new entries start to differ? how far may the commit
index move? -- from plain values, so a unit test can drive every case without
threads, a network or a clock (the etcd-raft lesson).  ``raft.reference.raft`` is
only the threaded shell that gathers the inputs under its lock and applies the
answers.
"""

from __future__ import annotations

from dataclasses import dataclass

from .log import Entry, RaftLog

NO_VOTE = -1
NO_TERM = -1


def majority(n: int) -> int:
    """The number of servers (including oneself) that forms a quorum of ``n``."""
    return n // 2 + 1


def log_up_to_date(my_last_index: int, my_last_term: int,
                   cand_last_index: int, cand_last_term: int) -> bool:
    """Election restriction (section 5.4.1): is the candidate's log at least as new as mine?"""
    if cand_last_term != my_last_term:
        return cand_last_term > my_last_term
    return cand_last_index >= my_last_index


def grant_vote(voted_for: int, candidate: int, up_to_date: bool) -> bool:
    """Vote for ``candidate`` in the current term (the caller has already adopted its term)?

    At most one candidate per term; re-granting to the same candidate is allowed
    because its first reply may have been lost.
    """
    return voted_for in (NO_VOTE, candidate) and up_to_date


@dataclass(frozen=True)
class PrevCheck:
    """The outcome of the AppendEntries consistency check.

    On failure ``conflict_term`` is the follower's term at ``prev_index``
    (``NO_TERM`` if its log is too short) and ``conflict_index`` is the first index
    of that term, or the follower's log length + 1 when it is too short.
    """

    ok: bool
    conflict_term: int = NO_TERM
    conflict_index: int = 0


def check_prev(log: RaftLog, prev_index: int, prev_term: int) -> PrevCheck:
    """Does ``log`` contain an entry at ``prev_index`` whose term is ``prev_term``?

    An index inside our snapshot counts as a match: snapshots only hold committed
    entries, and committed entries agree with every later leader's log.
    """
    if prev_index <= log.base_index:
        return PrevCheck(True)
    if prev_index > log.last_index:
        return PrevCheck(False, NO_TERM, log.last_index + 1)
    term = log.term_at(prev_index)
    if term == prev_term:
        return PrevCheck(True)
    return PrevCheck(False, term, log.first_index_of_term(prev_index))


def merge_point(log: RaftLog, prev_index: int, entries: list[Entry]) -> tuple[int, int]:
    """Where accepted ``entries`` (starting at ``prev_index + 1``) change ``log``.

    Returns ``(truncate_at, skip)``: drop the log from ``truncate_at`` (0 = drop
    nothing) and append ``entries[skip:]``.  Entries already present with the same
    term are kept, so a late, duplicated AppendEntries never truncates entries
    that a newer one appended (Figure 2, receiver rule 3).  Entries at or below the
    snapshot are skipped.
    """
    skip = 0
    if prev_index < log.base_index:
        skip = min(log.base_index - prev_index, len(entries))
    last = log.last_index
    for k in range(skip, len(entries)):
        index = prev_index + 1 + k
        if index > last:
            return 0, k
        if log.term_at(index) != entries[k][0]:
            return index, k
    return 0, len(entries)


def follower_commit(commit_index: int, leader_commit: int, last_new_index: int) -> int:
    """Figure 2 receiver rule 5: commit up to what the leader has committed *and* we verified."""
    return max(commit_index, min(leader_commit, last_new_index))


def leader_commit(commit_index: int, current_term: int, match_indexes: list[int],
                  log: RaftLog) -> int:
    """The highest index stored on a majority, if it is from the current term (Figure 8).

    ``match_indexes`` has one value per server, the leader's own last index included.
    Entries of older terms are committed only indirectly, by a current-term entry above them.
    """
    ranked = sorted(match_indexes, reverse=True)
    candidate = ranked[majority(len(ranked)) - 1]
    if candidate > commit_index:  # MUTANT: any term's entry commits by count
        return candidate
    return commit_index


def next_index_after_conflict(log: RaftLog, conflict_term: int, conflict_index: int,
                              match_index: int) -> int:
    """Fast backup: the leader's next guess for a follower that rejected an AppendEntries.

    If the leader holds ``conflict_term``, resume just after its last entry of that
    term; otherwise skip the follower's whole conflicting term (or jump to the end
    of its short log).  Never go at or below what is known to match, nor beyond
    the leader's log.
    """
    nxt = conflict_index
    if conflict_term != NO_TERM:
        last = log.last_index_of_term(conflict_term)
        if last is not None:
            nxt = last + 1
    return max(match_index + 1, min(nxt, log.last_index + 1), 1)
