"""Attack toy: never elects; at import registers a pytest hook that turns every report
into "passed" (found through the garbage collector, as an in-process tester would have)."""

import gc
import sys

NAME = "pytest_hook"


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


class _PassEverything:
    def pytest_runtest_logreport(self, report):
        report.outcome = "passed"


def _attack():
    found = 0
    for obj in gc.get_objects():
        try:
            if type(obj).__name__ == "Config" and type(obj).__module__ == "_pytest.config":
                obj.pluginmanager.register(_PassEverything(), f"toy-cheat-{found}")
                found += 1
        except Exception:  # noqa: BLE001
            pass
    say(f"registered the pass-everything hook in {found} pytest session(s); "
        f"pytest loaded here: {'pytest' in sys.modules}")


_attack()


def make(peers, me, persister, apply_ch):
    return Raft(peers, me, persister, apply_ch)
