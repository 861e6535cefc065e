"""Seeded preemption at statement granularity, inside the implementation's own files only.

Why: without it a simulated thread runs from one blocking point to the next
without interruption, so a check-then-act race between two blocking points (a
field read outside the lock, acted on after re-acquiring it) can never show.
With probability ``p`` per executed statement of a file in scope, the current
thread yields to the scheduler, which picks the next thread from the seed as at
any switch.  The draws come from their own ``random.Random`` seeded from the
run's seed, and the sequence of statements is itself decided by the seed, so
replay stays exact.  One draw per preemption, not per statement: the number of
statements up to the next switch is drawn from the geometric distribution with
parameter ``p``, which is exactly the law of "the first statement whose
Bernoulli(p) draw succeeds".

How: the functions of the modules in scope get, for the simulation's duration,
code with a call to :meth:`LinePreemption` 's tick before each statement, at
each ``while`` condition check and each comprehension step
(:mod:`labtests.sim.ticks`); no trace function, so the rest of the program runs
at full speed.  A statement is the unit where a line tracer saw a line: one
point per simple statement, per ``if``/``elif`` test, per ``while`` re-check
and loop iteration; a statement spread over several lines is one point, and a
``for`` loop's next item is fetched just before its body's first point rather
than after a point of its own.

Refused, not silently thinned: the functions are matched with their files when
the preemption is made (before the simulation starts), and if one changed on
disk since this process loaded it, :class:`~labtests.sim.ticks.StaleSource` is
raised there -- it would keep its own code, lose its points, and the seed
would interleave otherwise than in a fresh process.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable
from typing import Any

from labtests.sim.interp import os_thread_ident
from labtests.sim.ticks import Matched, NotSwapped, StaleSource, Swapped, match

__all__ = ["LinePreemption"]


class LinePreemption:
    """Install with :meth:`start`, remove with :meth:`stop` (same OS thread).

    Made just before the simulation starts; raises :class:`StaleSource` if a
    function in scope changed on disk since it was loaded (see the module's doc).
    """

    def __init__(self, sched: Any, in_scope: Callable[[str], bool], p: float,
                 seed: int) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"preemption probability must be in [0, 1], not {p}")
        self.sched = sched
        self.in_scope = in_scope
        self.p = p
        self.rng = random.Random(f"{seed}:line-preempt")
        self.switches = 0
        self._swapped = Swapped()
        self._log_q = math.log1p(-p) if 0.0 < p < 1.0 else 0.0
        self._matched = Matched()
        if p > 0.0:
            modules = [m for m in list(sys.modules.values())
                       if isinstance(getattr(m, "__file__", None), str)
                       and in_scope(m.__file__)]
            self._matched = match(modules)
            if self._matched.stale:
                raise StaleSource(self._matched.stale)

    def gap(self) -> int:
        """Statements up to and including the next preempted one (geometric, >= 1)."""
        if self.p >= 1.0:
            return 1
        u = self.rng.random()  # in [0, 1): 1 - u in (0, 1]
        return int(math.log1p(-u) / self._log_q) + 1

    @property
    def instrumented(self) -> int:
        """How many functions run ticked code now."""
        return len(self._swapped)

    @property
    def not_swapped(self) -> list[NotSwapped]:
        """What keeps its own code, and why (none of it stale: see the class doc)."""
        return list(self._matched.left)

    def start(self) -> None:
        if self.p <= 0.0:
            return
        self._swapped.install(self._matched, self._tick())
        self._matched = Matched(left=self._matched.left)  # the swap is done: drop the refs

    def stop(self) -> None:
        self._swapped.undo()

    def _tick(self) -> Callable[[], bool]:
        """The function called before each statement in scope; a closure, for speed."""
        sched = self.sched
        yield_now = sched.yield_now
        gap = self.gap
        get_ident = os_thread_ident
        home = get_ident()  # the simulation's OS thread
        left = gap()

        def tick() -> bool:
            nonlocal left
            left -= 1
            if left <= 0:
                left = gap()
                if (not sched.dying and sched.failure is None
                        and get_ident() == home):
                    self.switches += 1
                    yield_now()
            return True

        return tick
