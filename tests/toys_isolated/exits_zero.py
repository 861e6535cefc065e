"""Isolation toy: the reference Raft, but peer 1 calls os._exit(0) one second in.

In-process this would end the whole test process with status 0 (a "success"
with no result); isolated, only peer 1's process ends and the test fails
naming it and its exit status.
"""

import os
import threading

import raft


def make(peers, me, persister, apply_ch):
    rf = raft.make(peers, me, persister, apply_ch)
    if me == 1:
        threading.Timer(1.0, os._exit, args=(0,)).start()
    return rf
