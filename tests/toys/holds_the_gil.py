"""Broken toy: the bundled Raft, but server 0's ``make()`` starts a thread that makes one
call into C code that never ends in practice (``sum(range(10**15))``): Python's
interpreter lock is never let go, so no other thread of the process runs Python
again -- not the test, not its watchdog (pytest-timeout's alarm is handled in the
main thread), not the bounded cleanup.  ``raftlab test`` waited with no result until
it was killed from outside.  The last bound (labtests/last_bound.py) must end the
process and the test must say why.
"""

import threading

import raft


def _sum_forever() -> None:
    sum(range(10**15))


def make(peers, me, persister, apply_ch):
    rf = raft.make(peers, me, persister, apply_ch)
    if me == 0:
        threading.Thread(target=_sum_forever, name="sums-forever", daemon=True).start()
    return rf
