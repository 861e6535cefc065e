"""Toy: the bundled Raft plus a debug-log call whose format does not fit its arguments
(``%d`` given ``None``), as a leader of a term >= 3 -- a call that only runs with
logging on, where it used to raise in the Raft's thread."""

from __future__ import annotations

from raft.debuglog import dlog
from raft.reference import raft as reference


class Raft(reference.Raft):
    def _become_leader(self) -> None:
        super()._become_leader()
        if self.term >= 3:
            dlog("LEAD", self.me, "conflict at %d", None)


def make(peers, me, persister, apply_ch) -> Raft:
    return Raft(peers, me, persister, apply_ch)
