"""Toy for simulated time: the bundled Raft, except that ``get_state`` also blocks 100 ms
in *real* time, in a call the simulation does not see (a ``_thread`` lock used
directly, which stays real; so does a ``sleep`` bound with ``from time import
sleep`` before a run starts).

Each call blocks the whole simulation (one OS thread): wall time passes, neither
CPU time nor virtual time does.  Judged by its CPU time alone the run would look
starved by the machine; the simulation tells the two apart by the time its
thread waited for a CPU (none here), so this Raft fails on its CPU-time budget
("blocked outside the simulation") rather than being excused as overloaded.
"""

from __future__ import annotations

import _thread
import os

from raft.reference import raft as reference

BLOCK_S = float(os.environ.get("TOY_BLOCK_S", "0.1"))  # a self-test may make it block for good
_never_released = _thread.allocate_lock()
_never_released.acquire()


def real_block(seconds: float) -> None:
    """Block the OS thread ``seconds`` of real time (the simulation cannot see it)."""
    _never_released.acquire(timeout=seconds)


class Raft(reference.Raft):
    def get_state(self) -> tuple[int, bool]:
        real_block(BLOCK_S)
        return super().get_state()


def make(peers, me, persister, apply_ch):
    return Raft(peers, me, persister, apply_ch)
