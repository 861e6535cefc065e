"""Isolation toy: the reference Raft plus a non-daemon thread that ignores kill().

In-process such a thread keeps the test process alive after the run; isolated,
it is reported (a warning for a non-bundled Raft) and dies with its process.
"""

import threading
import time

import raft


def _forever():
    while True:
        time.sleep(0.5)


def make(peers, me, persister, apply_ch):
    rf = raft.make(peers, me, persister, apply_ch)
    threading.Thread(target=_forever, name=f"toy-immortal-{me}", daemon=False).start()
    return rf
