"""A pytest plugin that says what each phase of one pytest process costs: ``-p phase_plugin``.

Why: a graded part's CPU includes a fixed cost -- the interpreter, ``import
pytest``, the plugins, collection -- that ``thread_cpu_plugin`` folds into "main
thread", and issue 19's per-part target (2A <= 0.33 s) is about as large as that
fixed cost.  This reads the process's CPU (``time.process_time``: every thread,
user + system) and memory (``VmRSS``, and ``VmHWM``, the peak so far, from
``/proc/self/status``) at each phase boundary:

* ``plugins``: when this module is imported (``-p`` plugins are imported before
  the entry-point ones): the interpreter, ``import pytest``, the command line;
* ``configured``: ``pytest_configure``, every plugin (raftlab's) loaded;
* ``collected``: ``pytest_collection_finish``;
* per test: its set-up, call and tear-down (``<test> setup|call|teardown``);
* ``finished``: ``pytest_sessionfinish``; ``unconfigured``: the last hook.

It prints one table at the end and, with ``RAFTLAB_PHASES_JSON=FILE``, writes the
rows there as JSON.  What it costs itself: one file read per boundary.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator

import pytest


def _memory() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process in MB."""
    found = {"VmRSS:": 0.0, "VmHWM:": 0.0}
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for text in fh:
                key = text.split(None, 1)[0]
                if key in found:
                    found[key] = int(text.split()[1]) / 1024
    except OSError:
        pass
    return found["VmRSS:"], found["VmHWM:"]


_rows: list[dict] = []


def mark(phase: str) -> None:
    """Record the process's CPU and memory now, as the end of ``phase``."""
    rss, hwm = _memory()
    _rows.append({"phase": phase, "cpu_s": round(time.process_time(), 4),
                  "rss_mb": round(rss, 1), "hwm_mb": round(hwm, 1)})


mark("plugins")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    mark("configured")


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    mark("collected")


def _around(item: pytest.Item, when: str) -> Generator[None, None, None]:
    yield
    mark(f"{item.name} {when}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    yield from _around(item, "setup")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    yield from _around(item, "call")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    yield from _around(item, "teardown")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    mark("finished")


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    mark("unconfigured")
    print(f"\n{'phase':<44} {'CPU s':>7} {'+CPU s':>7} {'RSS MB':>7} {'peak MB':>7}")
    last = 0.0
    for row in _rows:
        print(f"{row['phase'][:44]:<44} {row['cpu_s']:7.3f} {row['cpu_s'] - last:7.3f} "
              f"{row['rss_mb']:7.1f} {row['hwm_mb']:7.1f}")
        last = row["cpu_s"]
    path = os.environ.get("RAFTLAB_PHASES_JSON")
    if path:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(_rows, fh, indent=2)
