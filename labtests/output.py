"""Bounded output: what the harness keeps of a test's text never grows without limit.

A failing Raft may print megabytes (a debug line per heartbeat, a log dumped in a
loop); kept whole, that text floods the terminal, the JUnit report, a stress log
or a grade report, and hides the verdict.  The useful parts are the beginning
(how the run started) and the end (what happened just before the failure), so
that is what is kept, with a line saying how much was cut in between.

One function for every place that stores output (the harness's report sections,
``raftlab test``, stress logs, grade reports), so they all cut the same way:

* :func:`bound_text` -- first and last part of a text, with how much was cut;
* :func:`bound_report_sections` -- the same on a pytest report's captured output;
* :func:`summarize_names` -- a count and the first few of a long list of names
  (leftover threads), instead of the whole list.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

HEAD_CHARS = 20_000  # kept from the start of a text (about 250 lines of debug log)
TAIL_CHARS = 20_000  # kept from its end: what happened right before the failure
SNAP_CHARS = 400  # how far a cut moves to land on a line boundary
NAMES_SHOWN = 5  # names listed by summarize_names before "and N more"


def cut_marker(chars: int, lines: int) -> str:
    """The line that replaces the middle of a bounded text."""
    return f"[... raftlab cut {chars} characters ({lines} lines) here ...]"


def bound_text(text: str, head: int = HEAD_CHARS, tail: int = TAIL_CHARS) -> str:
    """``text`` itself if it is at most ``head + tail`` characters long; otherwise its
    first ``head`` and last ``tail`` characters around a line naming what was cut.

    Cuts move to the nearest line boundary (at most ``SNAP_CHARS`` away) so that
    no line is shown half.  The result is at most ``head + tail`` characters plus
    the marker line.
    """
    if head < 0 or tail < 0:
        raise ValueError(f"bound_text: head and tail must be >= 0 (got {head}, {tail})")
    if len(text) <= head + tail:
        return text
    start = head
    newline = text.rfind("\n", max(0, head - SNAP_CHARS), head)
    if newline != -1:
        start = newline + 1
    end = len(text) - tail
    newline = text.find("\n", end, end + SNAP_CHARS)
    if newline != -1:
        end = newline + 1
    cut = text[start:end]
    marker = cut_marker(len(cut), cut.count("\n"))
    before = text[:start]
    sep = "" if not before or before.endswith("\n") else "\n"
    return f"{before}{sep}{marker}\n{text[end:]}"


def bound_report_sections(report: Any, head: int = HEAD_CHARS, tail: int = TAIL_CHARS) -> None:
    """Bound, in place, the captured output a pytest report carries (``Captured ...``)."""
    sections = getattr(report, "sections", None)
    if not sections:
        return
    report.sections = [
        (title, bound_text(content, head, tail) if title.startswith("Captured") else content)
        for title, content in sections
    ]


def summarize_names(names: Iterable[str], shown: int = NAMES_SHOWN) -> str:
    """``"a, b, c"``, or for a long list ``"a, b, c, d, e and 807 more (812 in all)"``."""
    names = list(names)
    head = ", ".join(names[:shown])
    if len(names) <= shown:
        return head
    return f"{head} and {len(names) - shown} more ({len(names)} in all)"
