"""Toy for simulated time: the bundled Raft, except that ``get_state`` spins forever in a
loop that polls nothing the simulation sees (no clock, no lock, no event).

Such a loop never returns to the scheduler, so none of the simulation's own
checks runs; only the per-test watchdog's alarm can stop it, and its verdict
must still be the CPU budget's (a failure on an idle machine and on a loaded
one), not "timeout" and not "overloaded".
"""

from __future__ import annotations

from raft.reference import raft as reference


class Raft(reference.Raft):
    def get_state(self) -> tuple[int, bool]:
        spins = 0
        while True:
            spins += 1


def make(peers, me, persister, apply_ch):
    return Raft(peers, me, persister, apply_ch)
