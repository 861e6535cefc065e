"""Individual RPC events, bounded and compact: the first ``head`` and the last ``tail``.

Why columns of :mod:`array` rather than a tuple per event: a test makes
thousands of RPCs and pytest keeps every test's context until the session
ends, so the timeline must cost a few MB at most.  A tuple per event costs
~200 bytes (the tuple, its float, its ints); a slot here costs 29 (time,
order, caller, callee, method code, outcome and flags, bytes), allocated once
for ``head + tail`` slots: ~290 KB per test, whatever its length.

No lock (a lock would be a simulated one under ``--sim`` and change the
schedule): each event takes a unique slot number from :func:`itertools.count`,
atomic under the GIL, so two callers never write the same slot at once; the
reader sorts the written slots by their order number.  :attr:`taken` (for the
"cut" note) may miss a concurrent writer's event in real time.
"""

from __future__ import annotations

import itertools
from array import array
from typing import Any

OUTCOMES = ("sent", "dropped", "unreachable", "replied", "reply-lost", "failed")
_OUTCOME_CODES = {name: code for code, name in enumerate(OUTCOMES)}
_STALE = 0x80  # flag: the caller's end belongs to a crashed instance
_NO_PEER = -1
_FAILED = _OUTCOME_CODES["failed"]  # an outcome this version does not know
MAX_METHODS = 1_000  # distinct method names kept (a hostile Raft may invent any number)...
MAX_NAME = 80  # ...each cut to this many characters
_OTHER = 0xFFFF  # the code of every method after MAX_METHODS


class RpcRing:
    """The kept RPC events of one test (see the module docstring)."""

    def __init__(self, head: int, tail: int) -> None:
        self.head, self.tail = head, tail
        self._slots = itertools.count()
        self.taken = 0  # events offered so far
        self._codes: dict[str, int] = {}
        self._names: list[str] = []
        self._cols: tuple[array[Any], ...] | None = None

    def allocate(self) -> None:
        """Allocate the columns now (before the traffic starts), not on the first event."""
        if self._cols is None:
            size = self.head + self.tail
            self._cols = (array("q", [-1]) * size, array("d", bytes(8 * size)),
                          array("b", bytes(size)), array("b", bytes(size)),
                          array("H", bytes(2 * size)), array("B", bytes(size)),
                          array("q", bytes(8 * size)))

    def add(self, seq: int, t: float, caller: int, callee: Any, method: str, outcome: str,
            nbytes: int, stale: bool) -> None:
        if self._cols is None:
            self.allocate()
        seqs, ts, callers, callees, methods, flags, sizes = self._cols  # type: ignore[misc]
        n = next(self._slots)
        if n >= self.taken:
            self.taken = n + 1
        slot = n if n < self.head else self.head + (n - self.head) % self.tail
        code = self._codes.get(method)
        ts[slot] = t
        methods[slot] = self._code(method) if code is None else code
        flags[slot] = _OUTCOME_CODES.get(outcome, _FAILED) | (_STALE if stale else 0)
        sizes[slot] = nbytes
        try:
            callers[slot] = caller
        except (TypeError, OverflowError):  # not a peer index (no end the tester made)
            callers[slot] = _NO_PEER
        try:
            callees[slot] = callee
        except (TypeError, OverflowError):
            callees[slot] = _NO_PEER
        seqs[slot] = seq  # last: a slot with seq -1 was never written

    def _code(self, method: str) -> int:
        name = method if len(method) <= MAX_NAME else method[:MAX_NAME - 3] + "..."
        code = self._codes.get(name)
        if code is not None:
            return code
        if len(self._names) >= MAX_METHODS:
            return _OTHER
        code = self._codes.setdefault(name, len(self._names))
        if code == len(self._names):
            self._names.append(name)
        return code

    @property
    def cut(self) -> int:
        """How many events were dropped (those between the first and the last kept)."""
        return max(0, self.taken - self.head - self.tail)

    def items(self) -> list[tuple[int, float, int | None, int | None, str, str, int, bool]]:
        """The kept events in recording order: (seq, t, caller, callee, method, outcome,
        bytes, stale)."""
        if self._cols is None:
            return []
        seqs, ts, callers, callees, methods, flags, sizes = self._cols
        out = []
        for slot in range(min(self.taken, self.head + self.tail)):
            seq = seqs[slot]
            if seq < 0:
                continue
            code = methods[slot]
            method = self._names[code] if code < len(self._names) else "(other methods)"
            out.append((seq, ts[slot], None if callers[slot] < 0 else callers[slot],
                        None if callees[slot] < 0 else callees[slot], method,
                        OUTCOMES[flags[slot] & ~_STALE], sizes[slot], bool(flags[slot] & _STALE)))
        out.sort()
        return out

    def clear(self) -> None:
        self._cols = None
        self.taken = 0
        self._slots = itertools.count()
