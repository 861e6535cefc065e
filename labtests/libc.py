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

Functions are cached here too, one object per name and signature
(:func:`function`), so a caller keeps no cache of its own: it asks for the
function each time it needs it.

Calls made in a child between ``fork`` and ``exec`` (a ``preexec_fn``) must not
load anything there: resolve the function with :func:`function` in the parent,
call it in the child, and check its result with :func:`checked`.

Tests replace a libc function through one seam, :func:`replaced`: inside the
``with`` block every lookup of that name (by :func:`function` and :func:`call`,
with or without types) gets the replacement, or nothing for ``None`` (as where
the C library has no such function), and the cache is left as it was.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

_UNLOADED: Any = object()
_libc: Any = _UNLOADED
# (name, argtypes, restype) -> the function object, or None when the library has no such
# symbol; only for the library loaded (a lookup without one returns None first).
_functions: dict[tuple[str, tuple[Any, ...] | None, Any], Any] = {}
_replaced: dict[str, Callable[..., Any] | None] = {}  # the tests' seam (replaced())


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

    Without types it is ctypes' own function object; with ``argtypes``/``restype``
    (ctypes types, or their names such as ``"c_size_t"``, so that a caller need not
    import ctypes) it is an object with those types.  Either is looked up once and
    cached per name and types, and shared by every caller asking the same: do not
    change its types.
    """
    if _replaced and name in _replaced:
        return _replaced[name]
    lib = libc()
    if lib is None:
        return None
    key = (name, None if argtypes is None else tuple(argtypes), restype)
    try:
        return _functions[key]
    except KeyError:
        pass
    fn = _resolve(lib, name, argtypes, restype)
    _functions[key] = fn
    return fn


def _resolve(lib: Any, name: str, argtypes: Sequence[Any] | None, restype: Any) -> Any:
    try:
        if argtypes is None and restype is None:
            return getattr(lib, name)
        fn = lib[name]  # an object of its own: types set on it change no other
    except AttributeError:
        return None
    import ctypes  # loaded already by libc()

    def ctype(t: Any) -> Any:
        return getattr(ctypes, t) if isinstance(t, str) else t

    if argtypes is not None:
        fn.argtypes = [ctype(t) for t in argtypes]
    if restype is not None:
        fn.restype = ctype(restype)
    return fn


@contextmanager
def replaced(name: str, fn: Callable[..., Any] | None) -> Iterator[None]:
    """Tests' seam: within the block, libc's ``name`` is ``fn`` to every caller (None:
    the C library has no such function).  Nothing is loaded or cached for it."""
    before = _replaced.get(name, _UNLOADED)
    _replaced[name] = fn
    try:
        yield
    finally:
        if before is _UNLOADED:
            del _replaced[name]
        else:
            _replaced[name] = before


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
