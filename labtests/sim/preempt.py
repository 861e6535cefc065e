"""Seeded preemption at line granularity, inside the implementation's own files only.

Why: without it a simulated thread runs from one blocking point to the next
without interruption, so a check-then-act race between two blocking points (a
field read outside the lock, acted on after re-acquiring it) can never show.
With probability ``p`` per executed line of a file in scope, the current thread
yields to the scheduler, which picks the next thread from the seed as at any
switch.  The draws come from their own ``random.Random`` seeded from the run's
seed, and the sequence of lines is itself decided by the seed, so replay stays
exact.  One draw per preemption, not per line: the number of lines up to the
next switch is drawn from the geometric distribution with parameter ``p``,
which is exactly the law of "the first line whose Bernoulli(p) draw succeeds".

How, and what it costs: ``sys.settrace`` installs a global trace function in
the simulation's OS thread that looks at each new frame once (``call`` event)
and returns a local tracer only for code whose file is in scope (cached per
code object); frames of the harness, labrpc and the standard library get no
local tracer, so they pay only for the ``call`` event (and, in CPython 3.11,
for running unspecialised while a trace function is set).

An interpreter detail: a switch made inside a trace function leaves tracing
suspended for the whole OS thread (CPython counts "inside a tracer" per
thread, and greenlets share it) until the preempted thread is resumed and its
tracer returns.  The threads that run in that window are not preempted, and
frames they create get no local tracer.  So while a thread is preempted a
``greenlet.settrace`` hook notes which simulated threads run, and when it
resumes, only their frames created in the window (the top of their stacks, down
to the first frame in scope that already has its tracer) are given the local
tracer (``frame.f_trace``).  A thread can therefore only be preempted while no
other is suspended in a preemption, which still makes every "preempted between
check and act" interleaving reachable.  (``sys.call_tracing`` would re-enable
tracing for the window, but in CPython 3.11 it does not.)
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

import greenlet

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
        self._log_q = math.log1p(-p) if 0.0 < p < 1.0 else 0.0

    def gap(self) -> int:
        """Lines up to and including the next preempted one (geometric, >= 1)."""
        if self.p >= 1.0:
            return 1
        u = self.rng.random()  # in [0, 1): 1 - u in (0, 1]
        return int(math.log1p(-u) / self._log_q) + 1

    def start(self) -> None:
        if self.p <= 0.0:
            return
        self._previous = sys.gettrace()
        sys.settrace(self._tracer())
        self._installed = True

    def stop(self) -> None:
        if self._installed:
            sys.settrace(self._previous)
            self._installed = False

    def _tracer(self) -> Callable[[FrameType, str, Any], Any]:
        """The global trace function; closures, so a traced line costs one Python call."""
        known = self._scope
        in_scope = self.in_scope
        sched = self.sched
        yield_now = sched.yield_now
        left = self.gap()

        def local(frame: FrameType, event: str, arg: Any) -> Any:
            nonlocal left
            if event == "line":
                left -= 1
                if left <= 0:
                    left = self.gap()
                    if not sched.dying and sched.failure is None:
                        self.switches += 1
                        ran: set[Any] = set()
                        previous = greenlet.settrace(lambda _event, args: ran.add(args[1]))
                        try:
                            yield_now()
                        finally:
                            greenlet.settrace(previous)
                            self._rearm(ran, local)
            return local

        def global_(frame: FrameType, event: str, arg: Any) -> Any:
            code = frame.f_code
            covered = known.get(code)
            if covered is None:
                covered = known[code] = bool(in_scope(code.co_filename))
            return local if covered else None

        return global_

    def _rearm(self, ran: set[Any], local: Any) -> None:
        """Give the frames created while tracing was suspended their local tracer."""
        me = greenlet.getcurrent()
        covers = self._covers
        for glet in ran:
            if glet is me:
                continue  # it was suspended all along: its frames are as they were
            frame = getattr(glet, "gr_frame", None)
            while frame is not None:
                if covers(frame.f_code):
                    if frame.f_trace is not None:
                        break  # older frames were there before the preemption
                    frame.f_trace = local
                frame = frame.f_back

    def _covers(self, code: CodeType) -> bool:
        known = self._scope.get(code)
        if known is None:
            known = self._scope[code] = bool(self.in_scope(code.co_filename))
        return known
