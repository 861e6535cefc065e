"""Base of the isolation toys: a "Raft" that does nothing (never elects, never commits)."""

from __future__ import annotations

import threading
from typing import Any


class Quiet:
    def __init__(self, peers: list[Any], me: int, persister: Any, apply_ch: Any) -> None:
        self.peers = peers
        self.me = me
        self.persister = persister
        self.apply_ch = apply_ch
        self.dead = threading.Event()

    def get_state(self) -> tuple[int, bool]:
        return 0, False

    def start(self, command: Any) -> tuple[int, int, bool]:
        return -1, -1, False

    def snapshot(self, index: int, snapshot: bytes) -> None:
        pass

    def kill(self) -> None:
        self.dead.set()

    def request_vote(self, args: Any) -> Any:
        return {"term": 0, "granted": False}
