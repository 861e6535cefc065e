"""A failure's *signature*: its message with the values abstracted, plus the failing check.

Why: a stress run of a buggy Raft fails hundreds of times, but usually for two
or three reasons.  Runs that failed for the same reason differ only in values --
which peer, which term, which index, which command -- so the message with those
values replaced by placeholders, next to the tester check that failed
(``check_one_leader``, ``one``... from the failure bundle's meta.json), names the
reason.  The lab's own wording is kept, so a group reads like the failure::

    one(<cmd>) failed to reach agreement
    apply error: server <n> apply out of order <n>
    term <n> has <n> (>1) leaders

Pure functions only: the stress summary and the grader group with them, and the
unit tests pin each rule.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

MAX_TEXT = 300  # a normalised message is cut here (a group name, not the whole story)

# Prefixes the runners put before the lab's own words.
_PREFIXES = (
    re.compile(r"^(?:labtests\.failures\.)?RaftTestFailure:\s*"),
    re.compile(r"^inconclusive \(machine overloaded: timers late by \d+ ms\):\s*"),
    re.compile(r"^Failed:\s*"),
)
# Rules applied in order; each abstracts one kind of value.
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # A known artifact's explanation repeats values; its name is part of the signature.
    (re.compile(r"\s*\(known artifact of the lab's tests.*$"), ""),
    # one(cmd): the command may be anything fmt_v prints (ints, strings, lists, maps).
    (re.compile(r"\bone\(.*\)(?= failed to reach agreement)"), "one(<cmd>)"),
    # commit index=5 server=2 104 != server=1 103: commands after server=<id>.
    (re.compile(r"(server=\d+) .*? != (server=\d+) .*$"), r"\1 <cmd> != \2 <cmd>"),
    (re.compile(r"\bcmd \S+ missing in \[.*\]"), "cmd <cmd> missing in [<cmds>]"),
    (re.compile(r"\bvalue \S+ is not an int"), "value <cmd> is not an int"),
    # Quoted values and object addresses.
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<str>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<addr>"),
    (re.compile(r"<[A-Za-z_.]+ object at <addr>>"), "<object>"),
    # Numbers: peer ids, terms, indexes, counts, durations.
    (re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])"), "<n>"),
    # Lists of numbers of any length read the same.
    (re.compile(r"\[<n>(?: <n>)*\]"), "[<n>...]"),
    (re.compile(r"\s+"), " "),
)
_PROTECTED = {"(>1)": "\x00GT1\x00"}  # the lab's "(>1) leaders" is words, not a value


def first_line(message: str | None) -> str:
    """The first non-empty line of a failure message (the lab's headline)."""
    for line in (message or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def normalise(message: str | None) -> str:
    """The message's headline with values abstracted (see the module docstring)."""
    text = first_line(message)
    for prefix in _PREFIXES:
        text = prefix.sub("", text)
    for literal, token in _PROTECTED.items():
        text = text.replace(literal, token)
    for pattern, repl in _RULES:
        text = pattern.sub(repl, text)
    for literal, token in _PROTECTED.items():
        text = text.replace(token, literal)
    text = text.strip()
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT] + "..."
    return text or "(no message)"


@dataclass(frozen=True)
class Signature:
    """What groups failures: the failing check, the normalised message, the artifact."""

    check: str | None
    text: str
    artifact: str | None = None

    @property
    def key(self) -> str:
        """One line that names the group (also what is hashed into :attr:`id`)."""
        head = f"[{self.check}] " if self.check else ""
        tail = f" (known artifact: {self.artifact})" if self.artifact else ""
        return f"{head}{self.text}{tail}"

    @property
    def id(self) -> str:
        """A short stable id (8 hex digits) for file names and JSON."""
        return hashlib.sha1(self.key.encode("utf-8")).hexdigest()[:8]


def signature(message: str | None, check: str | None = None,
              artifact: str | None = None) -> Signature:
    """The signature of a failure with ``message`` in tester check ``check``."""
    return Signature(check=check or None, text=normalise(message), artifact=artifact or None)
