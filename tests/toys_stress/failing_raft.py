"""A deliberately broken toy Raft for the stress runner's own tests: it never elects a leader."""

from __future__ import annotations


class Raft:
    def get_state(self) -> tuple[int, bool]:
        return 0, False


def make(*_args: object) -> Raft:
    return Raft()
