"""Toy for the artifact self-tests: peers whose answers the test scripts.

``STATE[me]`` is what ``get_state()`` returns (term, is_leader), and ``start()``
accepts a command exactly when the peer claims leadership, at index 1.  Nothing
is ever replicated or applied unless the test itself puts messages on a peer's
``apply_ch``.  Tests change ``STATE`` and restore it afterwards.
"""

from __future__ import annotations

from typing import Any

STATE: dict[int, tuple[int, bool]] = {0: (1, False), 1: (1, False), 2: (1, False)}


class Raft:
    def __init__(self, peers: list[Any], me: int, persister: Any, apply_ch: Any) -> None:
        self.me = me
        self.apply_ch = apply_ch

    def get_state(self) -> tuple[int, bool]:
        return STATE[self.me]

    def start(self, command: Any) -> tuple[int, int, bool]:
        term, leader = STATE[self.me]
        return (1, term, True) if leader else (-1, term, False)

    def snapshot(self, index: int, snapshot: bytes) -> None:
        pass

    def kill(self) -> None:
        pass

    def request_vote(self, args: Any) -> Any:
        return {"term": STATE[self.me][0], "granted": False}


def make(peers: list[Any], me: int, persister: Any, apply_ch: Any) -> Raft:
    return Raft(peers, me, persister, apply_ch)
