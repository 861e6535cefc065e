"""This process's C library through ctypes: loaded once, on first use, errno kept.

Why one module: the harness and the grader call a few libc functions Python has
no binding for (``prctl`` for timer slack, a peer's parent-death signal and the
subreaper; ``malloc_trim``; ``mount``/``unshare`` for the grader's sandbox).  Each
caller used to load libc its own way, some at import time: every pytest process
then paid for importing ctypes (2.4-3 ms in 4 of 5 ``python -X importtime`` runs,
12 ms in the fifth) before its first test, whether or not it called anything.
Here the library is loaded on the first call and cached, a missing library or
symbol is ``None`` (the callers decide what that means: timer slack and trimming
just do nothing), and the C convention "-1 and errno" becomes an
:class:`OSError` in one place.

Calls made in a child between ``fork`` and ``exec`` (a ``preexec_fn``) must not
load anything there: resolve the function with :func:`function` in the parent,
call it in the child, and check its result with :func:`checked`.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Sequence
from typing import Any

_UNLOADED: Any = object()
_libc: Any = _UNLOADED


def libc() -> Any | None:
    """The C library (``ctypes.CDLL(None, use_errno=True)``), or None where ctypes has none."""
    global _libc
    if _libc is _UNLOADED:
        try:
            import ctypes

            _libc = ctypes.CDLL(None, use_errno=True)
        except (ImportError, OSError):  # no ctypes, or no C library to open
            _libc = None
    return _libc


def function(name: str, argtypes: Sequence[Any] | None = None,
             restype: Any = None) -> Callable[..., Any] | None:
    """libc's ``name``, or None if there is no C library or no such symbol.

    Without types it is ctypes' shared, cached function object (do not set types on
    it); with ``argtypes``/``restype`` it is a function object of the caller's own.
    """
    lib = libc()
    if lib is None:
        return None
    try:
        if argtypes is None and restype is None:
            return getattr(lib, name)  # type: ignore[no-any-return]
        fn = lib[name]
    except AttributeError:
        return None
    if argtypes is not None:
        fn.argtypes = list(argtypes)
    if restype is not None:
        fn.restype = restype
    return fn  # type: ignore[no-any-return]


def checked(result: int, what: str, error: type[OSError] = OSError) -> int:
    """``result`` of a libc call, or ``error(errno, "<what>: <strerror>")`` if it is -1."""
    if result == -1:
        import ctypes  # loaded already: the call went through it

        err = ctypes.get_errno()
        raise error(err, f"{what}: {os.strerror(err)}")
    return result


def call(name: str, *args: Any, what: str | None = None,
         error: type[OSError] = OSError) -> int:
    """libc's ``name(*args)``, errno-checked (:func:`checked`); ``what`` names it in errors.

    Raises ``error`` (ENOSYS) where there is no C library or no such function.
    """
    fn = function(name)
    if fn is None:
        raise error(errno.ENOSYS, f"{what or name}: no such function in this process's "
                                  "C library (Linux with glibc or musl has it)")
    return checked(fn(*args), what or name, error)
