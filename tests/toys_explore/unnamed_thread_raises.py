"""Toy: the bundled Raft, except that a peer that first leads a term >= 3 starts an
unnamed thread that raises.  Python names it ``Thread-N (_boom)`` from a process-wide
counter: the finding must name it the same in every run and in a replay."""

from __future__ import annotations

import threading

from raft.reference import raft as reference


class Raft(reference.Raft):
    def _become_leader(self) -> None:
        super()._become_leader()
        if self.term >= 3:
            threading.Thread(target=self._boom, daemon=True).start()

    def _boom(self) -> None:
        raise RuntimeError("boom")


def make(peers, me, persister, apply_ch) -> Raft:
    return Raft(peers, me, persister, apply_ch)
