"""Broken toy for the timeline's tests: the bundled Raft, but it never reads what it persisted.

Each instance gets a fresh persister, so a restarted peer comes back with an empty
log and term 0.  The 2C tests crash and restart peers (and disconnect them), then
fail: a good failure to draw (crashes, restarts, partitions, a failure marker).
"""

from __future__ import annotations

from typing import Any

import raft
from raft.persister import Persister


class Raft:
    def __init__(self, peers: list[Any], me: int, persister: Any, apply_ch: Any) -> None:
        self.inner = raft.make(peers, me, Persister(), apply_ch)

    def get_state(self):
        return self.inner.get_state()

    def start(self, command):
        return self.inner.start(command)

    def snapshot(self, index, snapshot):
        return self.inner.snapshot(index, snapshot)

    def kill(self):
        return self.inner.kill()

    def request_vote(self, args):
        return self.inner.request_vote(args)

    def append_entries(self, args):
        return self.inner.append_entries(args)

    def install_snapshot(self, args):
        return self.inner.install_snapshot(args)


def make(peers: list[Any], me: int, persister: Any, apply_ch: Any) -> Raft:
    return Raft(peers, me, persister, apply_ch)
