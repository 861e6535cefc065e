"""The Raft log with a snapshot offset, and the compact encoding of persistent state.

Raft indexes start at 1 and never restart, but after a snapshot the entries up to
``base_index`` are gone.  Keeping that arithmetic in one small class is what stops
off-by-one bugs from spreading through the protocol code.  The class is plain data:
no locks, no threads (the owner's lock protects it).

An entry is the tuple ``(term, command)``: tuples pickle compactly, and both the
persisted state (< 2000 bytes in 2D) and the RPC byte budget care.

Raft persists after every change to its log, and re-pickling thousands of
entries each time made persistence the largest CPU cost of the churn tests.  So
the log keeps the pickled form of each full block of ``BLOCK`` entries, and
drops only the blocks that a truncation or compaction touches.

The persisted bytes are built with one ``bytes.join`` (a small pickled header,
the blocks, the pickled tail), so each persist makes one buffer of the final
size.  Pickling the blocks inside one tuple grew pickle's buffer by doubling
instead: four or five large short-lived buffers per persist, whose holes in the
C heap were most of the 2C churn tests' peak memory (a 5-peer cluster at 2 500
commits: 33-36 MB peak before, 27 MB after, the C heap 20 MB -> 10 MB).
"""

from __future__ import annotations

import pickle
from typing import Any

Entry = tuple[int, Any]

BLOCK = 64  # entries per cached pickled block (the tail, re-pickled each time, stays small)
_PROTOCOL = pickle.HIGHEST_PROTOCOL


class RaftLog:
    """Entries ``base_index+1 .. last_index``; the snapshot covers ``1 .. base_index``."""

    __slots__ = ("base_index", "base_term", "entries", "_blocks")

    def __init__(self, base_index: int = 0, base_term: int = 0,
                 entries: list[Entry] | None = None) -> None:
        self.base_index = base_index
        self.base_term = base_term
        # Mutate only through the methods below: they keep ``_blocks`` valid.
        self.entries: list[Entry] = list(entries) if entries else []
        # _blocks[k] is the pickle of entries[k*BLOCK:(k+1)*BLOCK].
        self._blocks: list[bytes] = []

    # -- queries -------------------------------------------------------------

    @property
    def last_index(self) -> int:
        return self.base_index + len(self.entries)

    @property
    def last_term(self) -> int:
        return self.entries[-1][0] if self.entries else self.base_term

    def term_at(self, index: int) -> int | None:
        """The term of entry ``index``; the snapshot's term at ``base_index``; else None."""
        if index == self.base_index:
            return self.base_term
        if index < self.base_index or index > self.last_index:
            return None
        return self.entries[index - self.base_index - 1][0]

    def command_at(self, index: int) -> Any:
        """The command of a live entry (``base_index < index <= last_index``)."""
        return self.entries[index - self.base_index - 1][1]

    def slice(self, start: int, stop: int | None = None) -> list[Entry]:
        """Entries ``start .. stop-1`` (``stop`` defaults to the end); ``start > base_index``."""
        lo = start - self.base_index - 1
        if stop is None:
            return self.entries[lo:]
        return self.entries[lo:stop - self.base_index - 1]

    def first_index_of_term(self, index: int) -> int:
        """The first index holding the same term as ``index`` (not below ``base_index+1``).

        Used by a follower to tell the leader where its conflicting term starts.
        """
        term = self.term_at(index)
        i = index
        while i - 1 > self.base_index and self.entries[i - 1 - self.base_index - 1][0] == term:
            i -= 1
        return i

    def last_index_of_term(self, term: int) -> int | None:
        """The last index whose entry has ``term``, or None (used by the leader to back up)."""
        for k in range(len(self.entries) - 1, -1, -1):
            t = self.entries[k][0]
            if t == term:
                return self.base_index + 1 + k
            if t < term:
                return None
        if self.base_term == term and self.base_index > 0:
            return self.base_index
        return None

    # -- updates -------------------------------------------------------------

    def append(self, term: int, command: Any) -> int:
        self.entries.append((term, command))
        return self.last_index

    def truncate_from(self, index: int) -> None:
        """Drop entries ``index ..``; ``index > base_index``."""
        pos = index - self.base_index - 1
        del self.entries[pos:]
        del self._blocks[pos // BLOCK:]

    def extend(self, entries: list[Entry]) -> None:
        self.entries.extend(entries)

    def compact_to(self, index: int) -> None:
        """Forget entries up to ``index`` (which must be in the log) and keep the suffix."""
        term = self.term_at(index)
        assert term is not None, (index, self.base_index, self.last_index)
        del self.entries[:index - self.base_index]
        self._blocks = []
        self.base_index = index
        self.base_term = term

    def reset(self, index: int, term: int) -> None:
        """Replace the whole log by a snapshot ending at ``(index, term)``."""
        self.entries = []
        self._blocks = []
        self.base_index = index
        self.base_term = term

    def pickled(self) -> tuple[list[bytes], list[Entry]]:
        """(pickles of the full blocks, the remaining entries): the log's persistent form."""
        full = len(self.entries) // BLOCK
        while len(self._blocks) < full:
            k = len(self._blocks)
            self._blocks.append(pickle.dumps(self.entries[k * BLOCK:(k + 1) * BLOCK], _PROTOCOL))
        return self._blocks[:full], self.entries[full * BLOCK:]

    @classmethod
    def unpickled(cls, base_index: int, base_term: int, blocks: list[bytes],
                  tail: list[Entry]) -> RaftLog:
        """Inverse of :meth:`pickled`."""
        log = cls(base_index, base_term)
        for block in blocks:
            log.entries.extend(pickle.loads(block))
        log.entries.extend(tail)
        log._blocks = list(blocks)
        return log

    def __repr__(self) -> str:
        return f"RaftLog(base={self.base_index}/{self.base_term}, last={self.last_index})"


def encode_state(term: int, voted_for: int, log: RaftLog) -> bytes:
    """Persistent state: a pickled header, then the log's pickled blocks, then its
    pickled tail (compact: no class names, no field names; see the module docstring).

    The header is ``(term, voted_for, base_index, base_term, block lengths, tail
    length)``; the lengths say where the parts after it lie.
    """
    blocks, tail = log.pickled()
    tail_bytes = pickle.dumps(tail, _PROTOCOL)
    head = pickle.dumps((term, voted_for, log.base_index, log.base_term,
                         [len(b) for b in blocks], len(tail_bytes)), _PROTOCOL)
    return b"".join([head, *blocks, tail_bytes])


def decode_state(data: bytes) -> tuple[int, int, RaftLog]:
    """Inverse of :func:`encode_state`: ``(term, voted_for, log)``."""
    # pickle.loads reads one pickle and ignores the bytes after it: the header.
    term, voted_for, base_index, base_term, lengths, tail_length = pickle.loads(data)
    pos = len(data) - sum(lengths) - tail_length
    blocks = []
    for n in lengths:
        blocks.append(data[pos:pos + n])
        pos += n
    tail = pickle.loads(data[pos:])
    return term, voted_for, RaftLog.unpickled(base_index, base_term, blocks, tail)
