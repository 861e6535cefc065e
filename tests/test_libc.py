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
    typed = libc.function("getpid", [], None)
    assert typed is not None and typed is not libc.function("getpid")
    import ctypes

    typed.restype = ctypes.c_long  # the caller's own object: the shared one is unchanged
    assert libc.function("getpid").restype is ctypes.c_int
    assert libc.call("getpid") == typed() > 0


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
    # Timer slack and trimming do nothing, and never raise.
    monkeypatch.setattr(timerslack, "_prctl", None)
    assert timerslack.coalesce_timers() is False
    assert timerslack.current_slack_ns() is None
    monkeypatch.setattr(heap, "_TRIM", heap._UNLOADED)
    assert heap.available() is False and heap.trim() is False
    heap.maybe_trim()
    # The isolated peers' plumbing cannot work without prctl: it says so at once.
    with pytest.raises(OSError, match="prctl"):
        procs.become_subreaper()
    with pytest.raises(OSError, match="prctl"):
        procs.dies_with(1)
