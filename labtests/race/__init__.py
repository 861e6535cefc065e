"""``--race``: a happens-before data-race detector for the implementation's threads.

Python's GIL hides torn writes, not races: a field read outside the lock and
acted on later passes a hundred runs and fails the next.  With ``--race`` each
graded test records reads and writes of the implementation's fields (instance
attributes of classes defined in its files, and the contents of the lists,
dicts and sets held in them) with the accessing thread, the
locks it holds and a vector clock kept through the synchronisation the lab
allows (locks, conditions, events, queues, thread start/join; the apply
channel and labrpc are built from those).  Two accesses from different
threads, one a write, neither happening before the other, are a race; the test
fails with the report (``--race-warn``: a warning instead).  See docs/race.md.

Modules: :mod:`.detector` (clocks and the check), :mod:`.instrument` (the
hooks), :mod:`.containers` (tracked lists, dicts and sets), :mod:`.scope`
(which code is the implementation), :mod:`.report` (the text),
:mod:`.pytest_plugin` (one test at a time).

Public API::

    with detecting(module, bundled=..., simulated=...) as det:
        ...                      # run the test
    text = format_races(det.races, det.dropped)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from labtests.race.detector import Access, Detector, Race
from labtests.race.instrument import instrumented
from labtests.race.report import format_races
from labtests.race.scope import Scope

__all__ = ["Access", "Detector", "Race", "RaceFailure", "Scope", "detecting", "format_races"]


class RaceFailure(AssertionError):
    """A test had data races; the message is the report."""


@contextmanager
def detecting(module: ModuleType, *, bundled: bool, simulated: bool) -> Iterator[Detector]:
    """Record races in the implementation ``module`` for the duration of the body."""
    scope = Scope(module, bundled)
    det = Detector(simulated=simulated)
    with instrumented(det, scope.modules(), simulated=simulated):
        yield det
