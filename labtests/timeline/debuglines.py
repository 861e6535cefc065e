"""The student's debug lines (raft.debuglog) on the peer's lane of the timeline.

When the debug log is on, every ``dlog(topic, peer, ...)`` line goes to the
``raftlab`` logger as ``<ms> <TOPIC> <S<peer>|--> <message>``
(:func:`raft.debuglog.format_line`, the one layout that ``raftlab logs`` reads
back too).  A logging handler added for the test's duration turns each line
into a ``dbg`` event, timed by the recorder's clock.  Lines of isolated peer
processes (``--isolate``) are written by those processes and are not seen here.
"""

from __future__ import annotations

import logging
from collections import deque

from labtests.timeline.recorder import Recorder
from raft import debuglog

MAX_LINE = 300  # characters of one debug line kept in an event
MAX_LINES = 50_000  # the last lines kept for the bundle's debug.log
TESTER_TOPIC = "TEST"


def parse(line: str) -> tuple[str, int | None, str] | None:
    """``(topic, peer or None, message)`` of one debuglog line, or None if it is not one."""
    parts = line.split(" ", 3)
    if len(parts) < 3 or not parts[0].isdigit():
        return None
    rest = line[len(parts[0]) + 1:]
    topic, _, rest = rest.partition(" ")
    rest = rest.lstrip(" ")
    who, _, message = rest.partition(" ")
    if who == "--":
        return topic, None, message
    if who.startswith("S") and who[1:].isdigit():
        return topic, int(who[1:]), message
    return None


class DebugCapture(logging.Handler):
    """Adds a ``dbg`` event for every debug line logged while it is installed."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__(level=logging.DEBUG)
        self.rec = recorder
        self.lines: deque[str] = deque(maxlen=MAX_LINES)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = record.getMessage()
            parsed = parse(line)
        except Exception:  # noqa: BLE001 - a bad line is skipped, never a failure
            return
        self.lines.append(line)
        if parsed is None:
            return
        topic, peer, message = parsed
        if topic == TESTER_TOPIC:
            return  # the tester's own lines are events already
        self.rec.add("dbg", peer, topic=topic, msg=message[:MAX_LINE])

    def install(self) -> DebugCapture | None:
        """Attach to the debug logger if the debug log is on; None if it is off."""
        if not debuglog.enabled():
            return None
        debuglog.logger.addHandler(self)
        return self

    def remove(self) -> None:
        debuglog.logger.removeHandler(self)
