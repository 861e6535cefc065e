"""Waking one waiting thread cheaply: the rendezvous of a call and its handler.

Why pipes: with the GIL, a thread woken by ``lock.release()`` is woken on the
other core while its waker still holds the GIL, so it wakes only to wait for
the GIL; a thread woken by ``os.write`` on a pipe is woken after its waker
dropped the GIL for the system call, and Linux wakes a pipe reader on its
waker's core.  Measured on the 2-core lab machine, a hand-off and back costs
18-54 µs through two locks and 6-8 µs through two pipes, and that round trip
is most of an RPC (``benchmarks/labrpc_bench.py`` prints the figures).

Pipes are used only in real time.  When ``threading`` is patched (simulated
time, the race detector), a hand-off must go through the patched primitives,
so that the simulation can schedule it and the detector sees the
happens-before edge; :func:`real_threading` says which case holds, and each
object decides once, when it is made.
"""

from __future__ import annotations

import _queue
import _thread
import os
import queue
import threading


def real_threading() -> bool:
    """True unless ``threading.Lock`` or ``queue.SimpleQueue`` has been replaced."""
    return threading.Lock is _thread.allocate_lock and queue.SimpleQueue is _queue.SimpleQueue


class PipeStock:
    """Reusable pipes for one network's rendezvous; closed with the network.

    A pipe is in use by one rendezvous at a time and returns to the stock
    empty (exactly one byte is written to it and read from it per use), so
    there are only ever as many pipes as calls that waited at the same time.

    No lock: taking and giving back are one ``list.pop`` / ``list.append``
    each, atomic under the GIL, and the stock exists only in real time.  A
    lock here cost two of an RPC's nine lock round trips
    (``benchmarks/labrpc_bench.py``).  :meth:`give` re-reads ``_closed`` after
    its append, so a pipe given back while :meth:`close` runs is closed by one
    of the two, never left open.
    """

    def __init__(self) -> None:
        self._free: list[tuple[int, int]] = []
        self._closed = False

    def take(self) -> tuple[int, int]:
        try:
            return self._free.pop()
        except IndexError:
            return os.pipe()

    def give(self, pipe: tuple[int, int]) -> None:
        self._free.append(pipe)
        if self._closed:  # close() ran, or runs now: one of us closes what is left
            self._drain()

    def close(self) -> None:
        """Close the free pipes; a pipe given back later is closed at once."""
        self._closed = True
        self._drain()

    def _drain(self) -> None:
        while True:
            try:
                pipe = self._free.pop()
            except IndexError:
                return
            _close(pipe)


def _close(pipe: tuple[int, int]) -> None:
    for fd in pipe:
        os.close(fd)


class Rendezvous:
    """One waiter, and several parties that may end its wait; exactly one of them does.

    A party calls :meth:`claim`; the one that gets True sets the outcome and
    calls :meth:`wake`.  The others leave everything alone, so the waiter
    is woken exactly once and a late party never touches a pipe that has
    gone back to the stock.  With ``stock=None`` the wake-up goes through a
    ``threading.Event`` (of the patched kind, when ``threading`` is patched):
    not a lock, which the simulation's deadlock report would take for one the
    waiter holds itself.

    With a pipe, a second token says who came first, the claimant's wake-up or
    the waiter's wait: whichever pops it.  A waiter that finds it gone knows the
    outcome is set and no byte is coming, so it does not read; a claimant that
    finds it gone knows the waiter reads, and writes.  With many concurrent
    calls a handler often finishes before its caller gets to wait (the caller
    lost the GIL in the pool's wake-up write): then the call makes two system
    calls less.
    """

    __slots__ = ("_claim", "_first", "_event", "_pipe", "_stock")

    def __init__(self, stock: PipeStock | None) -> None:
        # One token: claim() pops it, atomically under the GIL, so exactly one
        # party gets it (a lock's try-acquire did the same for twice the cost).
        self._claim = [True]
        self._first = [True]  # pipes only: see the class docstring
        self._stock = stock
        self._pipe: tuple[int, int] | None = None
        self._event = None
        if stock is not None:
            self._pipe = stock.take()
        else:
            self._event = threading.Event()

    def claim(self) -> bool:
        """True for the first caller only: it decides the outcome and must call :meth:`wake`."""
        try:
            return self._claim.pop()
        except IndexError:
            return False

    def wake(self) -> None:
        """Called by the claimant once the outcome is set."""
        pipe = self._pipe
        if pipe is not None:
            try:
                self._first.pop()  # the waiter has not started waiting: it will not read
            except IndexError:
                os.write(pipe[1], b"\0")  # it reads (or is about to)
        else:
            self._event.set()

    def wait(self) -> None:
        """Wait until the claimant wakes us; then the pipe goes back to the stock."""
        pipe = self._pipe  # _block and _release inlined: this runs once per RPC
        popped = False
        try:
            if pipe is not None:
                try:
                    popped = self._first.pop()
                except IndexError:
                    pass  # woken before we got here: the outcome is set, no byte comes
                if popped:
                    os.read(pipe[0], 1)
            else:
                self._event.wait()
        except BaseException:  # interrupted (KeyboardInterrupt in the main thread)
            if not self.claim():
                self._block(popped)  # the claimant's byte must not stay in the pipe
            self._release()
            raise
        if pipe is not None:
            self._pipe = None
            self._stock.give(pipe)

    def abandon(self) -> None:
        """Give up waiting: claim it ourselves, or wait out the claimant's imminent wake-up."""
        if not self.claim():
            self._block()
        self._release()

    def _block(self, popped: bool = False) -> None:
        """Wait for the claimant's wake-up; ``popped``: we already took the first token."""
        if self._pipe is not None:
            if not popped:
                try:
                    self._first.pop()
                except IndexError:
                    return  # the claimant came first and wrote nothing
            os.read(self._pipe[0], 1)
        else:
            self._event.wait()

    def _release(self) -> None:
        pipe, self._pipe = self._pipe, None
        if pipe is not None and self._stock is not None:
            self._stock.give(pipe)
