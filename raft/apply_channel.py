"""A rendezvous channel: Go's unbuffered ``chan ApplyMsg`` in Python.

``put`` blocks until a receiver has taken the message, exactly like a send on
an unbuffered Go channel.  That back-pressure is part of the lab: a Raft that
holds its lock while sending on the apply channel deadlocks against a tester
that calls ``snapshot()`` before taking the next message, here as in Go.

As in Go's runtime, a send that finds a receiver already blocked hands the
message straight to it and returns without blocking: the receive is then
complete (the receiver returns that message even if the channel is closed or
its timeout passes before it runs again).  Only a send with no receiver waiting
blocks.  This saves one sleep and wake-up per message in the usual case (the
tester's reader waits for the next message), which is most of the channel's cost.

The tester closes the channel when a test ends so that nothing stays blocked:
after ``close()``, ``put`` returns ``False`` at once (the message is dropped)
and ``get`` raises :class:`ChannelClosed`.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any


class ChannelClosed(Exception):
    """Raised by :meth:`ApplyChannel.get` once the channel is closed."""


class _Offer:
    """One blocked sender's message, waiting in line to be taken."""

    __slots__ = ("item", "taken")

    def __init__(self, item: Any) -> None:
        self.item = item
        self.taken = False


class _Receiver:
    """One blocked receiver; a sender that finds it fills it in and goes on."""

    __slots__ = ("item", "filled")

    def __init__(self) -> None:
        self.item: Any = None
        self.filled = False


class ApplyChannel:
    """An unbuffered channel with any number of senders and receivers.

    Blocked senders are served in arrival order, as Go serves the queue of
    goroutines blocked on a channel: with three or more senders waiting, the
    next receive takes the oldest message, never an arbitrary one.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._closed = False
        self._offers: deque[_Offer] = deque()  # blocked senders, oldest first
        # Blocked receivers, oldest first.  Never both non-empty: a sender takes a
        # waiting receiver before it queues, a receiver a waiting offer before it waits.
        self._receivers: deque[_Receiver] = deque()

    def put(self, item: Any) -> bool:
        """Send ``item``; block until a receiver takes it.

        Returns ``True`` once it was received, ``False`` if the channel was
        (or became) closed before that.  A receiver already waiting takes it at
        once (the oldest such receiver), and then ``put`` does not block.
        """
        with self._cond:
            if self._closed:
                return False
            if self._receivers:
                receiver = self._receivers.popleft()
                receiver.item = item
                receiver.filled = True
                self._cond.notify_all()
                return True
            offer = _Offer(item)
            self._offers.append(offer)
            while not offer.taken and not self._closed:
                self._cond.wait()
            if offer.taken:
                return True
            # Closed while our message waited and was not taken: withdraw it.
            self._offers.remove(offer)
            return False

    def get(self, timeout: float | None = None) -> Any:
        """Receive the next message, blocking until a sender offers one.

        Raises :class:`ChannelClosed` once the channel is closed, and
        ``TimeoutError`` if ``timeout`` seconds pass with nothing offered.
        """
        with self._cond:
            if self._closed:
                raise ChannelClosed()
            if self._offers:
                offer = self._offers.popleft()
                offer.taken = True
                self._cond.notify_all()
                return offer.item
            receiver = _Receiver()
            self._receivers.append(receiver)
            try:
                self._cond.wait_for(lambda: receiver.filled or self._closed, timeout)
            finally:
                if not receiver.filled:
                    self._receivers.remove(receiver)
            if receiver.filled:
                return receiver.item
            if self._closed:
                raise ChannelClosed()
            raise TimeoutError("no message within the timeout")

    @property
    def waiting_senders(self) -> int:
        """How many senders are blocked with a message not yet taken."""
        with self._cond:
            return len(self._offers)

    def close(self) -> None:
        """Wake every blocked sender and receiver; later calls fail at once."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed
