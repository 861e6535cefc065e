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

Two refinements keep that message precise:

* A *cause* (:meth:`FailureChannel.record_cause`: an RPC that could not be
  encoded, a call to an unknown method) is the kind of error a Raft often
  swallows in its own thread, after which the test fails much later with
  ``expected one leader, got none``.  The first cause of each kind fails the
  test like any failure, and is added to the message if something else was
  recorded first, so the real reason is always in the verdict.
* A failure may be marked as a known *artifact* of the lab's tests (see
  docs/harness.md, Known artifacts): the verdict stays a failure, and
  :attr:`FailureChannel.artifact` names the pattern so reports can count it.

Messages are bounded (:func:`labtests.output.bound_text`): a repr of a huge
object must not make a verdict megabytes long.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import Any

from labtests.output import bound_text

MESSAGE_HEAD, MESSAGE_TAIL = 8_000, 8_000  # characters kept of one failure message


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
        self._artifact: str | None = None
        self._causes: dict[str, str] = {}  # kind -> the first cause of that kind
        self._event = threading.Event()
        self.main_thread = threading.current_thread()

    # -- recording -------------------------------------------------------------

    def record(self, msg: str, artifact: str | None = None) -> None:
        """Remember ``msg`` if it is the first failure of this test.

        ``artifact`` names the known artifact of the lab's tests this failure
        matches; it is kept only with the failure that comes first.
        """
        where = threading.current_thread().name
        with self._lock:
            if self._first is None:
                self._first = bound_text(msg, MESSAGE_HEAD, MESSAGE_TAIL)
                self._where = where
                self._artifact = artifact
        self._event.set()

    def record_cause(self, kind: str, msg: str) -> None:
        """Record a precise cause of failure; only the first of each ``kind`` is kept."""
        with self._lock:
            if kind in self._causes:
                return
            self._causes[kind] = bound_text(msg, MESSAGE_HEAD, MESSAGE_TAIL)
        self.record(msg)

    def fail(self, msg: str, artifact: str | None = None) -> None:
        """Fail the test with ``msg``: raise in the main thread, end a helper thread."""
        __tracebackhide__ = True  # show the test line, not the harness plumbing
        self.record(msg, artifact)
        if threading.current_thread() is self.main_thread:
            raise RaftTestFailure(self.first_message())
        raise HelperThreadExit(msg)

    # -- delivering ------------------------------------------------------------

    @property
    def failed(self) -> bool:
        return self._event.is_set()

    @property
    def artifact(self) -> str | None:
        """The known artifact the first failure matches (docs/harness.md), if any."""
        with self._lock:
            return self._artifact

    def first_message(self) -> str:
        """The first failure, where it came from, and the first causes of other kinds."""
        with self._lock:
            msg, where = self._first or "", self._where
            also = [c for c in self._causes.values() if c != self._first]
        if where is not None and where != self.main_thread.name:
            msg = f"{msg}\n(reported by thread {where!r})"
        for cause in also:
            msg = f"{msg}\nalso: {cause}"
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
