"""Planning a batch of runs: which test runs when, and with which seed.

Shared by ``raftlab stress`` and ``raftlab grade``: both draw every run's seed
from one base seed, so a whole batch can be repeated with ``--seed``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from tools.stress.backends.base import Job


def plan_jobs(tests: Sequence[str], runs: int, seed: int, sequential: bool) -> list[Job]:
    """``runs`` jobs per test with distinct seeds drawn from ``seed``.

    By default rounds interleave (every test once, then again...) so that all tests
    progress together and a load spike does not hit one test's runs only.
    """
    rng = random.Random(seed)
    pairs = ([(t, r) for t in tests for r in range(runs)] if sequential
             else [(t, r) for r in range(runs) for t in tests])
    used: set[int] = set()
    jobs = []
    for index, (test, _r) in enumerate(pairs):
        s = rng.randrange(1, 2**31)
        while s in used:
            s = rng.randrange(1, 2**31)
        used.add(s)
        jobs.append(Job(index, test, s))
    return jobs
