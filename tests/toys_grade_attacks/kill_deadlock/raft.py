"""Attack toy: never elects; kill() waits for a lock nobody will ever release."""

import sys
import threading

NAME = "kill_deadlock"


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


class Stuck(Raft):
    def __init__(self, *args):
        super().__init__(*args)
        self.mu = threading.Lock()
        self.mu.acquire()  # a forgotten unlock

    def kill(self):
        say(f"peer {self.me}: kill() blocks forever")
        with self.mu:
            pass


def make(peers, me, persister, apply_ch):
    return Stuck(peers, me, persister, apply_ch)
