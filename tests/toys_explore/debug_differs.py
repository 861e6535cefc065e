"""Hostile toy: the bundled Raft, except that a peer that first leads a term >= 3 ends its
process with ``os._exit(3)`` -- only while debug logging is off.  Its replay (which logs)
cannot show what exploring (which does not) found: explore must say so, not print a
replay command that shows something else."""

from __future__ import annotations

import os

from raft import debuglog
from raft.reference import raft as reference


class Raft(reference.Raft):
    def _become_leader(self) -> None:
        super()._become_leader()
        if self.term >= 3 and not debuglog.enabled():
            os._exit(3)


def make(peers, me, persister, apply_ch) -> Raft:
    return Raft(peers, me, persister, apply_ch)
