"""``--race`` for pytest: the detector around each graded test's call phase.

Registered by :mod:`labtests.plugin` when the option is on (the option itself
is read, like every harness option, by :mod:`labtests.options`).  The wrapper
is outermost in the call phase, so it covers the test body and the harness's
cleanup (``kill()`` of every peer); in ``--sim`` it runs inside the
simulation, so the report is reproducible from the seed.  A race fails a test
that otherwise passed with :class:`~labtests.race.RaceFailure` (the report);
on a test that failed anyway, and with ``--race-warn``, the report is a
section of the test's report and a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Generator
from typing import Any

import pytest

from labtests.race import RaceFailure, detecting, format_races


class RaceWarning(UserWarning):
    """A data race found with ``--race-warn``."""


class RacePlugin:
    """One per session; ``implementation`` returns the loaded implementation."""

    def __init__(self, implementation: Callable[[], Any], *, simulated: bool,
                 warn: bool) -> None:
        self._implementation = implementation
        self._simulated = simulated
        self._warn = warn

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, Any, Any]:
        __tracebackhide__ = True  # pytest: show the test and the report, not this wrapper
        if "make_config" not in getattr(item, "fixturenames", ()):
            return (yield)
        impl = self._implementation()
        module = getattr(impl, "module", None)
        if module is None:  # not loadable (the test reports why) or isolated
            return (yield)
        with detecting(module, bundled=impl.is_bundled, simulated=self._simulated) as det:
            try:
                result = yield
            except BaseException:
                failed = True
                raise
            else:
                failed = False
            finally:
                text = format_races(det.races, det.dropped)
                if text:
                    item.add_report_section("call", "data races", text)
        if text and not failed:
            if self._warn:
                warnings.warn(RaceWarning(text), stacklevel=1)
            else:
                raise RaceFailure(text)
        return result
