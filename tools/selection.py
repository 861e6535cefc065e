"""Which graded tests a command means: the one selector rule of ``test``, ``stress`` and ``grade``.

Every command takes the same positional selectors and turns them into tests the
same way, so that ``raftlab test 2A``, ``raftlab stress 2A`` and ``raftlab grade
--only 2A`` mean the same three tests:

* a **part**: ``2A``, ``2a``, ``part2a`` (any case) -- every test of that part;
* ``all`` -- every graded test;
* a **test name**, with or without the ``test_`` prefix (``backup_2b`` or
  ``test_backup_2b``, any case) -- that test;
* anything else is refused with one error naming the selector and what is valid.

``-k``/``-m`` expressions (``test`` and ``stress``) then narrow the chosen tests
the way pytest does (:func:`pytest_args`).  Tests are always run in the lab's
order (2A, 2B, 2C, 2D, file order within a part), whatever order they were named in.

This module also owns the list of parts, where the graded suites live and the
catalog of graded tests per part, read from the suite files' source.  It finds
the suites **without importing** ``labtests``: pytest must be the first to import
that package, or it cannot rewrite the asserts of the harness plugin it loads from
there (and ``raftlab test --list`` would pay for importing the harness).
"""

from __future__ import annotations

import ast
import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PARTS: tuple[str, ...] = ("2A", "2B", "2C", "2D")
ALL = "all"


class SelectionError(ValueError):
    """A selector names no part and no graded test."""


@dataclass(frozen=True, order=True)
class GradedTest:
    """One graded test: its part and its function name (``test_backup_2b``)."""

    part: str
    name: str

    def node_id(self) -> str:
        """An absolute pytest node id, valid from any working directory."""
        return f"{suite_file(self.part)}::{self.name}"


def suite_dir() -> Path:
    """The installed ``labtests`` package's folder (found without importing it)."""
    spec = importlib.util.find_spec("labtests")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the labtests package is not installed")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def suite_file(part: str) -> Path:
    """The suite file of ``part`` (``2A`` -> ``.../labtests/test_2a.py``)."""
    return suite_dir() / f"test_{part.lower()}.py"


def part_of_file(path: str | Path) -> str | None:
    """The part whose suite file ``path`` is (``labtests/test_2b.py`` -> ``2B``), else None."""
    stem = Path(path).stem
    part = stem.removeprefix("test_").upper()
    return part if stem.startswith("test_") and part in PARTS else None


@lru_cache(maxsize=1)
def _catalog(base: Path) -> tuple[tuple[str, tuple[str, ...]], ...]:
    parts = []
    for part in PARTS:
        path = base / f"test_{part.lower()}.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        names = tuple(node.name for node in tree.body
                      if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"))
        parts.append((part, names))
    return tuple(parts)


def catalog() -> dict[str, list[str]]:
    """Graded test names per part (``"2A"`` ...), in file order, read from the suite files."""
    return {part: list(names) for part, names in _catalog(suite_dir())}


def part_of(selector: str) -> str | None:
    """``2a``/``2A``/``part2a`` -> ``2A``; None if ``selector`` is not a part."""
    part = selector.strip().upper().removeprefix("PART")
    return part if part in PARTS else None


def function_name(selector: str) -> str:
    """A test selector as a function name: ``backup_2b`` -> ``test_backup_2b``."""
    name = selector.strip().lower()
    return name if name.startswith("test_") else f"test_{name}"


def valid_selectors() -> str:
    """What the error message offers instead of an unknown selector."""
    return (f"valid: a part ({', '.join(PARTS)}; also written 2a or part2a), {ALL}, or a graded "
            "test name with or without test_ ('raftlab test --list' shows them)")


def resolve(selectors: Sequence[str], *, default_all: bool = True) -> list[GradedTest]:
    """The graded tests named by ``selectors`` (see the module docstring), in lab order.

    No selectors means every graded test (``default_all``) or none.  Raises
    :class:`SelectionError` naming every selector that matches no part and no test.
    """
    tests = catalog()
    wanted: set[GradedTest] = set()
    unknown: list[str] = []
    for sel in selectors or ([ALL] if default_all else []):
        if sel.strip().lower() == ALL:
            wanted.update(GradedTest(p, t) for p in PARTS for t in tests[p])
            continue
        part = part_of(sel)
        if part is not None:
            wanted.update(GradedTest(part, t) for t in tests[part])
            continue
        name = function_name(sel)
        matches = [GradedTest(p, name) for p in PARTS if name in tests[p]]
        if matches:
            wanted.update(matches)
        else:
            unknown.append(sel)
    if unknown:
        raise SelectionError(
            f"unknown part or test {', '.join(repr(s) for s in unknown)} (it would match no "
            f"part or test); {valid_selectors()}")
    return [GradedTest(p, t) for p in PARTS for t in tests[p] if GradedTest(p, t) in wanted]


def pytest_args(tests: Sequence[GradedTest], keyword: str | None = None,
                marker: str | None = None) -> list[str]:
    """pytest arguments that select ``tests``, narrowed by ``-k``/``-m`` if given."""
    args: list[str] = []
    if keyword:
        args += ["-k", keyword]
    if marker:
        args += ["-m", marker]
    return args + [t.node_id() for t in tests]


def is_path(selector: str) -> bool:
    """A file, folder or node id (``tests/x.py::t``) rather than a part or test name."""
    return "::" in selector or selector.endswith(".py") or os.path.isdir(selector)


def pytest_selection(selectors: Sequence[str], keyword: str | None = None,
                     marker: str | None = None) -> list[str]:
    """pytest arguments for a command line's selectors and ``-k``/``-m``.

    Normally the selectors follow the one rule (:func:`resolve`).  Paths (one's own
    suites, such as the project's fake suites) are run as given; the other
    selectors then name tests inside them, as ``-k`` alternatives, since the
    graded catalog does not know those tests.
    """
    paths = [s for s in selectors if is_path(s)]
    if not paths:
        return pytest_args(resolve(selectors), keyword, marker)
    names = [s for s in selectors if not is_path(s)]
    exprs = [" or ".join(names)] if names else []
    if keyword:
        exprs.append(keyword)
    args: list[str] = []
    if exprs:
        args += ["-k", " and ".join(f"({e})" for e in exprs) if len(exprs) > 1 else exprs[0]]
    if marker:
        args += ["-m", marker]
    return args + paths
