"""Attack toy: never elects; finds the graded test functions through the garbage collector
(importing the test modules if it must) and replaces their code with a no-op."""

import gc
import sys

NAME = "gc_tests"


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


def _noop(*args, **kwargs):
    return None


def _attack():
    emptied = 0
    for obj in gc.get_objects():
        if callable(obj) and getattr(obj, "__name__", "").startswith("test_") \
                and str(getattr(obj, "__module__", "")).startswith("labtests"):
            try:
                obj.__code__ = _noop.__code__
                emptied += 1
            except (AttributeError, TypeError, ValueError):
                pass
    say(f"replaced {emptied} test function(s) with no-ops; "
        f"labtests.test_2a loaded here: {'labtests.test_2a' in sys.modules}")


_attack()


def make(peers, me, persister, apply_ch):
    return Raft(peers, me, persister, apply_ch)
