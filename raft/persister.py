"""The persister: where a Raft peer keeps the state that must survive a crash.

Semantics follow the 2023 lab: two byte strings, ``raftstate`` and ``snapshot``,
saved together atomically by :meth:`Persister.save`.  Bytes are immutable in
Python, so "storing a clone" is simply storing the object: no caller can change
what was saved.  The harness relies on :meth:`Persister.copy` to isolate a
crashed instance (which keeps writing into its old persister) from its restarted
successor.
"""

from __future__ import annotations

import threading


def _as_bytes(data: bytes | bytearray | memoryview | None, what: str) -> bytes:
    if data is None:
        return b""
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise TypeError(f"Persister.save: {what} must be bytes (or None), got {type(data).__name__}")


class Persister:
    """Thread-safe holder of a peer's persisted Raft state and snapshot."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._raftstate = b""
        self._snapshot = b""

    def copy(self) -> Persister:
        """Return a new persister holding the same state and snapshot."""
        with self._lock:
            twin = Persister()
            twin._raftstate = self._raftstate
            twin._snapshot = self._snapshot
            return twin

    def save(self, raftstate: bytes | None, snapshot: bytes | None) -> None:
        """Atomically replace both the Raft state and the snapshot.

        Pass ``None`` as the snapshot while you have none; once the log has been
        trimmed, pass the current snapshot every time, or it is lost.
        """
        state = _as_bytes(raftstate, "raftstate")
        snap = _as_bytes(snapshot, "snapshot")
        with self._lock:
            self._raftstate = state
            self._snapshot = snap

    def read_raft_state(self) -> bytes:
        """The last saved Raft state (``b""`` if nothing was saved)."""
        with self._lock:
            return self._raftstate

    def raft_state_size(self) -> int:
        with self._lock:
            return len(self._raftstate)

    def read_snapshot(self) -> bytes:
        """The last saved snapshot (``b""`` if none)."""
        with self._lock:
            return self._snapshot

    def snapshot_size(self) -> int:
        with self._lock:
            return len(self._snapshot)
