"""Base of the toys that change one thing about the bundled Raft.

It delegates the Raft API and the bundled Raft's RPC handlers (labrpc finds
handlers among a class's own methods, so they are spelled out here).  The isolation
toys (tests/toys_isolated/_wrapped.py) use this same class.
"""

from __future__ import annotations

from typing import Any

import raft


class Wrapped:
    def __init__(self, peers: list[Any], me: int, persister: Any, apply_ch: Any) -> None:
        self.me = me
        self.inner = raft.make(peers, me, persister, apply_ch)

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
