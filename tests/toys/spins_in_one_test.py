"""Toy: the bundled Raft, except that in one test -- the one named in env
RAFTLAB_TOY_SPIN_TEST, matched against pytest's PYTEST_CURRENT_TEST -- ``get_state``
spins forever on a plain attribute, which no simulated primitive sees: only the
per-test watchdog (pytest-timeout's alarm, judged by the simulation) ends that test.
Every other test runs the bundled Raft.

A self-test runs the spinning test and then another in one ``pytest --sim`` process
and checks that the second takes the same steps as when it runs alone."""

from __future__ import annotations

import os
from typing import Any

from raft.reference import raft as reference


class Raft(reference.Raft):
    spins = 0

    def get_state(self) -> tuple[int, bool]:
        name = os.environ.get("RAFTLAB_TOY_SPIN_TEST")
        if name and name in os.environ.get("PYTEST_CURRENT_TEST", ""):
            while True:
                self.spins += 1
        return super().get_state()


def make(peers: list[Any], me: int, persister: Any, apply_ch: Any) -> Raft:
    return Raft(peers, me, persister, apply_ch)
