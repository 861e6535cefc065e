"""Attack toy: never elects; peer 1 ends its process with status 0 one second in (in an
in-process tester this would end the whole test run with a "success" status)."""

import os
import sys
import threading

NAME = "exits_early"


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
    if me == 1:
        say("peer 1 will call os._exit(0) in 1 s")
        threading.Timer(1.0, os._exit, args=(0,)).start()
    return Raft(peers, me, persister, apply_ch)
