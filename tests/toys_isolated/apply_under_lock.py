"""Isolation toy: the classic 2D bug, sending on the apply channel while holding the lock
that snapshot() needs.

The tester's reader calls snapshot() before it takes the next message; the
Raft's applier holds the lock while it waits for the tester to take that
message: a deadlock, as in Go.  Isolated, snapshot() misses its deadline and
the test fails with the peer's stacks instead of hanging.
"""

import threading

import _wrapped


class LockedChannel:
    def __init__(self, inner, mu):
        self.inner = inner
        self.mu = mu

    def put(self, msg):
        with self.mu:
            return toy_put_under_lock(self.inner, msg)


def toy_put_under_lock(channel, msg):
    return channel.put(msg)  # blocks until the tester takes msg, with the lock held


class Locked(_wrapped.Wrapped):
    def __init__(self, peers, me, persister, apply_ch):
        self.mu = threading.Lock()
        super().__init__(peers, me, persister, LockedChannel(apply_ch, self.mu))

    def snapshot(self, index, snapshot):
        with self.mu:
            self.inner.snapshot(index, snapshot)


def make(peers, me, persister, apply_ch):
    return Locked(peers, me, persister, apply_ch)
