"""The text of a deadlock (or time-limit) report: who waits for what, and where.

For every live simulated thread: its name, what it is blocked on (for a lock,
which thread holds it and where the lock was created) and its stack without
the simulation's own frames.  Cycles of threads waiting for locks held by one
another are spelled out, since that is the usual shape of a lock-order bug.
"""

from __future__ import annotations

import os
import threading
import traceback
from typing import Any, Protocol

from labtests.sim import interp
from labtests.sim.task import DONE, Task

SIM_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep  # the engine's own frames
_HARNESS_NOISE = f"{os.sep}pytest{os.sep}"  # _pytest/ and pytest/
_PLUGGY = f"{os.sep}pluggy{os.sep}"


class SchedulerView(Protocol):
    """What a report reads of the scheduler (which imports this module, not the reverse)."""

    seed: int
    now: float
    current: Task
    tasks: dict[Any, Task]


def frames_of(task: Task, sched: SchedulerView) -> list[traceback.FrameSummary]:
    """The stack of a task (innermost last), without the simulation's own frames."""
    if task is sched.current:
        frame = interp.caller_frame(1)
    else:
        frame = task.glet.gr_frame if task.glet is not None else None
    if frame is None:
        return []
    summary = traceback.extract_stack(frame)
    frames = [f for f in summary if not f.filename.startswith(SIM_DIR)
              and _HARNESS_NOISE not in f.filename and _PLUGGY not in f.filename
              and not f.filename.startswith("<frozen")]
    if frames and frames[0].filename == threading.__file__ and frames[0].name == "run":
        frames.pop(0)  # Thread.run calling the target
    return frames


def _lock_holder(obj: Any) -> Task | None:
    holder = getattr(obj, "_owner", None)
    return holder if isinstance(holder, Task) else None


def describe_wait(task: Task) -> str:
    """One line: what ``task`` is waiting for."""
    if task.state == "running":
        return "running (it detected the problem)"
    if task.state == "runnable":
        return "runnable"
    kind, obj = task.wait_kind, task.waiting
    if kind == "lock":
        holder = _lock_holder(obj)
        lock_kind = type(obj).__name__
        who = f"held by {holder.name!r}" if holder is not None else "held by no thread"
        if holder is task:
            who = "held by this same thread (it never releases it)"
        return f"waits for {lock_kind} created at {getattr(obj, '_where', '?')}, {who}"
    if kind == "condition":
        return (f"waits on a Condition (notify) whose lock was created at "
                f"{getattr(obj._lock, '_where', '?')}")
    if kind == "event":
        return "waits for an Event to be set"
    if kind == "queue":
        return "waits for an item on a queue"
    if kind == "semaphore":
        return "waits for a Semaphore"
    if kind == "join":
        return f"waits for thread {obj.name!r} to end (join)"
    if kind == "sleep":
        return "sleeps"
    return f"blocked ({kind})"


def lock_cycles(tasks: list[Task]) -> list[list[Task]]:
    """Cycles in the graph 'task waits for a lock held by task'."""
    nxt: dict[int, Task] = {}
    for t in tasks:
        if t.state == "blocked" and t.wait_kind == "lock" and t.untimed:
            holder = _lock_holder(t.waiting)
            if holder is not None:
                nxt[id(t)] = holder
    cycles, seen = [], set()
    for t in tasks:
        path, cur = [], t
        while id(cur) in nxt and id(cur) not in {id(p) for p in path}:
            path.append(cur)
            cur = nxt[id(cur)]
        if path and cur in path:
            cycle = path[path.index(cur):]
            key = frozenset(id(c) for c in cycle)
            if key not in seen:
                seen.add(key)
                cycles.append(cycle)
    return cycles


def format_report(sched: SchedulerView, headline: str, stacks: bool = True) -> str:
    """The report headed by ``headline``: lock cycles first, then every live thread."""
    tasks = [t for t in sched.tasks.values() if t.state != DONE]
    lines = [f"{headline} (virtual time {sched.now:.3f} s, seed {sched.seed}, "
             f"{len(tasks)} threads)"]
    first: list[Task] = []
    for cycle in lock_cycles(tasks):
        names = " -> ".join(repr(t.name) for t in [*cycle, cycle[0]])
        lines.append(f"lock cycle: {names} (each waits for a lock the next one holds)")
        first.extend(t for t in cycle if t not in first)
    for t in first + [t for t in tasks if t not in first]:
        lines.append("")
        lines.append(f"thread {t.name!r}: {describe_wait(t)}")
        if stacks:
            frames = frames_of(t, sched)
            text = "".join(traceback.format_list(frames[-12:])).rstrip("\n")
            lines.append(text or "  (no Python frames)")
    return "\n".join(lines)
