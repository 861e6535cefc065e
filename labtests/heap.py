"""Hand the C heap's free pages back to the OS while a graded test runs (glibc ``malloc_trim``).

Why: a test process's peak RSS was mostly memory already freed.  The Raft
peers, the network's workers and the tester's appliers each allocate from
glibc's per-thread arenas; the large short-lived buffers of a busy test
(pickled RPCs, persisted state of a long log, the resized tables of the
tester's logs) leave free holes there that glibc keeps, because it only gives
back memory at the top of an arena.  Measured in the 2C churn test (3 000+
commits): 24 MB of arenas of which 15 MB free at the peak (``mallinfo2``),
against a Python-level peak of 9 MB (tracemalloc).  ``malloc_trim(0)`` returns
every whole free page of every arena (``madvise``); the objects and their
addresses do not change, so no semantics do.  Go's runtime does the same with
its scavenger.

:func:`maybe_trim` is cheap enough to call on every tester wait: it trims at
most once per :data:`TRIM_PERIOD_S` of real time (a trim costs about 10 ms
when it has 20 MB to hand back, well under 1 ms otherwise).  Where there is no
glibc (macOS, musl) it does nothing.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from time import monotonic as _real_monotonic  # the real clock, even under --sim

from labtests import libc

TRIM_PERIOD_S = 0.5  # at most one trim per this many real seconds

_last = [float("-inf")]
_frozen: list[bool] = []


def _trim_fn() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``; None without ctypes or glibc (macOS, musl): nothing to trim.

    Looked up (and cached) by :mod:`labtests.libc` on the first trim, not at import:
    every pytest process imports this module, and ctypes costs a few ms to import.
    """
    return libc.function("malloc_trim", ["c_size_t"], "c_int")


def available() -> bool:
    """Whether this process's C library can trim (glibc)."""
    return _trim_fn() is not None


def trim() -> bool:
    """Return the free pages of every malloc arena to the OS now; True if any were."""
    _last[0] = _real_monotonic()
    fn = _trim_fn()
    return bool(fn(0)) if fn is not None else False


def freeze_once() -> None:
    """Move every object alive now to the collector's permanent generation, once per process.

    Called when the first cluster of the process is built: what is alive then
    (pytest, the collected tests, the modules: about 34 000 tracked objects) lives
    to the end anyway.  The cyclic collector then no longer traverses it: a full
    collection costs 0.3-1 ms instead of about 22 ms, both the one
    :meth:`labtests.config.Config.release` makes after each test and the
    interpreter's own.  (A child forked after this inherits the frozen set.)
    """
    if not _frozen:
        _frozen.append(True)
        gc.freeze()


def maybe_trim() -> None:
    """:func:`trim` if the last one is :data:`TRIM_PERIOD_S` old (racy by design: two
    threads may both trim, which is harmless)."""
    if _real_monotonic() - _last[0] >= TRIM_PERIOD_S and _trim_fn() is not None:
        trim()
