"""Broken toy: the classic 2D bug, sending on the apply channel while holding the lock.

The applier holds ``mu`` while it waits for the tester to take a message; the
tester's reader calls ``snapshot()``, which needs ``mu``, before it takes the
next one: a deadlock, as in Go.  The test body fails ("failed to reach
agreement"); then the harness's cleanup calls ``kill()``, which also takes
``mu`` and so blocks forever.  The harness must bound that cleanup, fail the
test with the threads' stacks and go on to the next test.
"""

import threading

import _reference_wrapper


class LockedChannel:
    def __init__(self, inner, mu):
        self.inner = inner
        self.mu = mu

    def put(self, msg):
        with self.mu:
            return toy_put_under_lock(self.inner, msg)


def toy_put_under_lock(channel, msg):
    return channel.put(msg)  # blocks until the tester takes msg, with the lock held


class Locked(_reference_wrapper.Wrapped):
    def __init__(self, peers, me, persister, apply_ch):
        self.mu = threading.Lock()
        super().__init__(peers, me, persister, LockedChannel(apply_ch, self.mu))

    def snapshot(self, index, snapshot):
        with self.mu:
            self.inner.snapshot(index, snapshot)

    def kill(self):
        with self.mu:  # a student's kill() that sets its flag under the lock
            self.inner.kill()


def make(peers, me, persister, apply_ch):
    return Locked(peers, me, persister, apply_ch)
