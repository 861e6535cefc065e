"""Hostile toy: the bundled Raft, except that a peer that first leads a term >= 3
calls ``sys.exit(5)`` in the thread that won the election (``SystemExit`` in a
thread ends that thread, not the process)."""

from __future__ import annotations

import sys

from raft.reference import raft as reference


class Raft(reference.Raft):
    def _become_leader(self) -> None:
        super()._become_leader()
        if self.term < 3:
            return
        sys.exit(5)


def make(peers, me, persister, apply_ch) -> Raft:
    return Raft(peers, me, persister, apply_ch)
