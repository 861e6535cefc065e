"""Attack toy: never elects on its own; looks for another student's code (any raft.py
carrying the victim's marker under /tmp, the staged copies and the batch folders
included) and, if it finds one, runs that instead -- it would then earn the victim's
points."""

import importlib.util
import os
import sys

NAME = "reads_others"
MARKER = "VICTIM-" + "CODE-7f3a"  # split so this file does not carry the marker itself


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


def _find_victim():
    looked = 0
    for root in ("/tmp", "/work", os.path.dirname(os.path.dirname(os.getcwd()))):
        for dirpath, _dirnames, filenames in os.walk(root):
            looked += 1
            if looked > 50000:
                return None, looked
            if "raft.py" in filenames:
                path = os.path.join(dirpath, "raft.py")
                try:
                    with open(path, encoding="utf-8", errors="replace") as fh:
                        if MARKER in fh.read():
                            return path, looked
                except OSError:
                    pass
    return None, looked


_victim_path, _looked = _find_victim()
say(f"searched {_looked} folder(s); victim's code found: {_victim_path}")
_victim = None
if _victim_path:
    _spec = importlib.util.spec_from_file_location("stolen_raft", _victim_path)
    _victim = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_victim)


def make(peers, me, persister, apply_ch):
    if _victim is not None:
        return _victim.make(peers, me, persister, apply_ch)
    return Raft(peers, me, persister, apply_ch)
