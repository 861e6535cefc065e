"""labtests/libc.py: one lazy, cached loader of the C library, and its errno convention;
and that its users (timer slack, heap trimming, the isolated peers' prctl) load nothing
at import and still do nothing where there is no C library."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest

from labtests import heap, libc, timerslack
from labtests.isolation import procs

REPO = Path(__file__).resolve().parents[1]
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")


class CustomError(OSError):
    pass


def test_importing_the_users_of_libc_loads_no_ctypes():
    code = ("import sys, json\n"
            "import labtests.libc, labtests.heap, labtests.timerslack, "
            "labtests.isolation.procs\n"
            "print(json.dumps(['ctypes' in sys.modules, labtests.libc._libc is "
            "labtests.libc._UNLOADED]))\n"
            "labtests.heap.maybe_trim()\n"
            "print(json.dumps(['ctypes' in sys.modules, labtests.heap.available()]))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=60, check=True).stdout.split("\n")
    assert json.loads(out[0]) == [False, True]  # nothing loaded at import ...
    assert json.loads(out[1])[0] is True  # ... and loaded on the first use


@linux_only
def test_the_library_is_loaded_once_and_functions_are_found():
    assert libc.libc() is not None and libc.libc() is libc.libc()
    assert libc.function("prctl") is libc.function("prctl")  # ctypes' shared object
    assert libc.function("no_such_function_in_libc_4f2a") is None
    import ctypes

    typed = libc.function("getpid", [], ctypes.c_long)
    assert typed is not None and typed is not libc.function("getpid")
    assert typed is libc.function("getpid", [], ctypes.c_long)  # cached per name and types
    assert typed.restype is ctypes.c_long and typed.argtypes == []
    assert libc.function("getpid").restype is ctypes.c_int  # ctypes' own object unchanged
    named = libc.function("getpid", [], "c_long")  # types by name: no ctypes in the caller
    assert named is not None and named.restype is ctypes.c_long
    assert named is libc.function("getpid", [], "c_long")
    trim = libc.function("malloc_trim", ["c_size_t"], "c_int")
    if trim is not None:  # glibc
        assert trim.argtypes == [ctypes.c_size_t] and trim.restype is ctypes.c_int
    assert libc.call("getpid") == typed() == named() > 0


@linux_only
def test_a_failed_call_raises_with_errno_and_names_the_call():
    with pytest.raises(OSError) as caught:
        libc.call("prctl", 0x7FFF, 0, 0, 0, 0, what="prctl(bogus)")
    assert caught.value.errno == errno.EINVAL
    assert str(caught.value).startswith("[Errno 22] prctl(bogus): ")
    with pytest.raises(CustomError):
        libc.call("prctl", 0x7FFF, 0, 0, 0, 0, error=CustomError)
    assert libc.checked(0, "anything") == 0 and libc.checked(7, "anything") == 7


def test_without_a_c_library_callers_do_nothing_and_calls_say_why(monkeypatch):
    monkeypatch.setattr(libc, "_libc", None)  # as where ctypes finds no C library
    assert libc.function("prctl") is None
    with pytest.raises(CustomError) as caught:
        libc.call("prctl", 1, 0, 0, 0, 0, error=CustomError)
    assert caught.value.errno == errno.ENOSYS
    # Timer slack and trimming do nothing, and never raise (they keep no cache of their
    # own that could still hold a function).
    assert timerslack.coalesce_timers() is False
    assert timerslack.current_slack_ns() is None
    assert heap.available() is False and heap.trim() is False
    heap.maybe_trim()
    # The isolated peers' plumbing cannot work without prctl: it says so at once.
    with pytest.raises(OSError, match="prctl"):
        procs.become_subreaper()
    with pytest.raises(OSError, match="prctl"):
        procs.dies_with(1)


def test_the_seam_replaces_a_function_for_every_caller_and_restores_it():
    calls = []

    def fake(*args):  # noqa: ANN002, ANN202
        calls.append(args)
        return 0

    before = libc.function("prctl")
    with libc.replaced("prctl", fake):
        assert libc.function("prctl") is fake
        assert libc.function("prctl", ["c_int"], "c_int") is fake  # with types too
        assert libc.call("prctl", 1, 2, 3, 4, 5) == 0
        with libc.replaced("prctl", None):  # as if the C library had none
            assert libc.function("prctl") is None
            with pytest.raises(OSError) as caught:
                libc.call("prctl", 1, 0, 0, 0, 0)
            assert caught.value.errno == errno.ENOSYS
        assert libc.function("prctl") is fake
    assert calls == [(1, 2, 3, 4, 5)]
    assert libc.function("prctl") is before
    assert not libc._replaced
