"""Attack toy: never elects; every peer starts non-daemon threads that ignore kill()."""

import sys
import threading
import time

NAME = "leaves_threads"


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


def _forever():
    while True:
        time.sleep(0.5)


def make(peers, me, persister, apply_ch):
    for k in range(3):
        threading.Thread(target=_forever, name=f"toy-immortal-{me}-{k}", daemon=False).start()
    say(f"peer {me} started 3 immortal threads")
    return Raft(peers, me, persister, apply_ch)
