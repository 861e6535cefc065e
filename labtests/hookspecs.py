"""Hooks the raftlab harness offers to other pytest plugins.

A hook, rather than a shared module variable or an environment variable, is how
another plugin changes what the harness does for one test: pytest calls every
implementation, and nothing has to be imported across packages.
"""

from __future__ import annotations

import pytest


@pytest.hookspec(firstresult=True)
def pytest_raftlab_test_seed(item: pytest.Item) -> int | None:
    """Return the seed of graded test ``item``, or ``None`` to leave it to the harness.

    Called once per graded test, before the simulation (``--sim``) and the
    test's config are seeded.  ``raftlab stress`` uses it to give every
    repetition of a test its own seed.  Without an answer, the seed is
    ``--seed``/``RAFTLAB_SEED`` or derived from the session seed and the test's name.
    """


@pytest.hookspec(firstresult=True)
def pytest_raftlab_thread_report(item: pytest.Item, headline: str) -> str | None:
    """Return a report of every thread of ``item``'s run under ``headline``, or ``None``.

    The harness asks when a test's cleanup does not end (labtests.watchdog).
    Without an answer it shows the interpreter's stack of every real thread; the
    simulation (``--sim``), whose threads all share one real thread, answers with
    its own report: each simulated thread's stack, what it waits for, lock cycles.
    """
