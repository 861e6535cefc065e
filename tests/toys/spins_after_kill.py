"""Toy: the bundled Raft, except that an RPC in flight when it is killed is retried at
once until it gets a reply (a common bug: ``while not ok: ok = call(...)`` without
checking kill()).  A crashed instance's calls never get a reply, so those threads
keep calling.  In the lab each failed call takes the network's failure delay
(0-7 s), which throttles them; a harness that made a crashed instance's calls fail
at once would let them spin and steal the CPU from the rest of the test.

The retries stop 45 s after kill() so the toy cannot run forever.
"""

from __future__ import annotations

import time
from typing import Any

import raft

RETRY_FOR_S = 45.0


class RetryingEnd:
    def __init__(self, end: Any, owner: Raft) -> None:
        self.end = end
        self.owner = owner

    def call(self, svc_meth: str, args: Any) -> Any:
        reply = self.end.call(svc_meth, args)
        while reply is None and self.owner.killed_at is not None:
            if time.monotonic() > self.owner.killed_at + RETRY_FOR_S:
                break
            reply = self.end.call(svc_meth, args)
        return reply


class Raft:
    def __init__(self, peers: list[Any], me: int, persister: Any, apply_ch: Any) -> None:
        self.killed_at: float | None = None
        self.inner = raft.make([RetryingEnd(e, self) for e in peers], me, persister, apply_ch)

    def get_state(self):
        return self.inner.get_state()

    def start(self, command):
        return self.inner.start(command)

    def snapshot(self, index, snapshot):
        return self.inner.snapshot(index, snapshot)

    def kill(self):
        self.killed_at = time.monotonic()
        return self.inner.kill()

    def request_vote(self, args):
        return self.inner.request_vote(args)

    def append_entries(self, args):
        return self.inner.append_entries(args)

    def install_snapshot(self, args):
        return self.inner.install_snapshot(args)


def make(peers, me, persister, apply_ch):
    return Raft(peers, me, persister, apply_ch)
