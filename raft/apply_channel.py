"""A rendezvous channel: Go's unbuffered ``chan ApplyMsg`` in Python.

``put`` blocks until a receiver has taken the message, exactly like a send on
an unbuffered Go channel.  That back-pressure is part of the lab: a Raft that
holds its lock while sending on the apply channel deadlocks against a tester
that calls ``snapshot()`` before taking the next message, here as in Go.

The tester closes the channel when a test ends so that nothing stays blocked:
after ``close()``, ``put`` returns ``False`` at once (the message is dropped)
and ``get`` raises :class:`ChannelClosed`.
"""

from __future__ import annotations

import threading
from typing import Any


class ChannelClosed(Exception):
    """Raised by :meth:`ApplyChannel.get` once the channel is closed."""


class ApplyChannel:
    """An unbuffered channel with any number of senders and receivers."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._closed = False
        # The message on offer and whether a receiver has taken it.
        self._slot_full = False
        self._item: Any = None
        self._taken_count = 0

    def put(self, item: Any) -> bool:
        """Send ``item``; block until a receiver takes it.

        Returns ``True`` once it was received, ``False`` if the channel was
        (or became) closed before that.
        """
        with self._cond:
            # Wait for our turn to offer: one message on offer at a time.
            while self._slot_full and not self._closed:
                self._cond.wait()
            if self._closed:
                return False
            self._slot_full = True
            self._item = item
            ticket = self._taken_count + 1
            self._cond.notify_all()
            while self._taken_count < ticket and not self._closed:
                self._cond.wait()
            if self._taken_count >= ticket:
                return True
            # Closed while our message was on offer and not taken: withdraw it.
            self._slot_full = False
            self._item = None
            return False

    def get(self, timeout: float | None = None) -> Any:
        """Receive the next message, blocking until a sender offers one.

        Raises :class:`ChannelClosed` once the channel is closed, and
        ``TimeoutError`` if ``timeout`` seconds pass with nothing offered.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._slot_full or self._closed, timeout):
                raise TimeoutError("no message within the timeout")
            if self._closed:
                raise ChannelClosed()
            item = self._item
            self._item = None
            self._slot_full = False
            self._taken_count += 1
            self._cond.notify_all()
            return item

    def close(self) -> None:
        """Wake every blocked sender and receiver; later calls fail at once."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed
