"""Run one graded test body inside a simulation, without pytest.

The graded tests are plain functions taking a ``make_config`` factory; this
builds the same :class:`~labtests.context.TestContext` the pytest plugin does,
inside :func:`labtests.sim.activate`, so the harness, the network and the Raft
all run on the virtual clock.  Used by the determinism and deadlock tests and
by ``benchmarks/sim_bench.py``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from labtests.context import TestContext
from labtests.impl_loader import Implementation, load
from labtests.sim import activate


def sim_seed(seed: int) -> int:
    """The scheduler's seed for a test seed (its own stream, like the network's)."""
    return random.Random(f"{seed}:sim-scheduler").getrandbits(63)


@dataclass
class SimResult:
    figures: dict[str, Any] | None
    virtual_s: float
    switches: int


def run_graded(
    test_fn: Callable[[Any], None],
    seed: int,
    impl: Implementation | str | None = None,
    **options: Any,
) -> SimResult:
    """Run ``test_fn(make_config)`` in a simulation; raise on failure like pytest would."""
    implementation = impl if isinstance(impl, Implementation) else load(impl)
    name = getattr(test_fn, "__name__", "test")
    with activate(sim_seed(seed), **options) as sched:
        ctx = TestContext(name, seed, implementation)
        try:
            test_fn(ctx.make_config)
        except BaseException:
            ctx.finish(body_failed=True)
            raise
        ctx.finish(body_failed=False)
        return SimResult(ctx.figures, sched.now, sched.switches)
