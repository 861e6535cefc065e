"""Toy submission that hangs: get_state() waits forever for an event nobody sets."""

import threading

from raft.raft import Raft as _Reference


class Raft(_Reference):
    def get_state(self):
        threading.Event().wait()  # never set: the grader's per-run watchdog must stop it


def make(peers, me, persister, apply_ch):
    return Raft(peers, me, persister, apply_ch)
