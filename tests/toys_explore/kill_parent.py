"""Hostile toy: the bundled Raft, except that a peer that first leads a term >= 3 sends
SIGKILL to its parent process (explore's worker, whichever process forked the run)."""

from __future__ import annotations

import os
import signal

from raft.reference import raft as reference


class Raft(reference.Raft):
    def _become_leader(self) -> None:
        super()._become_leader()
        if self.term < 3:
            return
        os.kill(os.getppid(), signal.SIGKILL)


def make(peers, me, persister, apply_ch) -> Raft:
    return Raft(peers, me, persister, apply_ch)
