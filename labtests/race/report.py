"""The race report: one screen, like Go's ``WARNING: DATA RACE``.

For each race: the field, then each access (the earlier one is the one the
later found unordered) with its kind, thread, the locks it held and a short
stack, innermost first, with paths shortened to the last two components.
"""

from __future__ import annotations

import os

from labtests.race.detector import Access, Race

MAX_SHOWN = 3  # races shown in full; the rest are listed by field and lines


def _short(path: str) -> str:
    parts = path.split(os.sep)
    return os.sep.join(parts[-2:])


def _access(label: str, a: Access, names: dict[int, str]) -> list[str]:
    kind = "write" if a.write else "read"
    locks = ", ".join(dict.fromkeys(names.get(i, "?") for i in a.locks)) or "no locks"
    lines = [f"  {label} {kind} by thread {a.thread!r} holding {locks}:"]
    for file, line, func in a.stack:
        lines.append(f"      {_short(file)}:{line} in {func}")
    return lines


def _where(a: Access) -> str:
    file, line = a.where
    return f"{_short(file)}:{line}"


def format_races(races: list[Race], dropped: int = 0) -> str:
    """The report for a test's races (empty string when there are none)."""
    if not races:
        return ""
    total = len(races) + dropped
    out = [f"DATA RACE: {total} race{'s' if total != 1 else ''} on the implementation's fields"]
    for race in races[:MAX_SHOWN]:
        out.append(f"field {race.field}:")
        out += _access("previous", race.earlier, race.lock_names)
        out += _access("current ", race.later, race.lock_names)
    for race in races[MAX_SHOWN:]:
        out.append(f"field {race.field}: {_where(race.earlier)} vs {_where(race.later)}")
    if dropped:
        out.append(f"... and {dropped} more (only the first {len(races)} are kept)")
    out.append("neither access happens before the other and they hold no common lock: "
               "guard the field with the lock that guards the other access")
    return "\n".join(out)
