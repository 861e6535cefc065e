"""The failure channel: how a check failing anywhere fails the current test.

Go has two ways to fail: ``t.Fatalf`` ends the calling goroutine and marks the
test failed; ``log.Fatalf`` (apply errors) kills the whole test binary.  Here
both become one thing: the *current test* fails with the original message and
the run goes on to the next test.

* In the test's main thread, :meth:`FailureChannel.fail` raises
  :class:`RaftTestFailure` at once.
* In a helper thread (an apply reader, a churn client, a concurrent ``one()``),
  it records the message and raises :class:`HelperThreadExit`, which ends that
  thread quietly (helper threads are started through :func:`run_helper`).
* Failures seen where raising is not possible (an RPC handler raising on a
  network pool thread, an uncaught exception in the Raft's own threads) are
  only :meth:`recorded <FailureChannel.record>`.

The main thread re-raises the first recorded failure at its next harness call
(:meth:`FailureChannel.check`) and when the test ends, so the test fails with
the message of the first thing that went wrong.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import Any


class RaftTestFailure(AssertionError):
    """A graded test failed: the message is the lab's own failure text."""


class HelperThreadExit(BaseException):
    """Ends a helper thread after it recorded a failure (not an error in itself)."""


class FailureChannel:
    """Records the first failure of one test and delivers it to the main thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._first: str | None = None
        self._where: str | None = None
        self._event = threading.Event()
        self.main_thread = threading.current_thread()

    # -- recording -------------------------------------------------------------

    def record(self, msg: str) -> None:
        """Remember ``msg`` if it is the first failure of this test."""
        where = threading.current_thread().name
        with self._lock:
            if self._first is None:
                self._first = msg
                self._where = where
        self._event.set()

    def fail(self, msg: str) -> None:
        """Fail the test with ``msg``: raise in the main thread, end a helper thread."""
        __tracebackhide__ = True  # show the test line, not the harness plumbing
        self.record(msg)
        if threading.current_thread() is self.main_thread:
            raise RaftTestFailure(self.first_message())
        raise HelperThreadExit(msg)

    # -- delivering ------------------------------------------------------------

    @property
    def failed(self) -> bool:
        return self._event.is_set()

    def first_message(self) -> str:
        with self._lock:
            msg, where = self._first or "", self._where
        if where is not None and where != self.main_thread.name:
            return f"{msg}\n(reported by thread {where!r})"
        return msg

    def check(self) -> None:
        """Deliver a recorded failure: raise it in the main thread, end a helper thread.

        (A helper of a test that has already failed has nothing left to check.)
        """
        __tracebackhide__ = True  # show the test line, not the harness plumbing
        if self._event.is_set():
            if threading.current_thread() is self.main_thread:
                raise RaftTestFailure(self.first_message())
            raise HelperThreadExit("the test has already failed")

    def sleep(self, seconds: float) -> None:
        """Sleep like ``time.sleep``, but wake early (and fail) on a recorded failure."""
        __tracebackhide__ = True  # show the test line, not the harness plumbing
        if seconds > 0:
            self._event.wait(seconds)
        self.check()


def run_helper(channel: FailureChannel, target: Callable[..., Any], *args: Any) -> Any:
    """Run ``target(*args)`` as the body of a helper thread.

    A failure the helper reported through the channel ends it quietly; any other
    exception is a harness-side crash and is recorded with its traceback.
    """
    try:
        return target(*args)
    except HelperThreadExit:
        return None
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        channel.record(
            f"helper thread {threading.current_thread().name} crashed: {exc!r}\n"
            + traceback.format_exc()
        )
        return None


def start_helper(
    channel: FailureChannel, name: str, target: Callable[..., Any], *args: Any
) -> threading.Thread:
    """Start a named daemon helper thread whose failures reach the test."""
    thread = threading.Thread(
        target=run_helper, args=(channel, target, *args), name=name, daemon=True
    )
    thread.start()
    return thread
