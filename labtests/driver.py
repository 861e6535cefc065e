"""Run one graded test body without pytest, in simulated or in real time.

The graded tests are plain functions taking a ``make_config`` factory; this
builds the same :class:`~labtests.context.TestContext` the pytest plugin does
and runs the body with it -- inside :func:`labtests.sim.activate` (the
harness, the network and the Raft all on the virtual clock) or, with
``sim=False``, in real time.  Used by the determinism and deadlock self-tests
and by ``benchmarks/sim_bench.py``, which compares the two.

This is harness code (it needs the test context), so it lives beside the
harness, not in the simulation engine, which knows nothing of the harness.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from labtests.context import TestContext
from labtests.impl_loader import Implementation, load
from labtests.sim import activate, sim_seed

__all__ = ["GradedRun", "SimResult", "run_graded", "sim_seed"]


@dataclass
class GradedRun:
    """What one run of a graded test produced."""

    figures: dict[str, Any] | None  # the Passed line's figures
    virtual_s: float  # duration on the test's clock (virtual in simulation, else real)
    switches: int  # scheduling steps of the simulation (0 in real time)
    wall_s: float  # wall-clock duration of the run


SimResult = GradedRun  # the name the first version of this module used


def _run_body(test_fn: Callable[[Any], None], seed: int, impl: Implementation) -> TestContext:
    ctx = TestContext(getattr(test_fn, "__name__", "test"), seed, impl)
    try:
        test_fn(ctx.make_config)
    except BaseException:
        ctx.finish(body_failed=True)
        raise
    ctx.finish(body_failed=False)
    return ctx


def run_graded(
    test_fn: Callable[[Any], None],
    seed: int,
    impl: Implementation | str | None = None,
    *,
    sim: bool = True,
    **options: Any,
) -> GradedRun:
    """Run ``test_fn(make_config)`` once; raise on failure like pytest would.

    ``options`` go to :func:`labtests.sim.activate` (simulation only).
    """
    implementation = impl if isinstance(impl, Implementation) else load(impl)
    wall0 = time.perf_counter()
    if not sim:
        if options:
            raise TypeError(f"simulation options without sim=True: {sorted(options)}")
        t0 = time.monotonic()
        ctx = _run_body(test_fn, seed, implementation)
        elapsed = time.monotonic() - t0
        return GradedRun(ctx.figures, elapsed, 0, time.perf_counter() - wall0)
    with activate(sim_seed(seed), **options) as sched:
        ctx = _run_body(test_fn, seed, implementation)
        virtual, switches = sched.now, sched.switches
    return GradedRun(ctx.figures, virtual, switches, time.perf_counter() - wall0)
