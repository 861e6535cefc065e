"""Shared by the timer-slack and batch-scheduling tests: both settings are per thread,
set by the harness before a test starts anything, and inherited by what it starts."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[1]
PLUGINS = Path(__file__).parent / "overload_plugins"
T = TypeVar("T")


def in_thread(fn: Callable[[], T]) -> T:
    """``fn()`` run in a fresh thread (so that its per-thread settings die with it)."""
    out: list[T] = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


def here_in_a_thread_and_in_a_child(module: str, getter: str) -> tuple[int, int, int]:
    """``labtests.<module>.<getter>()`` (a per-thread setting) as the calling thread sees
    it, as a thread it starts sees it, and as a process it starts sees it."""
    read = getattr(importlib.import_module(f"labtests.{module}"), getter)
    child = subprocess.run(
        [sys.executable, "-c", f"from labtests import {module}; print({module}.{getter}())"],
        capture_output=True, text=True, cwd=REPO, check=True).stdout.strip()
    return read(), in_thread(read), int(child)


def raft_threads_of_a_graded_test(tmp_path: Path) -> dict:
    """What ``overload_plugins/record_slack.py`` saw in a real-time
    ``test_initial_election_2a`` (three peers): ``threads``, ``[thread name, timer slack
    ns, scheduling policy, [cpus]]`` of each bundled-Raft ticker and applier thread as it
    started (six); ``wide``, the process's CPUs before the test; ``after``, every
    thread's CPUs once it ended."""
    out = tmp_path / "seen.json"
    env = dict(os.environ, RAFTLAB_TEST_SLACK_OUT=str(out), PYTHONPATH=os.pathsep.join(
        [str(PLUGINS), *filter(None, [os.environ.get("PYTHONPATH")])]))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "record_slack",
         "--pyargs", "labtests", "-k", "test_initial_election_2a"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seen = json.loads(out.read_text())
    assert len(seen["threads"]) == 6, seen  # 3 peers: a ticker and an applier each
    return seen
