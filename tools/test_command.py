"""``raftlab test``: run graded parts or single tests, the way ``go test -run 2A`` did.

A thin layer over ``pytest.main`` that runs the installed ``labtests`` suites,
in the lab's file order (2A, 2B, 2C, 2D), and shows the lab's lines::

    raftlab test                 # all 28 graded tests
    raftlab test 2A              # one part (2a, 2A, part2a all work)
    raftlab test 2B 2C           # several parts, in lab order
    raftlab test test_backup_2b  # one test (the test_ prefix may be left out)
    raftlab test 2D --impl myraft.py --seed 123 -n 2

Anything after ``--`` goes to pytest unchanged (e.g. ``-- -x -v``).  The exit
code is pytest's.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import sys

PARTS = ("2a", "2b", "2c", "2d")


def _suite_dir() -> str:
    # Located without importing: pytest must be the first to import labtests,
    # or it cannot rewrite the asserts of the plugin it loads from there.
    spec = importlib.util.find_spec("labtests")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the labtests package is not installed")
    return os.path.abspath(list(spec.submodule_search_locations)[0])


def catalog() -> dict[str, list[str]]:
    """Graded test names per part, in file order (read from the suite files)."""
    base = _suite_dir()
    tests: dict[str, list[str]] = {}
    for part in PARTS:
        path = os.path.join(base, f"test_{part}.py")
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        tests[part] = [
            node.name for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
        ]
    return tests


def _part_of(selector: str) -> str | None:
    s = selector.lower().removeprefix("part")
    return s if s in PARTS else None


def resolve(selectors: list[str]) -> list[str]:
    """Turn parts and test names into pytest node ids, in the lab's order.

    Raises ``ValueError`` naming an unknown selector.
    """
    tests = catalog()
    wanted: set[tuple[str, str]] = set()
    for sel in selectors or ["all"]:
        if sel.lower() == "all":
            wanted.update((p, t) for p in PARTS for t in tests[p])
            continue
        part = _part_of(sel)
        if part is not None:
            wanted.update((part, t) for t in tests[part])
            continue
        name = sel if sel.startswith("test_") else f"test_{sel}"
        name = name.lower()
        matches = [(p, t) for p in PARTS for t in tests[p] if t == name]
        if not matches:
            raise ValueError(
                f"unknown part or test {sel!r}; parts are {', '.join(p.upper() for p in PARTS)} "
                f"or all; 'raftlab test --list' shows the tests"
            )
        wanted.update(matches)
    base = _suite_dir()
    ordered = [(p, t) for p in PARTS for t in tests[p] if (p, t) in wanted]
    return [f"{os.path.join(base, f'test_{p}.py')}::{t}" for p, t in ordered]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raftlab test",
        description="Run graded Raft tests (parts 2A-2D or single tests) in the lab's order.",
        epilog="Arguments after -- are passed to pytest unchanged.",
    )
    parser.add_argument("selectors", nargs="*", metavar="PART|TEST",
                        help="2A, 2B, 2C, 2D, all (default), or test names like test_backup_2b")
    parser.add_argument("--impl", metavar="MODULE|PATH",
                        help="Raft implementation: module name or path to a .py file/package "
                             "(default: env RAFTLAB_IMPL, else the bundled 'raft')")
    parser.add_argument("--seed", type=int, metavar="N",
                        help="seed of every test (to rerun a failure exactly as printed)")
    parser.add_argument("-n", "--workers", metavar="WORKERS",
                        help="run tests in parallel on this many processes (pytest-xdist); "
                             "tests then finish out of order")
    parser.add_argument("--debug", action="store_true",
                        help="turn on the debug log (raft.debuglog), shown for failing tests")
    parser.add_argument("--timeout", type=float, metavar="S",
                        help="per-test watchdog in seconds (default 180)")
    parser.add_argument("--sim", action="store_true",
                        help="run on the simulated clock (labtests.sim): deterministic and "
                             "fast; use real time for grading fidelity")
    parser.add_argument("--list", action="store_true", help="list the graded tests and exit")
    return parser


def pytest_args(opts: argparse.Namespace, extra: list[str]) -> list[str]:
    args = resolve(opts.selectors)
    args += ["-p", "no:cacheprovider"]
    if opts.impl:
        args += ["--raft-impl", opts.impl]
    if opts.seed is not None:
        args += ["--seed", str(opts.seed)]
    if opts.workers:
        args += ["-n", str(opts.workers)]
    if opts.debug:
        args += ["--raft-debug"]
    if opts.sim:
        args += ["--sim"]
    if opts.timeout is not None:
        args += ["--raft-timeout", str(opts.timeout)]
    return args + extra


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    opts = build_parser().parse_args(argv)
    if opts.list:
        for part, names in catalog().items():
            print(f"{part.upper()}: {' '.join(names)}")
        return 0
    try:
        args = pytest_args(opts, extra)
    except ValueError as err:
        print(f"raftlab test: {err}", file=sys.stderr)
        return 2
    import pytest

    return int(pytest.main(args))


if __name__ == "__main__":
    sys.exit(main())
