"""Toy: the bundled Raft, carrying a few megabytes of ballast per instance.

A harness that keeps a finished test's cluster alive keeps every earlier test's
ballast too: peak RSS then grows by the ballast of each test run before
(tests/test_perf_memory.py)."""

from __future__ import annotations

from raft.reference import raft as reference

BALLAST_BYTES = 4 * 1024 * 1024  # per Raft instance; written, so resident


class Raft(reference.Raft):
    def __init__(self, peers, me, persister, apply_ch) -> None:
        super().__init__(peers, me, persister, apply_ch)
        self.ballast = bytes([me % 251 + 1]) * BALLAST_BYTES


def make(peers, me, persister, apply_ch) -> Raft:
    return Raft(peers, me, persister, apply_ch)
