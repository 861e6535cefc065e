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
