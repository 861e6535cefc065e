"""A deliberately broken toy Raft for the stress runner's own tests: it never elects a leader.

It has the whole API (design.md §2), so the real harness loads it and the 2A tests
fail in their first ``check_one_leader`` -- the failure path of ``raftlab stress``
(logs kept, rerun command, exit status) is then exercised end to end.
"""

from __future__ import annotations


class Raft:
    def start(self, command: object) -> tuple[int, int, bool]:
        return -1, 0, False

    def get_state(self) -> tuple[int, bool]:
        return 0, False

    def snapshot(self, index: int, snapshot: bytes) -> None:
        pass

    def kill(self) -> None:
        pass


def make(*_args: object) -> Raft:
    return Raft()
