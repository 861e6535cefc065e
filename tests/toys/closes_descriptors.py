"""Broken toy: the bundled Raft, but peer 1 closes every file descriptor above 2 half a
second in (as code that "cleans up" descriptors it did not open would); the process
lives on for a second or two after that, until pytest next writes.

In-process that closes raftlab's channel to the command and pytest's own output
with it: the test process then ends without a word (exit status 1).  The verdict
must still name the test, and say what the test process did first.
"""

import os
import threading

import raft


def make(peers, me, persister, apply_ch):
    rf = raft.make(peers, me, persister, apply_ch)
    if me == 1:
        timer = threading.Timer(0.5, os.closerange, args=(3, 65536))
        timer.daemon = True
        timer.start()
    return rf
