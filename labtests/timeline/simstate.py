"""What the timeline needs to know of an active simulation (``--sim``), read-only.

The engine's state is read through ``sys.modules``: if the simulation was never
imported, none runs; importing it here would close an import cycle through the
simulation's pytest plugin (which imports the harness).
"""

from __future__ import annotations

import _thread
import sys
import time
from collections.abc import Callable
from typing import Any


def scheduler() -> Any:
    """The active simulation's scheduler if the caller runs inside it, else None."""
    state = sys.modules.get("labtests.sim.state")
    sched = getattr(state, "SCHED", None)
    if sched is None or _thread.get_ident() != sched.os_ident:  # _thread: never patched
        return None
    return sched


def clock() -> Callable[[], float]:
    """The clock to time events with: the virtual one inside a simulation, read without
    counting as a poll (``time.monotonic()`` there feeds the spin guard, and recording
    must not change the simulated schedule), else ``time.monotonic``."""
    sched = scheduler()
    if sched is None:
        return time.monotonic
    return lambda: sched.now


def idle() -> bool:
    """Under --sim: is every other simulated thread blocked with no timer pending?"""
    sched = scheduler()
    if sched is None or sched.runnable:
        return False
    me = sched.current
    for _deadline, _seq, task, token in sched.timers:
        if task is not me and task.state == "blocked" and task.token == token:
            return False
    return True
