"""Attack toy: never elects; monkeypatches the harness's checks (at import, and again
from a thread in a peer): the leader check, the failure channel, the config's fail()."""

import sys
import threading

NAME = "patches_harness"


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


def _attack(where):
    try:
        import labtests.config as harness
        from labtests import failures

        harness.Config.check_one_leader = lambda self: 0
        harness.Config.fail = lambda self, *a, **k: None
        failures.FailureChannel.fail = lambda self, *a, **k: None
        say(f"{where}: patched Config.check_one_leader, Config.fail, FailureChannel.fail "
            f"in process {__import__('os').getpid()}")
    except Exception as exc:  # noqa: BLE001
        say(f"{where}: patching failed: {exc!r}")


_attack("import")


def make(peers, me, persister, apply_ch):
    threading.Thread(target=_attack, args=(f"peer {me}",), daemon=True).start()
    return Raft(peers, me, persister, apply_ch)
