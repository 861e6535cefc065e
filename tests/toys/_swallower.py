"""Base of the precise-cause toys: a Raft that never elects and swallows RPC errors.

A campaign thread calls a peer every 50 ms and ignores any exception the call
raises, as a Raft that sends from a pool (whose futures nobody reads) does.  The
test then fails only because nobody is elected, unless the harness reports the
real cause; each toy breaks the call in one way.
"""

from __future__ import annotations

import threading
from typing import Any


class Swallower:
    METHOD = "Raft.request_vote"

    def __init__(self, peers: list[Any], me: int, persister: Any, apply_ch: Any) -> None:
        self.peers = peers
        self.me = me
        self.dead = threading.Event()
        threading.Thread(target=self.campaign, name=f"toy-campaign-{me}", daemon=True).start()

    def args(self) -> Any:
        return {"term": 1, "candidate": self.me}

    def campaign(self) -> None:
        while not self.dead.wait(0.05):
            try:
                self.peers[(self.me + 1) % len(self.peers)].call(self.METHOD, self.args())
            except Exception:  # noqa: BLE001, S110 - the point: a Raft that hides its errors
                pass

    def get_state(self) -> tuple[int, bool]:
        return 0, False

    def start(self, command: Any) -> tuple[int, int, bool]:
        return -1, 0, False

    def snapshot(self, index: int, snapshot: bytes) -> None:
        pass

    def kill(self) -> None:
        self.dead.set()

    def request_vote(self, args: Any) -> Any:
        return {"term": 0, "granted": False}
