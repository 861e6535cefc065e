"""Isolation toy: the reference Raft, but peer 2 sends itself SIGKILL one second in."""

import os
import signal
import threading

import raft


def make(peers, me, persister, apply_ch):
    rf = raft.make(peers, me, persister, apply_ch)
    if me == 2:
        threading.Timer(1.0, os.kill, args=(os.getpid(), signal.SIGKILL)).start()
    return rf
