"""Broken toy: the bundled Raft, but peer 1 calls os._exit(0) one second in.

In-process this ends the whole test process with status 0 in the middle of a
test: the harness must report that test as failed, naming the exit status, and
the tests after it as not run.
"""

import os
import threading

import raft


def make(peers, me, persister, apply_ch):
    rf = raft.make(peers, me, persister, apply_ch)
    if me == 1:
        timer = threading.Timer(1.0, os._exit, args=(0,))
        timer.daemon = True
        timer.start()
    return rf
