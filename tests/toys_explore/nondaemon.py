"""Hostile toy: every peer starts a non-daemon thread that waits forever on an event
nobody sets (the interpreter's exit waits for non-daemon threads)."""

import threading

from raft.reference import raft as reference


class Raft(reference.Raft):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._never = threading.Event()
        threading.Thread(target=self._never.wait, name=f"toy-S{self.me}-forever",
                         daemon=False).start()


def make(peers, me, persister, apply_ch) -> Raft:
    return Raft(peers, me, persister, apply_ch)
