"""``raftlab test``: run graded parts or single tests, the way ``go test -run 2A`` did.

A thin layer over ``pytest.main`` that runs the installed ``labtests`` suites,
in the lab's file order (2A, 2B, 2C, 2D), and shows the lab's lines::

    raftlab test                 # all 28 graded tests
    raftlab test 2A              # one part (2a, 2A, part2a all work)
    raftlab test 2B 2C           # several parts, in lab order
    raftlab test test_backup_2b  # one test (the test_ prefix may be left out)
    raftlab test 2D --impl myraft.py --seed 123 -n 2

Anything after ``--`` goes to pytest unchanged (e.g. ``-- -x -v``).

pytest runs in a child process (:mod:`tools.test_run`), so that no Raft can
end or hang the command without a verdict: a test process that dies is
reported as a failure of the test that was running (with its exit status or
signal), the tests after it as not run.  The output is the lab's lines, with
each failure's reason, seed, rerun command and details, and a one-line summary;
pytest's own output only with ``-v``/``-s`` after ``--`` or ``--pytest-output``.
The exit code is pytest's, and non-zero when the test process ended early.
"""

from __future__ import annotations

import argparse
import sys

from labtests.options import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S, HarnessOptions
from tools.selection import SelectionError, catalog, pytest_args, resolve


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raftlab test",
        description="Run graded Raft tests (parts 2A-2D or single tests) in the lab's order.",
        epilog="Arguments after -- are passed to pytest unchanged.",
    )
    parser.add_argument("selectors", nargs="*", metavar="PART|TEST",
                        help="2A, 2B, 2C, 2D, all (default), or test names like test_backup_2b")
    parser.add_argument("-k", dest="keyword", metavar="EXPR",
                        help="narrow the chosen tests with a pytest -k expression")
    parser.add_argument("-m", dest="marker", metavar="EXPR",
                        help="narrow the chosen tests with a pytest -m expression")
    parser.add_argument("--impl", metavar="MODULE|PATH",
                        help="Raft implementation: module name or path to a .py file/package "
                             "(default: env RAFTLAB_IMPL, else [tool.raftlab] impl in the nearest "
                             "pyproject.toml, else the bundled 'raft')")
    parser.add_argument("--seed", type=int, metavar="N",
                        help="seed of every test (to rerun a failure exactly as printed)")
    parser.add_argument("-n", "--workers", metavar="WORKERS",
                        help="run tests in parallel on this many processes (pytest-xdist); "
                             "tests then finish out of order")
    parser.add_argument("--debug", action="store_true",
                        help="turn on the debug log (raft.debuglog), shown for failing tests")
    parser.add_argument("--timeout", type=float, metavar="S",
                        help="per-test watchdog in seconds (default 180)")
    parser.add_argument("--memory-mb", type=_mebibytes, metavar="MIB",
                        help=f"end a test process that holds more than MIB of resident "
                             f"memory, with every thread's stack (default {DEFAULT_MEMORY_MB}; "
                             f"0: no bound)")
    parser.add_argument("--sim", action="store_true",
                        help="run on the simulated clock (labtests.sim): deterministic and "
                             "fast; use real time for grading fidelity")
    parser.add_argument("--isolate", action="store_true",
                        help="run each Raft peer in its own process (real time only)")
    parser.add_argument("--race", action="store_true",
                        help="detect data races on the implementation's fields; a race fails "
                             "the test with a report (docs/race.md)")
    parser.add_argument("--pytest-output", action="store_true",
                        help="show pytest's own output (progress, per-file lines) instead of "
                             "only the lab's lines (also implied by -v or -s after --)")
    parser.add_argument("--list", action="store_true", help="list the graded tests and exit")
    return parser


def _mebibytes(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of MiB: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value}: a number of MiB, or 0 for no bound")
    return value


def harness_options(opts: argparse.Namespace) -> HarnessOptions:
    """The harness options this command line gives (the child resolves the rest)."""
    return HarnessOptions(
        impl=opts.impl, seed=opts.seed, sim=opts.sim, debug=opts.debug,
        isolate=opts.isolate, race=opts.race,
        timeout_s=DEFAULT_TIMEOUT_S if opts.timeout is None else opts.timeout,
        memory_mb=DEFAULT_MEMORY_MB if opts.memory_mb is None else opts.memory_mb)


def command_args(opts: argparse.Namespace, extra: list[str]) -> list[str]:
    """The pytest command line: the selected tests, then the harness options, then ``extra``."""
    args = pytest_args(resolve(opts.selectors), opts.keyword, opts.marker)
    args += ["-p", "no:cacheprovider"]
    args += harness_options(opts).pytest_args()
    if opts.workers:
        args += ["-n", str(opts.workers)]
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
            print(f"{part}: {' '.join(names)}")
        return 0
    try:
        args = command_args(opts, extra)
    except SelectionError as err:
        print(f"raftlab test: {err}", file=sys.stderr)
        return 2
    from tools.test_run.follow import run, wants_pytest_output

    passthrough = opts.pytest_output or wants_pytest_output(extra)
    return run(args, harness_options(opts), passthrough=passthrough)


if __name__ == "__main__":
    sys.exit(main())
