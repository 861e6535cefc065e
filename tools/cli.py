"""``raftlab``: one entry point, one subcommand per tool.

Each subcommand lives in its own module with a ``main(argv) -> int``; this file
only dispatches, importing the chosen tool lazily so that ``raftlab logs`` does
not pay for importing pytest.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from tools.termination import describe, exit_status

SUBCOMMANDS = {
    "init": ("tools.init.command", "create a workspace with a Raft skeleton to fill in"),
    "test": ("tools.test_command", "run graded parts or tests (a thin layer over pytest)"),
    "stress": ("tools.stress.command", "run tests hundreds of times in parallel, with statistics"),
    "logs": ("tools.logs", "view a debug log with coloured topics and one column per peer"),
    "grade": ("tools.grade.command", "grade an implementation (or a class of them) part by part"),
    "explore": ("tools.explore.command", "random fault schedules in simulated time, shrunk"),
    "timeline": ("tools.timeline.command", "write the HTML timeline of a failing run's bundle"),
}


def _usage() -> str:
    lines = ["usage: raftlab COMMAND [ARGS...]", "", "commands:"]
    for name, (_module, summary) in SUBCOMMANDS.items():
        lines.append(f"  {name:<8} {summary}")
    lines.append("")
    lines.append("Run 'raftlab COMMAND --help' for the options of one command.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    module: ModuleType | None = None
    if name not in SUBCOMMANDS:
        print(f"raftlab: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(SUBCOMMANDS[name][0])
        return int(module.main(rest) or 0)
    except KeyboardInterrupt as exc:
        # A Ctrl-C before the command took over stopping (while its modules load:
        # pytest, rich, dask -- up to half a second), or one it let through.  One
        # line, not a traceback: the user asked for the stop and got it.
        print(f"raftlab {name}: {describe(exc)} before it finished starting"
              if module is None else f"raftlab {name}: {describe(exc)}", file=sys.stderr)
        return exit_status(exc)


if __name__ == "__main__":
    sys.exit(main())
