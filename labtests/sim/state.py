"""The one active simulation of this process (``None`` outside simulation mode).

Kept in its own module so the patched functions and primitives can read it
without import cycles.
"""

from __future__ import annotations

from typing import Any

SCHED: Any = None  # the active labtests.sim.scheduler.Scheduler
SYNC: Any = None  # an observer of synchronisation (labtests.race), or None


def sync_release(obj: Any) -> None:
    """``obj`` (a lock, event or queue) publishes what the current thread did so far."""
    observer = SYNC
    if observer is not None:
        observer.released(obj)


def sync_acquire(obj: Any) -> None:
    """The current thread has seen everything published through ``obj``."""
    observer = SYNC
    if observer is not None:
        observer.acquired(obj)
