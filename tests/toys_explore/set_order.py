"""Toy: the bundled Raft, except that its election timeouts depend on the order in
which a set of strings iterates -- which Python salts per process (``PYTHONHASHSEED``)
-- and a peer that first leads a term >= 3 ends its process (``os._exit(3)``, as
exit3.py), so every schedule is a finding.  Its run, and so its debug log, differ
from one hash seed to another: a replay in a fresh process matches the run explore
found only if both ran under the same hash seed."""

from __future__ import annotations

import os
import time

from raft.reference import raft as reference


class Raft(reference.Raft):
    def _reset_election_timer(self) -> None:
        super()._reset_election_timer()
        names = {f"peer-{i}" for i in range(len(self.peers))}
        position = list(names).index(f"peer-{self.me}")
        self.election_deadline = time.monotonic() + 0.15 + 0.04 * position

    def _become_leader(self) -> None:
        super()._become_leader()
        if self.term >= 3:
            os._exit(3)


def make(peers, me, persister, apply_ch) -> Raft:
    return Raft(peers, me, persister, apply_ch)
