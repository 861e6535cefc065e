"""Broken toy for the timeline's tests: the leader's start() waits forever; nothing has a timer.

Server 0 claims leadership (term 1); its start() blocks on an event nobody sets,
and no peer runs a thread.  Under --sim the test's main thread blocks in start()
with every other thread waiting untimed, so the simulation must report "every
thread is blocked and no timer is pending": the timeline's sampler (whose own
timer would otherwise keep the clock alive) has to step aside.
"""

from __future__ import annotations

import threading
from typing import Any


class Raft:
    def __init__(self, me: int) -> None:
        self.me = me
        self.never = threading.Event()

    def get_state(self) -> tuple[int, bool]:
        return 1, self.me == 0

    def start(self, command: Any) -> tuple[int, int, bool]:
        if self.me != 0:
            return -1, 1, False
        self.never.wait()
        return 1, 1, True

    def snapshot(self, index: int, snapshot: bytes) -> None:
        pass

    def kill(self) -> None:
        self.never.set()


def make(peers: list[Any], me: int, persister: Any, apply_ch: Any) -> Raft:
    return Raft(me)
