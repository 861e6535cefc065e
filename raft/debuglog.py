"""One debug-log convention for Raft implementations and the tester.

Every line reads ``<elapsed ms> <TOPIC> <who> <message>``, for example::

    001234 VOTE S2 granted vote to S0 in term 3
    001250 TEST -- disconnect(1)

so that ``raftlab logs`` can colour topics and put each peer in its own column.
Logging is off by default (it costs time in hot paths); the harness switches it
on with :func:`enable` when asked to (``--raft-debug`` or ``RAFTLAB_DEBUG=1``,
read by ``labtests.options``; this module reads no environment itself, so one
module owns every option).  A student's Raft logs with one call::

    from raft.debuglog import dlog
    dlog("VOTE", self.me, "granted vote to S%d in term %d", cand, term)

Lines go to the ``raftlab`` logger, which writes to stderr by default.
"""

from __future__ import annotations

import logging
import sys
import time

TOPICS = (
    "TIMR", "VOTE", "LEAD", "TERM", "LOG1", "LOG2", "CMIT", "PERS",
    "SNAP", "DROP", "CLNT", "TEST", "INFO", "WARN", "ERRO", "TRCE",
)
logger = logging.getLogger("raftlab")
logger.propagate = False

_enabled = False
_t0 = time.monotonic()


def _install_handler() -> None:
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)


def enable(on: bool = True) -> None:
    """Switch debug logging on or off for this process."""
    global _enabled
    _enabled = on
    if on:
        _install_handler()


def enabled() -> bool:
    return _enabled


def reset_clock(origin: float | None = None) -> None:
    """Start elapsed times from zero again (the tester calls this per test).

    ``origin`` is a ``time.monotonic()`` reading to count from instead of now: an
    isolated peer process counts from its tester's origin (the monotonic clock is
    system-wide), so the lines of every process share one time axis.
    """
    global _t0
    _t0 = time.monotonic() if origin is None else origin


def clock_origin() -> float:
    """The ``time.monotonic()`` reading that elapsed times count from."""
    return _t0


def format_line(topic: str, who: str, message: str, elapsed_ms: int) -> str:
    """The one place that knows the line layout (the viewer parses it back)."""
    return f"{elapsed_ms:06d} {topic:<4} {who} {message}"


def dlog(topic: str, peer: int | None, fmt: str, *args: object) -> None:
    """Log one event of ``peer`` (``None`` for the tester) under ``topic``.

    ``fmt % args`` is only computed when logging is on, so leaving calls in hot
    paths costs one boolean test; a format that does not fit its arguments is logged
    as it is rather than raised (a run with logging on does what one without does).
    """
    if not _enabled:
        return
    if topic not in TOPICS:
        raise ValueError(f"unknown debug topic {topic!r}; use one of {', '.join(TOPICS)}")
    who = "--" if peer is None else f"S{peer}"
    try:
        message = fmt % args if args else fmt
    except (TypeError, ValueError, KeyError) as exc:
        # Logging on must not change what the Raft does (its calls are skipped when off):
        # a format that does not fit its arguments is logged as it is, never raised.
        message = f"{fmt!r} % {args!r} (bad log format: {exc})"
    elapsed_ms = int((time.monotonic() - _t0) * 1000)
    logger.debug(format_line(topic, who, message, elapsed_ms))

