"""Broken toy: the bundled Raft, but server 0's ``make()`` starts a thread that keeps
allocating memory and never lets it go (4 MiB at a time, every page written, so all of it
is resident): a log that grows without end, at its fastest.  The test process grew
until the machine swapped and the kernel's out-of-memory killer ended something, with
no verdict meanwhile.  The memory bound (labtests/memory_bound.py) must end the process
and the test must say why.

Safety: it stops growing at ``RAFTLAB_TOY_EAT_MAX_MB`` (default 3072) and then sleeps,
so a bound that failed to act fails the test that checks it instead of the machine.
"""

import os
import threading
import time

import raft

CHUNK = 4 << 20


def _eat_forever() -> None:
    most = int(os.environ.get("RAFTLAB_TOY_EAT_MAX_MB", "3072")) << 20
    held = []
    while len(held) * CHUNK < most:
        held.append(b"\1" * CHUNK)
    while True:
        time.sleep(1)


def make(peers, me, persister, apply_ch):
    rf = raft.make(peers, me, persister, apply_ch)
    if me == 0:
        threading.Thread(target=_eat_forever, name="eats-memory", daemon=True).start()
    return rf
