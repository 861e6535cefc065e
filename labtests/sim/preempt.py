"""Seeded preemption at line granularity, inside the implementation's own files only.

Why: without it a simulated thread runs from one blocking point to the next
without interruption, so a check-then-act race between two blocking points (a
field read outside the lock, acted on after re-acquiring it) can never show.
With probability ``p`` per executed line of a file in scope, the current thread
yields to the scheduler, which picks the next thread from the seed as at any
switch; the draw comes from its own ``random.Random`` seeded from the run's
seed, and the sequence of lines is itself decided by the seed, so replay stays
exact.

How, and what it costs: ``sys.settrace`` installs a global trace function in
the simulation's OS thread that looks at each new frame once (``call`` event)
and returns a local tracer only for code whose file is in scope (cached per
code object); frames of the harness, labrpc and the standard library get no
local tracer, so they pay only for the ``call`` event.

An interpreter detail: a switch made inside a trace function leaves tracing
suspended for the whole OS thread (CPython counts "inside a tracer" per
thread, and greenlets share it) until the preempted thread is resumed and its
tracer returns.  The threads that run in that window are not preempted, and
frames they create get no local tracer; so when the preempted thread returns
from its tracer, every live simulated thread's frames in scope are given the
local tracer again (``frame.f_trace``).  A thread can therefore only be
preempted while no other is suspended in a preemption, which still makes every
"preempted between check and act" interleaving reachable.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

from greenlet import getcurrent

from labtests.sim import interp

__all__ = ["LinePreemption"]


class LinePreemption:
    """Install with :meth:`start`, remove with :meth:`stop` (same OS thread)."""

    def __init__(self, sched: Any, in_scope: Callable[[str], bool], p: float,
                 seed: int) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"preemption probability must be in [0, 1], not {p}")
        self.sched = sched
        self.in_scope = in_scope
        self.p = p
        self.rng = random.Random(f"{seed}:line-preempt")
        self.switches = 0
        self._scope: dict[CodeType, bool] = {}
        self._previous: Any = None
        self._installed = False

    def start(self) -> None:
        if self.p <= 0.0:
            return
        self._previous = sys.gettrace()
        sys.settrace(self._global)
        self._installed = True

    def stop(self) -> None:
        if self._installed:
            sys.settrace(self._previous)
            self._installed = False

    def _covers(self, code: CodeType) -> bool:
        known = self._scope.get(code)
        if known is None:
            known = self._scope[code] = bool(self.in_scope(code.co_filename))
        return known

    def _global(self, frame: FrameType, event: str, arg: Any) -> Any:
        if self._covers(frame.f_code):
            return self._local
        return None

    def _local(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line" and self.rng.random() < self.p:
            sched = self.sched
            if not sched.dying and sched.failure is None:
                self.switches += 1
                sched.yield_now()
                self._rearm()
        return self._local

    def _rearm(self) -> None:
        """Give frames created while tracing was suspended their local tracer."""
        me = getcurrent()
        for task in list(self.sched.tasks.values()):
            glet = task.glet
            frame = interp.caller_frame(1) if glet is me else getattr(glet, "gr_frame", None)
            while frame is not None:
                if frame.f_trace is None and self._covers(frame.f_code):
                    frame.f_trace = self._local
                frame = frame.f_back
