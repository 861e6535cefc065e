"""A pytest plugin for the main thread's CPU per test: ``-p main_profile_plugin``.

Why: the main thread's CPU per test (``make_config``, the tester's calls, the
tear-down) is hidden in ``thread_cpu_plugin``'s "main thread" figure together
with interpreter start-up, imports and collection.  This reads
``time.thread_time()`` (CPU of this thread only: sleeps and other threads do not
count) around ``pytest_runtest_protocol`` and prints it per test at the end.
With ``RAFTLAB_MAIN_PROFILE=FILE`` it also runs cProfile (same timer) only
during those calls and dumps the merged pstats to FILE (read it with
``pstats.Stats(FILE).sort_stats("tottime")``; cProfile inflates small calls
several times, so take its shares, not its seconds).
"""

from __future__ import annotations

import cProfile
import os
import time

import pytest

_FILE = os.environ.get("RAFTLAB_MAIN_PROFILE")
_prof = cProfile.Profile(timer=time.thread_time) if _FILE else None
_per_test: list[tuple[str, float]] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: object):  # noqa: ANN201 - hook wrapper
    t0 = time.thread_time()
    if _prof is not None:
        _prof.enable()
    try:
        yield
    finally:
        if _prof is not None:
            _prof.disable()
        _per_test.append((item.name, time.thread_time() - t0))


def pytest_unconfigure(config: object) -> None:
    total = sum(cpu for _, cpu in _per_test)
    print(f"\nmain thread CPU during tests: {total:.4f} s over {len(_per_test)} tests")
    for name, cpu in _per_test:
        print(f"  {name:<40} {cpu:.4f} s")
    if _prof is not None:
        _prof.dump_stats(_FILE)
