"""pytest plugin for the overload self-tests: a machine that makes every timer late.

Loaded with ``-p fake_lag`` (its folder on PYTHONPATH) in a child pytest, it
replaces the harness's sampler factory with one whose first sample is
``RAFTLAB_TEST_FAKE_LAG_MS`` late and during which the process used no CPU --
what an overloaded machine looks like to the real sampler, which keeps
measuring after it.  Test-only: the harness has no switch that fakes lag.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from labtests import timing


class _LateSampler(timing.LagSampler):
    def start(self) -> _LateSampler:
        super().start()
        self.record(float(os.environ["RAFTLAB_TEST_FAKE_LAG_MS"]) / 1000.0, 0.0)
        return self


def _start_sampler(sim: bool = False,
                   on_new_max: Callable[[float], None] | None = None) -> timing.Sampler:
    if sim or timing.simulated():
        return timing.NoSampler()
    return _LateSampler(on_new_max=on_new_max).start()


def pytest_configure(config: pytest.Config) -> None:
    timing.start_sampler = _start_sampler
