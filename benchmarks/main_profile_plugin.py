"""A pytest plugin that profiles the main thread around each test: ``-p main_profile_plugin``.

Why: the main thread's CPU per test (``make_config``, the tester's calls, the
tear-down) is hidden in ``thread_cpu_plugin``'s "main thread" figure together
with interpreter start-up, imports and collection.  This runs cProfile with
``timer=time.thread_time`` (CPU of this thread only, so sleeps and other
threads do not count) only while ``pytest_runtest_protocol`` runs, and dumps
the merged pstats to ``RAFTLAB_MAIN_PROFILE`` (default ``main.prof``).  Print
with ``python -m pstats FILE`` or ``pstats.Stats(FILE).sort_stats("tottime")``.
"""

from __future__ import annotations

import cProfile
import os
import time

import pytest

_prof = cProfile.Profile(timer=time.thread_time)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: object, nextitem: object):  # noqa: ANN201 - hook wrapper
    _prof.enable()
    try:
        yield
    finally:
        _prof.disable()


def pytest_unconfigure(config: object) -> None:
    _prof.dump_stats(os.environ.get("RAFTLAB_MAIN_PROFILE", "main.prof"))
