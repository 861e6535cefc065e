"""Forks of the test process: the copy is ended at once, before it runs one more line.

Why: the lab's Raft runs in threads, but nothing stops one from calling ``os.fork()``.
A fork in ``make()`` gave a *copy of the test process* that ran on after the test --
it ran the harness too, its output doubled the run's, and one that blocked (a copy
asleep in ``make()``) was still alive an hour after ``raftlab test`` had said ``1
passed``, re-parented to init.  Under pytest-xdist the copy reported to the
controller over the worker's own channel -- a Passed line beside the real FAILED
one, and two tests of the run left with no result at all.  A fork as the Raft's
module was imported made a copy that ran the whole session beside the real one:
under xdist both reported the same tests and the controller ended in ``INTERNALERROR
... list.remove(x)``, exit status 3; in isolated mode the copy was a second template
process reading the tester's control socket.

So while a test runs (:func:`watch_forks`, labtests.context) and while the Raft's
module is imported (:func:`forks_ended`, labtests.impl_loader), a fork made in Python
(``os.fork``, ``multiprocessing``'s fork, ``pty.fork``: whatever runs
``os.register_at_fork``'s handlers) ends the copy with exit status 0 before it
returns to the code that forked; the forking process goes on, and the test's report
says how many copies were ended.  A program started with ``subprocess`` is not a copy
(no handler runs in it): labtests/child_processes.py finds it after the cleanup.

Imports nothing of the harness: the loader and the test context both use it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


class ForkWatch:
    """The forks of one process during one watch (:func:`watch_forks`)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.forks = 0


_watch: ForkWatch | None = None
_handlers_registered = False


def watch_forks() -> ForkWatch:
    """From now until :func:`unwatch_forks`, a fork of this process ends the copy at once
    (exit status 0) and is counted here."""
    global _watch, _handlers_registered
    if not _handlers_registered:
        os.register_at_fork(after_in_parent=_forked_in_parent, after_in_child=_forked_in_copy)
        _handlers_registered = True
    _watch = ForkWatch()
    return _watch


def unwatch_forks(watch: ForkWatch) -> None:
    global _watch
    if _watch is watch:
        _watch = None


@contextmanager
def forks_ended() -> Iterator[ForkWatch]:
    """:func:`watch_forks` for a stretch of code that is not a test (the import of the
    Raft's module); the watch in force before, if any, is back in force after."""
    global _watch
    previous = _watch
    watch = watch_forks()
    try:
        yield watch
    finally:
        _watch = previous


def _forked_in_parent() -> None:
    watch = _watch
    if watch is not None and os.getpid() == watch.pid:
        watch.forks += 1


def _forked_in_copy() -> None:
    watch = _watch
    if watch is not None and os.getppid() == watch.pid:
        os._exit(0)  # before the copy runs one more line of the Raft or of the harness
