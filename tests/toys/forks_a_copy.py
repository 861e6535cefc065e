"""Broken toy: the bundled Raft, but the first ``make()`` forks the test process, and the
copy sleeps there for an hour.

In-process the copy is a second test process, never ended by anything: after the
old harness said ``1 passed`` it was still alive, re-parented to init.  The harness
must end it at once (before it sleeps) and say so in a warning.
"""

import os
import time

import raft

_forked: list[int] = []


def make(peers, me, persister, apply_ch):
    if not _forked:
        _forked.append(os.fork())
        if _forked[0] == 0:  # the copy
            time.sleep(3600)
    return raft.make(peers, me, persister, apply_ch)
