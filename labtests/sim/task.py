"""The scheduler's record of one simulated thread, and the states it moves through.

Its own module so that the scheduler and the report (which reads tasks) both
import it without importing each other.
"""

from __future__ import annotations

from typing import Any

RUNNABLE, RUNNING, BLOCKED, DONE = "runnable", "running", "blocked", "done"


class Task:
    """The scheduler's record of one simulated thread."""

    __slots__ = (
        "thread", "glet", "name", "ident", "state", "token", "timed_out",
        "wait_kind", "waiting", "joiners", "reads", "order", "untimed", "pending",
    )

    def __init__(self, thread: Any, glet: Any, ident: int, order: int) -> None:
        self.thread = thread
        self.glet = glet
        self.name: str = thread.name
        self.ident = ident
        self.state = RUNNABLE
        self.token = 0  # bumped at each block and wake; stale timers carry an old one
        self.timed_out = False
        self.wait_kind = ""
        self.waiting: Any = None
        self.joiners: list[Task] = []
        self.reads = 0
        self.order = order
        self.untimed = False  # blocked with no timeout
        self.pending: BaseException | None = None  # raised in this task when it resumes

    def __repr__(self) -> str:
        return f"<Task {self.name!r} {self.state}>"
