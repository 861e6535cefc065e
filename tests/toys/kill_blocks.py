"""Broken toy: the bundled Raft whose kill() waits for a lock nobody releases.

Every test it runs ends with cleanup calling ``kill()``, which never returns.
"""

import threading

import _reference_wrapper


class Stuck(_reference_wrapper.Wrapped):
    def __init__(self, *args):
        super().__init__(*args)
        self.mu = threading.Lock()
        self.mu.acquire()  # a forgotten unlock

    def kill(self):
        self.inner.kill()
        toy_kill_waits_here(self.mu)


def toy_kill_waits_here(mu):
    with mu:  # blocks forever
        pass


def make(peers, me, persister, apply_ch):
    return Stuck(peers, me, persister, apply_ch)
