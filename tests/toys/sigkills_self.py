"""Broken toy: the bundled Raft, but peer 2 sends its own process SIGKILL one second in."""

import os
import signal
import threading

import raft


def make(peers, me, persister, apply_ch):
    rf = raft.make(peers, me, persister, apply_ch)
    if me == 2:
        timer = threading.Timer(1.0, os.kill, args=(os.getpid(), signal.SIGKILL))
        timer.daemon = True
        timer.start()
    return rf
