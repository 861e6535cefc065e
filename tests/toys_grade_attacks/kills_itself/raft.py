"""Attack toy: never elects; peer 2 sends its own process SIGKILL one second in."""

import os
import signal
import sys
import threading

NAME = "kills_itself"


class Raft:
    """Never starts an election: every peer stays a follower in term 0."""

    def __init__(self, peers, me, persister, apply_ch):
        self.me = me
        self.dead = False

    def get_state(self):
        return 0, False

    def start(self, command):
        return -1, 0, False

    def snapshot(self, index, snapshot):
        pass

    def kill(self):
        self.dead = True


def say(what):
    """Leave a trace in the run's output (the failure logs), so tests see the attempt ran."""
    sys.stderr.write(f"ATTACK[{NAME}] {what}\n")
    sys.stderr.flush()


def make(peers, me, persister, apply_ch):
    if me == 2:
        say("peer 2 will SIGKILL itself in 1 s")
        threading.Timer(1.0, os.kill, args=(os.getpid(), signal.SIGKILL)).start()
    return Raft(peers, me, persister, apply_ch)
