"""The one active simulation of this process (``None`` outside simulation mode).

Kept in its own module so the patched functions and primitives can read it
without import cycles.
"""

from __future__ import annotations

from typing import Any

SCHED: Any = None  # the active labtests.sim.scheduler.Scheduler
