"""Every place where the simulation touches an interpreter detail, and nothing else.

The rest of the engine uses documented interfaces: ``threading``'s public
classes and functions, ``threading.excepthook``, greenlet's API.  Four things
have no documented interface, and they differ between CPython versions:

1. **A simulated thread's Thread object.**  ``Thread.start`` is replaced while a
   simulation is active, so the real one never runs; for ``thread.ident``,
   ``repr(thread)`` and the ``daemon`` setter to behave, the private fields it
   would have set are set here (:func:`mark_started`).  When the simulated
   thread ends, the object must read as ended to the *real* ``is_alive`` and
   ``join`` (they are back once the simulation ends): 3.11 and 3.12 keep that
   in ``_is_stopped``/``_tstate_lock``, 3.13 in a ``_ThreadHandle``, which only
   a handle made by ``_thread._make_thread_handle`` can be marked done on
   (:func:`mark_stopped`).
2. **Private aliases of the clock.**  ``threading`` and ``queue`` bind
   ``time.monotonic`` under their own names (``threading._time``,
   ``queue.time``) for their timed waits; the simulation replaces those names
   too (:func:`patch_entries`).
3. **``threading.local``.**  The C implementation keys on the OS thread, which
   every simulated thread shares; the pure-Python one in ``_threading_local``
   asks ``current_thread()``, which the simulation answers (:func:`patch_entries`).
4. **Frames.**  The deadlock report and the lock's "created at" read the
   caller's frame with ``sys._getframe`` (:func:`caller_frame`).

:data:`KNOWN_VERSIONS` lists the interpreters these details were checked on.
:func:`problems` probes each assumption on the running interpreter; the
engine refuses to start if one fails (:func:`ensure_supported`), and
``tests/test_sim_interp.py`` fails on an interpreter not in the list, naming
this module as the thing to update.
"""

from __future__ import annotations

import _threading_local
import itertools
import queue
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

KNOWN_VERSIONS: tuple[tuple[int, int], ...] = ((3, 11), (3, 12), (3, 13))
VERSION = sys.version_info[:2]
_HANDLES = VERSION >= (3, 13)  # Thread state lives in a _ThreadHandle from 3.13 on

os_thread_ident: Callable[[], int] = threading.get_ident  # the real one, bound before patching


class UnsupportedInterpreter(RuntimeError):
    """The running interpreter breaks an assumption of this module."""


# -- 1. a simulated thread's Thread object -----------------------------------------------


def mark_started(thread: threading.Thread, ident: int) -> None:
    """Make ``thread`` read as started, with ``ident`` as its ident (and native id)."""
    thread._ident = ident  # type: ignore[attr-defined]
    if hasattr(thread, "_native_id"):
        thread._native_id = ident  # type: ignore[attr-defined]
    thread._started.set()  # type: ignore[attr-defined]


def mark_stopped(thread: threading.Thread) -> None:
    """Make ``thread`` read as ended to the real ``is_alive``/``join``/``repr``."""
    if _HANDLES:
        import _thread

        handle = _thread._make_thread_handle(thread.ident or 0)  # type: ignore[attr-defined]
        handle._set_done()
        thread._handle = handle  # type: ignore[attr-defined]
    else:
        thread._is_stopped = True  # type: ignore[attr-defined]
        thread._tstate_lock = None  # type: ignore[attr-defined]


def report_thread_exception(thread: threading.Thread, exc: BaseException) -> None:
    """What a real thread does with an uncaught exception: ``threading.excepthook``.

    Uses only public names (``threading.ExceptHookArgs`` is in ``threading.__all__``);
    kept here because it stands in for ``Thread``'s private ``_invoke_excepthook``.
    """
    args = threading.ExceptHookArgs((type(exc), exc, exc.__traceback__, thread))
    try:
        threading.excepthook(args)
    except Exception:  # noqa: BLE001 - as threading does: fall back to sys.excepthook
        sys.excepthook(*sys.exc_info())


# -- 2 and 3. names to patch besides the public ones ---------------------------------------


def patch_entries(monotonic: Callable[[], float],
                  current_thread: Callable[[], threading.Thread]) -> list[tuple[Any, str, Any]]:
    """(object, attribute, simulated value) for the private names the simulation replaces.

    ``threading._counter`` numbers unnamed threads (``Thread-N``) for the whole
    process: each simulation counts from 1 again (and the real count goes on
    after it), so a thread's name in a report or a debug log does not depend on
    what the process ran before -- a run in a suite names its threads as its
    replay alone does.
    """
    return [
        (threading, "_counter", itertools.count(1).__next__),
        (threading, "_time", monotonic),
        (queue, "time", monotonic),
        (threading, "local", _threading_local.local),
        (_threading_local, "current_thread", current_thread),
    ]


# -- 4. frames ---------------------------------------------------------------------------


def caller_frame(depth: int) -> FrameType | None:
    """The frame ``depth`` levels above the caller of this function, or None."""
    try:
        return sys._getframe(depth + 1)
    except ValueError:
        return None


# -- the checks ----------------------------------------------------------------------------


def _names_from_counter() -> bool:
    """Whether an unnamed Thread takes its number from ``threading._counter``."""
    real = threading.__dict__.get("_counter")
    if not callable(real):
        return False
    threading._counter = itertools.count(4242).__next__  # type: ignore[attr-defined]
    try:
        return threading.Thread(target=lambda: None).name.startswith("Thread-4242")
    finally:
        threading._counter = real  # type: ignore[attr-defined]


def problems() -> list[str]:
    """Each assumption above that the running interpreter breaks (empty if none)."""
    found: list[str] = []
    if threading.__dict__.get("_time") is not time.monotonic:
        found.append("threading._time is not time.monotonic (threading's timed waits "
                     "read the clock under another name)")
    if queue.__dict__.get("time") is not time.monotonic:
        found.append("queue.time is not time.monotonic (queue's timed waits read the "
                     "clock under another name)")
    if getattr(_threading_local, "current_thread", None) is not threading.current_thread:
        found.append("_threading_local no longer looks up threading.current_thread")
    if not _names_from_counter():
        found.append("threading no longer names unnamed threads from threading._counter")
    if not hasattr(threading, "ExceptHookArgs"):
        found.append("threading.ExceptHookArgs is gone")
    thread = threading.Thread(target=lambda: None, name="interp-probe")
    for attr in ("_ident", "_started"):
        if not hasattr(thread, attr):
            found.append(f"threading.Thread has no {attr} attribute")
    if not found:
        try:
            mark_started(thread, 1 << 41)
            if thread.ident != 1 << 41:
                found.append("mark_started() does not set Thread.ident")
            mark_stopped(thread)
            if thread.is_alive():
                found.append("mark_stopped() does not make Thread.is_alive() false")
            thread.join(0)
        except Exception as exc:  # noqa: BLE001 - the probe reports whatever breaks
            found.append(f"marking a Thread started/stopped failed: {exc!r}")
    if caller_frame(0) is None:
        found.append("sys._getframe does not return frames")
    return found


_checked: list[str] | None = None


def ensure_supported() -> None:
    """Raise :class:`UnsupportedInterpreter` if an assumption fails (probed once)."""
    global _checked
    if _checked is None:
        _checked = problems()
    if _checked:
        raise UnsupportedInterpreter(
            f"simulated time cannot run on Python {VERSION[0]}.{VERSION[1]}: "
            + "; ".join(_checked)
            + " -- update labtests/sim/interp.py for this version")
