"""Hostile toy: the bundled Raft, except that a peer that first leads a term >= 3
ends its process with ``os._exit(0)``: a clean exit status, yet the process ended
in the middle of a run."""

from __future__ import annotations

import os

from raft.reference import raft as reference


class Raft(reference.Raft):
    def _become_leader(self) -> None:
        super()._become_leader()
        if self.term < 3:
            return
        os._exit(0)


def make(peers, me, persister, apply_ch) -> Raft:
    return Raft(peers, me, persister, apply_ch)
