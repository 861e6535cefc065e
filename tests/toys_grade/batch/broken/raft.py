"""Toy submission: the reference Raft that never persists anything.

It passes every test in which no server restarts, and fails those that crash and
restart servers (2C persistence, 2D crash tests): a restarted peer forgets its term,
vote and log.
"""

from raft.raft import Raft as _Reference


class Raft(_Reference):
    def _persist(self) -> None:
        """Deliberately broken: nothing reaches the persister."""


def make(peers, me, persister, apply_ch):
    return Raft(peers, me, persister, apply_ch)
