"""Mutant: ``get_state`` reads ``term`` and ``role`` without taking ``self.mu``.

One lock removed from a critical section: the tester's thread reads fields
that the ticker and the RPC handlers write under the lock.
"""

from raft.reference.raft import LEADER
from raft.reference.raft import Raft as _Reference
from raft.reference.raft import make as _make  # noqa: F401 - the lab's API below


class Raft(_Reference):
    def get_state(self):  # noqa: ANN201 - the lab's signature
        return self.term, self.role == LEADER  # RACE: no lock


def make(peers, me, persister, apply_ch):  # noqa: ANN001, ANN201
    return Raft(peers, me, persister, apply_ch)
