"""The timeline's bulk events (applies, samples, RPC counts, debug lines), in columns.

Why columns and not a tuple per event: the longest 2C test records tens of
thousands of them and its peak memory is the lab's (issue 19: at most 40 MB a
part).  A flat tuple per apply event cost ~170 bytes (the tuple, its time
float, its order int); a slot here costs 38: order (``q``), time (``d``), the
event's layout (``H``: kind, field names, how the values are stored), peer
(``i``), the first field when it is an int (``q``: an apply's index, an RPC
count), and one object reference for the rest (an apply's command: the very
object the tester's log holds, so it costs nothing more).  Nothing is formatted
here: :meth:`BulkRing.items` rebuilds each event as the recorder's flat tuple
when a bundle is written, the same values as were recorded.

Kept: the first ``head`` events and the last ``tail`` (a ring; none if ``tail``
is 0, as for the essential events), as before.  The
columns grow in chunks of :data:`CHUNK` slots, allocated on first use, so a short
test costs one chunk (~38 KB) and the longest at most ``head + tail`` slots.

No lock (a lock would be a simulated one under ``--sim`` and change the
schedule): each event takes a unique slot number from :func:`itertools.count`,
atomic under the GIL, so two writers never share a slot (short of one writer
being overtaken by ``tail`` others); a slot's order is written last, and a slot
whose order is still -1 is skipped by the reader.
"""

from __future__ import annotations

import itertools
from array import array
from typing import Any

CHUNK = 1_000  # slots allocated at once
_NO_PEER = -(2**31)  # the peer column's None
_PEER_MIN, _PEER_MAX = -(2**31) + 1, 2**31 - 1
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1

# A layout: (kind, field names, first field in the int column, peer among the objects,
# how many values the object column holds for the event).
Layout = tuple[str, tuple[str, ...], bool, bool, int]
Chunk = tuple["array[int]", "array[float]", "array[int]", "array[int]", "array[int]",
              list[Any]]


def _chunk() -> Chunk:
    return (array("q", [-1]) * CHUNK, array("d", bytes(8 * CHUNK)), array("H", bytes(2 * CHUNK)),
            array("i", bytes(4 * CHUNK)), array("q", bytes(8 * CHUNK)), [None] * CHUNK)


class BulkRing:
    """The kept bulk events of one test (see the module docstring)."""

    def __init__(self, head: int, tail: int) -> None:
        self.head, self.tail = head, tail
        self._slots = itertools.count()
        self.taken = 0  # events offered so far
        self._chunks: dict[int, Chunk] = {}
        self._codes: dict[tuple[str, tuple[str, ...], bool, bool], int] = {}
        self._layouts: list[Layout] = []

    def add(self, seq: int, t: float, kind: str, peer: int | None,
            fields: dict[str, Any]) -> None:
        """Keep one event: recording order ``seq``, time ``t``, its kind, peer and fields."""
        keys = tuple(fields)
        values = tuple(fields.values())
        first = values[0] if values else None
        xint = type(first) is int and _INT_MIN <= first <= _INT_MAX  # type: ignore[operator]
        pobj = peer is not None and not (type(peer) is int and _PEER_MIN <= peer <= _PEER_MAX)
        code = self._codes.get((kind, keys, xint, pobj))
        if code is None:
            code = self.layout(kind, keys, xint, pobj)
        rest = values[1:] if xint else values
        if pobj:
            rest = (peer, *rest)
        self.put(seq, t, code, None if pobj else peer, first if xint else 0,
                 rest[0] if len(rest) == 1 else (rest or None))

    @staticmethod
    def fits(peer: Any, x: Any) -> bool:
        """Whether ``peer`` and ``x`` go in their columns as they are (see :meth:`put`)."""
        return (type(peer) is int and _PEER_MIN <= peer <= _PEER_MAX
                and type(x) is int and _INT_MIN <= x <= _INT_MAX)

    def put(self, seq: int, t: float, code: int, peer: int | None, x: int, obj: Any) -> None:
        """Write one slot as it is stored: the layout's ``code`` (:meth:`layout`), the peer
        (None, or an int that fits: :meth:`fits`), the int column and the object column.
        The recorder's hot path (an apply) calls it directly with a layout it made once."""
        n = next(self._slots)
        if n >= self.taken:
            self.taken = n + 1
        if n < self.head:
            slot = n
        elif self.tail:
            slot = self.head + (n - self.head) % self.tail
        else:
            return  # no ring: only the first ``head`` are kept
        index, k = divmod(slot, CHUNK)
        cols = self._chunks.get(index)
        if cols is None:
            cols = self._chunks.setdefault(index, _chunk())  # a racing writer's is dropped
        seqs, ts, codes, peers, xs, objs = cols
        ts[k] = t
        codes[k] = code
        peers[k] = _NO_PEER if peer is None else peer
        xs[k] = x
        objs[k] = obj
        seqs[k] = seq  # last: a slot with order -1 was never written

    def layout(self, kind: str, keys: tuple[str, ...], xint: bool, pobj: bool) -> int:
        """The code of a layout: ``kind`` with fields ``keys``, the first in the int column
        (``xint``), the peer among the objects (``pobj``)."""
        nobj = len(keys) - xint + pobj
        code = self._codes.setdefault((kind, keys, xint, pobj), len(self._layouts))
        if code == len(self._layouts):
            self._layouts.append((kind, keys, xint, pobj, nobj))
        return code

    @property
    def cut(self) -> int:
        """How many events were dropped (those between the first and the last kept)."""
        return max(0, self.taken - self.head - self.tail)

    def __len__(self) -> int:
        return min(self.taken, self.head + self.tail)

    def items(self) -> list[tuple[Any, ...]]:
        """The kept events as the recorder's flat tuples ``(seq, t, kind, peer, field
        names, *field values)``, in no particular order (the recorder sorts)."""
        out: list[tuple[Any, ...]] = []
        layouts = self._layouts
        for seqs, ts, codes, peers, xs, objs in list(self._chunks.values()):
            for k in range(CHUNK):
                seq = seqs[k]
                if seq < 0:
                    continue
                kind, keys, xint, pobj, nobj = layouts[codes[k]]
                obj = objs[k]
                rest = () if nobj == 0 else (obj,) if nobj == 1 else obj
                if pobj:
                    peer, rest = rest[0], rest[1:]
                else:
                    peer = None if peers[k] == _NO_PEER else peers[k]
                if xint:
                    out.append((seq, ts[k], kind, peer, keys, xs[k], *rest))
                else:
                    out.append((seq, ts[k], kind, peer, keys, *rest))
        return out

    def clear(self) -> None:
        self._chunks = {}
        self.taken = 0
        self._slots = itertools.count()
