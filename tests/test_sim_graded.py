"""Graded tests under simulation: they pass fast, and one seed gives one run."""

from __future__ import annotations

import io
import logging
import time

import pytest

pytest.importorskip("greenlet")

from labtests import test_2a, test_2b  # noqa: E402
from labtests.driver import run_graded  # noqa: E402
from raft import debuglog  # noqa: E402


def test_2a_initial_election_passes_in_simulation_fast():
    wall0 = time.perf_counter()
    result = run_graded(test_2a.test_initial_election_2a, seed=1)
    wall = time.perf_counter() - wall0
    assert result.figures is not None and result.figures["peers"] == 3
    assert result.virtual_s >= 2 * 1.0  # it slept 2 election timeouts in virtual time
    assert wall < 5.0


def test_2b_basic_agree_passes_in_simulation():
    result = run_graded(test_2b.test_basic_agree_2b, seed=2)
    assert result.figures is not None and result.figures["commits"] >= 3


def _debug_log(test_fn, seed: int) -> str:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logging.Formatter("%(message)s"))
    debuglog.logger.addHandler(handler)
    was = debuglog.enabled()
    debuglog.enable(True)
    try:
        run_graded(test_fn, seed)
    finally:
        debuglog.enable(was)
        debuglog.logger.removeHandler(handler)
    return buf.getvalue()


def test_same_seed_gives_the_same_debug_log_byte_for_byte():
    first = _debug_log(test_2a.test_re_election_2a, 42)
    second = _debug_log(test_2a.test_re_election_2a, 42)
    assert first.count("\n") > 50
    assert first == second
    assert _debug_log(test_2a.test_re_election_2a, 43) != first
