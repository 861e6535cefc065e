"""Grading rubrics: which tests count, how many points each earns, runs and time budgets.

A rubric is a TOML file (read with :mod:`tomllib`); the shipped default,
``tools/grade/rubrics/default.toml``, documents every key in its comments.  In short::

    runs = 3                  # runs per test; a test earns its points only if all pass
    per_run_timeout_s = 150   # watchdog per run (the harness also fails a test over 120 s)
    memory_mb = 16384         # address-space limit of each process running student code

    [parts.2A]
    budget_s = 60             # wall-clock seconds per pass over the part (x runs)
    points = 15               # split equally among the part's tests ...
    [parts.2A.tests]          # ... unless points are given per test (then only these count)
    test_initial_election_2a = 5

A rubric is checked against the collected graded tests before anything runs, so a
misspelt test name fails at once with the list of known names, not after an hour.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from tools.selection import PARTS, SelectionError
from tools.selection import resolve as select

DEFAULT_RUBRIC = "default.toml"
_TOP_KEYS = {"title", "runs", "per_run_timeout_s", "memory_mb", "parts"}
_PART_KEYS = {"points", "budget_s", "tests"}


class RubricError(ValueError):
    """The rubric is malformed or names tests that do not exist."""


@dataclass
class PartRubric:
    name: str
    budget_s: float
    points: float | None = None
    tests: dict[str, float] = field(default_factory=dict)  # filled by resolve()

    @property
    def max_points(self) -> float:
        return round(sum(self.tests.values()), 4)


@dataclass
class Rubric:
    source: str
    title: str
    runs: int
    per_run_timeout_s: float
    memory_mb: int
    parts: list[PartRubric]
    explicit: dict[str, dict[str, float] | None] = field(default_factory=dict)

    @property
    def max_points(self) -> float:
        return round(sum(p.max_points for p in self.parts), 4)

    def part_of(self, test: str) -> str:
        for part in self.parts:
            if test in part.tests:
                return part.name
        raise KeyError(test)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source, "title": self.title, "runs": self.runs,
            "per_run_timeout_s": self.per_run_timeout_s, "memory_mb": self.memory_mb,
            "parts": [{"name": p.name, "budget_s": p.budget_s, "max_points": p.max_points,
                       "tests": dict(p.tests)} for p in self.parts],
        }


def default_rubric_path() -> Path:
    return Path(str(resources.files("tools.grade") / "rubrics" / DEFAULT_RUBRIC))


def _number(value: Any, where: str, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RubricError(f"{where} must be a number, not {value!r}")
    if positive and value <= 0:
        raise RubricError(f"{where} must be positive, not {value!r}")
    if not positive and value < 0:
        raise RubricError(f"{where} must not be negative, not {value!r}")
    return float(value)


def parse(data: Mapping[str, Any], source: str = "<rubric>") -> Rubric:
    """Build a :class:`Rubric` from parsed TOML (test names are checked by resolve())."""
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise RubricError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(sorted(_TOP_KEYS))}")
    runs = data.get("runs", 1)
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise RubricError(f"{source}: runs must be a whole number >= 1, not {runs!r}")
    raw_parts = data.get("parts")
    if not isinstance(raw_parts, Mapping) or not raw_parts:
        raise RubricError(f"{source}: needs at least one [parts.<name>] table (parts: "
                          f"{', '.join(PARTS)})")
    parts: list[PartRubric] = []
    explicit: dict[str, dict[str, float] | None] = {}
    for name in sorted(raw_parts, key=lambda n: n.upper()):
        key = name.upper()
        where = f"{source}: [parts.{name}]"
        if key not in PARTS:
            raise RubricError(f"{where}: unknown part; parts are {', '.join(PARTS)}")
        body = raw_parts[name]
        if not isinstance(body, Mapping):
            raise RubricError(f"{where} must be a table")
        bad = set(body) - _PART_KEYS
        if bad:
            raise RubricError(f"{where}: unknown key(s) {', '.join(sorted(bad))}; "
                              f"known: {', '.join(sorted(_PART_KEYS))}")
        if "budget_s" not in body:
            raise RubricError(f"{where}: budget_s (seconds per pass over the part) is required")
        points = body.get("points")
        tests = body.get("tests")
        if points is None and tests is None:
            raise RubricError(f"{where}: give points (split equally) or a tests table")
        per_test: dict[str, float] | None = None
        if tests is not None:
            if not isinstance(tests, Mapping) or not tests:
                raise RubricError(f"{where}.tests must be a non-empty table name = points")
            per_test = {str(t): _number(v, f"{where}.tests.{t}", positive=False)
                        for t, v in tests.items()}
            if points is not None and abs(sum(per_test.values()) - float(points)) > 1e-6:
                raise RubricError(f"{where}: points = {points} but its tests add up to "
                                  f"{sum(per_test.values()):g}")
        parts.append(PartRubric(
            name=key, budget_s=_number(body["budget_s"], f"{where}.budget_s"),
            points=None if points is None else _number(points, f"{where}.points",
                                                       positive=False)))
        explicit[key] = per_test
    return Rubric(
        source=source, title=str(data.get("title", "Raft lab 2")), runs=runs,
        per_run_timeout_s=_number(data.get("per_run_timeout_s", 150), "per_run_timeout_s"),
        memory_mb=int(_number(data.get("memory_mb", 16384), "memory_mb")),
        parts=parts, explicit=explicit)


def load(path: Path | str | None = None) -> Rubric:
    """Read a rubric file (default: the shipped one)."""
    path = Path(path) if path else default_rubric_path()
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise RubricError(f"rubric file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RubricError(f"{path}: not valid TOML: {exc}") from None
    return parse(data, str(path))


def resolve(rubric: Rubric, catalog: Mapping[str, list[str]]) -> Rubric:
    """Fill each part's tests and points from ``catalog`` (part -> collected test names).

    Raises RubricError naming every unknown test (or a test listed under the wrong part).
    """
    problems: list[str] = []
    for part in rubric.parts:
        known = catalog.get(part.name, [])
        per_test = rubric.explicit.get(part.name)
        if per_test is None:
            if not known:
                problems.append(f"part {part.name} has no collected tests")
                continue
            share = round((part.points or 0.0) / len(known), 4)
            part.tests = {t: share for t in known}
            continue
        for test in per_test:
            if test in known:
                continue
            other = [p for p, names in catalog.items() if test in names]
            if other:
                problems.append(f"{test} is listed under part {part.name} but belongs to "
                                f"part {other[0]}")
            else:
                problems.append(f"unknown test {test!r} in part {part.name}")
        # Lab order, whatever order the rubric lists them in.
        part.tests = {t: per_test[t] for t in known if t in per_test}
    if problems:
        names = "; ".join(f"{p}: {', '.join(ts)}" for p, ts in catalog.items())
        raise RubricError(f"{rubric.source}: " + "; ".join(problems)
                          + f".\nKnown graded tests -- {names}")
    return rubric


def restrict(rubric: Rubric, selectors: list[str]) -> Rubric:
    """Keep only the parts and tests named, by the commands' one selector rule.

    Raises RubricError when a selector is not a part or test (:mod:`tools.selection`)
    or selects nothing that the rubric grades.
    """
    if not selectors:
        return rubric
    unmatched: list[str] = []
    wanted: set[str] = set()
    for sel in selectors:
        try:
            names = {t.name for t in select([sel])}
        except SelectionError as exc:
            raise RubricError(f"--only: {exc}") from None
        if not any(names & set(part.tests) for part in rubric.parts):
            unmatched.append(sel)
        wanted |= names
    if unmatched:
        raise RubricError(f"--only: {', '.join(unmatched)} match no part or test of the rubric")
    parts = []
    for part in rubric.parts:
        keep = {t: v for t, v in part.tests.items() if t in wanted}
        if keep == part.tests:
            parts.append(part)
        elif keep:
            parts.append(PartRubric(part.name, part.budget_s, None, keep))
    rubric.parts = parts
    return rubric
