"""Run one graded test body with the race detector, in simulated or real time (for tests/)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from labtests.context import TestContext
from labtests.impl_loader import load
from labtests.race import Detector, Race, Scope, detecting
from labtests.sim import activate, sim_seed

HERE = os.path.dirname(os.path.abspath(__file__))
TOYS = os.path.join(HERE, "toys_race")


def toy(name: str) -> str:
    return os.path.join(TOYS, f"{name}.py")


def marked_lines(path: str) -> set[int]:
    """The lines of a mutant marked ``# RACE``: where its racy access is."""
    with open(path) as f:
        return {i for i, line in enumerate(f, 1) if "# RACE" in line}


def run_with_race(test_fn: Callable[[Any], None], seed: int, impl_spec: str | None, *,
                  sim: bool = True, preempt: float = 0.02) -> Detector:
    """Run ``test_fn`` once under the detector; return it (``races``), whatever the verdict.

    A mutant may also fail the test itself (a race is a bug); the races are what
    these tests judge, so a failure of the body is kept only if no race explains it.
    """
    impl = load(impl_spec)
    assert impl.module is not None, impl.error

    def body() -> Detector:
        ctx = TestContext(getattr(test_fn, "__name__", "test"), seed, impl)  # inside the sim
        with detecting(impl.module, bundled=impl.is_bundled, simulated=sim) as det:
            try:
                test_fn(ctx.make_config)
            except BaseException:
                ctx.finish(body_failed=True)
                if not det.races:
                    raise
            else:
                ctx.finish(body_failed=False)
        return det

    if not sim:
        return body()
    scope = Scope(impl.module, impl.is_bundled)
    with activate(sim_seed(seed), preempt=preempt, preempt_scope=scope.predicate()):
        return body()


def names_mutant(race: Race, fields: set[str], toy_path: str, lines: set[int]) -> bool:
    """Does ``race`` name one of ``fields``, the mutant's marked line and a line elsewhere?"""
    if race.field not in fields:
        return False
    wheres = {race.earlier.where, race.later.where}
    mutant = {(f, n) for f, n in wheres if f == toy_path and n in lines}
    other = {w for w in wheres if w[0] != toy_path}
    return bool(mutant) and bool(other)


def missed_seeds(test_fn: Callable[[Any], None], seeds: Iterable[int], toy_path: str,
                 fields: set[str]) -> list[tuple[int, list[Any]]]:
    """The seeds whose ``--sim --race`` run has no report naming the mutant's race."""
    lines = marked_lines(toy_path)
    missed = []
    for seed in seeds:
        det = run_with_race(test_fn, seed, toy_path)
        if not any(names_mutant(r, fields, toy_path, lines) for r in det.races):
            missed.append((seed, [(r.field, r.earlier.where, r.later.where) for r in det.races]))
    return missed


def main(argv: list[str]) -> None:
    """``python -m tests.race_support MODULE TEST TOY FIELD... -- SEEDS``: missed seeds as JSON.

    Each sweep runs in a fresh process: a simulated run is exact per seed, but what
    the process ran before (other tests' threads, counters) can change its schedule.
    """
    import importlib
    import json

    cut = argv.index("--")
    module, test, toy_path, *fields = argv[:cut]
    fn = getattr(importlib.import_module(module), test)
    seeds = [int(s) for s in argv[cut + 1:]]
    print("MISSED " + json.dumps(missed_seeds(fn, seeds, toy_path, set(fields))))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
