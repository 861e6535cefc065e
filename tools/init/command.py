"""``raftlab init [DIR]``: create a student's workspace with a Raft skeleton.

The workspace is what the original lab's ``src/raft`` was, plus a project
config so that every raftlab command run inside it tests the student's code::

    DIR/
      raft/__init__.py    the package raftlab loads (by path, under a private name)
      raft/raft.py        the skeleton: API methods and RPC messages as documented
                          stubs, each saying which part (2A-2D) needs it; no solution
      pyproject.toml      [tool.raftlab] impl = "raft"  (read by labtests.options)
      README.md           the first commands to run, and the rules easy to miss
      .gitignore

The skeleton fails the graded tests with the lab's own messages ("expected one
leader, got none"), never with an import or API error: it has the whole API.

Nothing is ever overwritten: if any file to be written exists, nothing is
written and the command says which files are in the way (exit status 1).
"""

from __future__ import annotations

import argparse
import keyword
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

TEMPLATE_PACKAGE = "raft"  # the skeleton package's folder name inside template/
DEFAULT_PACKAGE = "raft"   # the original lab's src/raft
FRAMEWORK_NAMES = ("labtests", "labrpc", "tools")


class InitError(Exception):
    """The workspace cannot be created as asked (the message says why)."""


@dataclass(frozen=True)
class Planned:
    """One file to write: where, and its text."""

    path: Path
    text: str


def _template_files() -> list[tuple[str, str]]:
    """(relative path in the workspace, text) of every template file, package as ``raft``."""
    root = resources.files("tools.init") / "template"
    files = [("pyproject.toml", (root / "pyproject.toml.tmpl").read_text(encoding="utf-8")),
             ("README.md", (root / "README.md.tmpl").read_text(encoding="utf-8")),
             (".gitignore", (root / "gitignore.tmpl").read_text(encoding="utf-8"))]
    package = root / TEMPLATE_PACKAGE
    for name in ("__init__.py", "raft.py"):
        files.append((f"{TEMPLATE_PACKAGE}/{name}", (package / name).read_text(encoding="utf-8")))
    return files


def check_package_name(name: str) -> None:
    """A package name the loader and a student can both use."""
    if not name.isidentifier() or keyword.iskeyword(name):
        raise InitError(f"--package {name!r}: not a Python identifier")
    if name in FRAMEWORK_NAMES:
        raise InitError(f"--package {name!r}: that name belongs to the raftlab framework")


def plan(directory: Path, package: str = DEFAULT_PACKAGE) -> list[Planned]:
    """The files ``raftlab init`` would write into ``directory``, rendered."""
    check_package_name(package)
    planned = []
    for rel, text in _template_files():
        if rel.startswith(TEMPLATE_PACKAGE + "/"):
            rel = package + rel[len(TEMPLATE_PACKAGE):]
        else:
            # Only the non-Python files are templates ({package}); the Python files are
            # copied verbatim (they import their own modules relatively, whatever the name).
            text = text.replace("{package}", package)
        planned.append(Planned(directory / rel, text))
    return planned


def create(directory: Path, package: str = DEFAULT_PACKAGE) -> list[Path]:
    """Write the workspace; raises :class:`InitError` before writing anything if any
    file is in the way.  Returns the files written."""
    planned = plan(directory, package)
    if directory.exists() and not directory.is_dir():
        raise InitError(f"{directory} exists and is not a folder")
    in_way = [p.path for p in planned if p.path.exists() or p.path.is_symlink()]
    if in_way:
        names = ", ".join(str(p) for p in in_way)
        hint = ""
        if directory / "pyproject.toml" in in_way:
            hint = (f"\nTo use an existing project, add to its pyproject.toml:\n\n"
                    f"    [tool.raftlab]\n    impl = \"{package}\"\n")
        raise InitError(f"refusing to overwrite existing file(s): {names}; nothing was "
                        f"written (choose another folder, or move them away){hint}")
    for item in planned:
        item.path.parent.mkdir(parents=True, exist_ok=True)
        # "x": fail rather than overwrite a file that appeared since the check.
        with open(item.path, "x", encoding="utf-8") as f:
            f.write(item.text)
    return [p.path for p in planned]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raftlab init",
        description="Create a Raft workspace: a skeleton package to fill in, a README and a "
        "pyproject.toml whose [tool.raftlab] makes every raftlab command in the folder test "
        "your code. Never overwrites a file.")
    parser.add_argument("directory", nargs="?", default=".", metavar="DIR",
                        help="the workspace folder (default: the current folder; created "
                        "if missing)")
    parser.add_argument("--package", default=DEFAULT_PACKAGE, metavar="NAME",
                        help=f"name of the skeleton package (default: {DEFAULT_PACKAGE}, as "
                        f"the original lab's src/raft)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    directory = Path(args.directory)
    try:
        written = create(directory, args.package)
    except (InitError, OSError) as exc:
        print(f"raftlab init: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"  created {path}")
    where = "" if args.directory == "." else f"cd {args.directory} && "
    print(f"\nYour Raft is {directory / args.package / 'raft.py'}. Next: "
          f"{where}raftlab test 2A\n(it fails with the lab's messages until you write "
          f"part 2A; see README.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
