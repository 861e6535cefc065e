"""What a submission is, and a clean copy of it that cannot shadow the framework.

Rule (single submission and every ``--batch`` subfolder alike):

* a ``.py`` file is the implementation module; the ``.py`` modules and packages beside
  it are copied with it, so it may import its own helpers;
* a folder with ``__init__.py`` is an implementation package;
* a folder holding ``raft.py`` is the module ``raft.py`` (plus its helpers beside it);
* otherwise a folder holding exactly one package (a subfolder with ``__init__.py``,
  framework names aside) is that package;
* anything else is refused with a message saying what was found;
* a bare module name that imports as installed code (e.g. ``raft``, the bundled
  reference) is graded as installed, without a copy.

The chosen files are copied into a fresh staging folder, leaving out anything named
like the framework (``labtests``, ``labrpc``, ``tools``; in a module submission also a
``raft`` package), ``conftest.py``, pytest configuration files and caches, and each
omission is noted in the report.  The graded tests import the copy by path
(``--raft-impl``), so the harness, the network and the persister are always the
installed ones, and the submission folder itself is never imported or written.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

FRAMEWORK_NAMES = {"labtests", "labrpc", "tools"}
PYTEST_FILES = {"conftest.py", "pytest.ini", "tox.ini", "setup.cfg", "pyproject.toml",
                "setup.py", "sitecustomize.py", "usercustomize.py"}
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".git")


class SubmissionError(ValueError):
    """The path is not a submission by the rule above (the message says why)."""


@dataclass
class Submission:
    name: str                      # the student (batch subfolder) or the file/module name
    source: str                    # what the user gave
    kind: str                      # module | package | installed
    entry: Path | None = None      # the module file or package folder inside ``source``
    impl: str = ""                 # the --raft-impl value (set by stage())
    notes: list[str] = field(default_factory=list)


def _is_package(path: Path) -> bool:
    return path.is_dir() and (path / "__init__.py").is_file()


def _looks_like_module_name(text: str) -> bool:
    return re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", text) is not None


def _is_installed_module(source: str, path: Path) -> bool:
    """A bare module name that imports as installed code (e.g. ``raft``, the reference).

    A folder of the same name in the working directory wins unless it *is* the
    installed module (as with ``raft`` in a source checkout).
    """
    if not _looks_like_module_name(source):
        return False
    try:
        spec = importlib.util.find_spec(source)
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        return False
    if not path.exists():
        return True
    origin = Path(spec.origin).resolve()
    return path.resolve() in (origin, origin.parent)


def resolve(source: str, name: str | None = None) -> Submission:
    """Decide what ``source`` (path or module name) holds; raises SubmissionError."""
    path = Path(source)
    label = name or (path.stem if path.suffix == ".py" else path.name) or source
    if _is_installed_module(source, path):
        return Submission(label, source, "installed", impl=source)
    if not path.exists():
        raise SubmissionError(f"{source}: no such file or directory")
    path = path.resolve()
    if path.is_file():
        if path.suffix != ".py":
            raise SubmissionError(f"{source}: a submission file must be a .py module")
        return Submission(label, source, "module", path)
    if _is_package(path):
        _refuse_framework_package(path, source)
        return Submission(label, source, "package", path)
    if (path / "raft.py").is_file():
        return Submission(label, source, "module", path / "raft.py")
    packages = [p for p in sorted(path.iterdir())
                if _is_package(p) and p.name not in FRAMEWORK_NAMES]
    if len(packages) == 1:
        sub = Submission(label, source, "package", packages[0])
        skipped = [p.name for p in sorted(path.iterdir())
                   if _is_package(p) and p.name in FRAMEWORK_NAMES]
        if skipped:
            sub.notes.append(_ignored_note(skipped))
        return sub
    found = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir()
                   if not p.name.startswith("."))
    what = ", ".join(found[:12]) + (" ..." if len(found) > 12 else "") if found else "nothing"
    several = (f" It holds {len(packages)} packages; keep only the implementation's."
               if len(packages) > 1 else "")
    raise SubmissionError(
        f"{source}: not a submission. A submission folder holds raft.py (the implementation "
        f"module, with any helper modules beside it) or one package (a folder with "
        f"__init__.py), or is itself a package.{several} Found: {what}")


def _refuse_framework_package(path: Path, source: str) -> None:
    if path.name in FRAMEWORK_NAMES:
        raise SubmissionError(
            f"{source}: the package {path.name!r} is part of the raftlab framework; a "
            f"submission cannot replace it (submit your Raft implementation instead)")


def _ignored_note(names: list[str]) -> str:
    return ("ignored " + ", ".join(names) + " shipped with the submission: graded with the "
            "installed raftlab framework (harness, network, persister), as the course's "
            "graders overwrite students' copies")


def stage(sub: Submission, into: Path) -> Submission:
    """Copy the submission's code into ``into`` (created) and set ``sub.impl``."""
    if sub.kind == "installed":
        return sub
    assert sub.entry is not None
    into.mkdir(parents=True, exist_ok=True)
    if sub.kind == "package":
        target = into / sub.entry.name
        _copy_package(sub, sub.entry, target)
        sub.impl = str(target)
        return sub
    # A module: the file plus the helper modules and packages beside it.
    ignored: list[str] = []
    for item in sorted(sub.entry.parent.iterdir()):
        if item.name.startswith(".") or item.name == "__pycache__":
            continue
        if item == sub.entry:
            continue
        if item.is_file() and item.suffix == ".py":
            if item.name in PYTEST_FILES or item.stem in FRAMEWORK_NAMES:
                ignored.append(item.name)
            else:
                shutil.copy2(item, into / item.name)
        elif _is_package(item):
            if item.name in FRAMEWORK_NAMES or item.name == "raft":
                ignored.append(item.name + "/")
            else:
                _copy_package(sub, item, into / item.name)
        elif item.is_file() and item.name in PYTEST_FILES:
            ignored.append(item.name)
    shutil.copy2(sub.entry, into / sub.entry.name)
    if ignored:
        sub.notes.append(_ignored_note(ignored))
    sub.impl = str(into / sub.entry.name)
    return sub


def _copy_package(sub: Submission, src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, ignore=_IGNORE, dirs_exist_ok=False)
    stray = sorted(str(p.relative_to(dst)) for p in dst.rglob("*")
                   if p.name in PYTEST_FILES and p.is_file())
    for rel in stray:
        (dst / rel).unlink()
    if stray:
        sub.notes.append("ignored " + ", ".join(stray) + " inside the package (pytest "
                         "configuration is the grader's)")


def discover_batch(folder: Path) -> tuple[list[tuple[str, Path]], list[str]]:
    """The subfolders of a batch folder (one per student, sorted) and notes on the rest."""
    if not folder.is_dir():
        raise SubmissionError(f"--batch {folder}: not a directory")
    subs: list[tuple[str, Path]] = []
    notes: list[str] = []
    for item in sorted(folder.iterdir()):
        if item.name.startswith(".") or item.name == "__pycache__":
            continue
        if item.is_dir():
            subs.append((item.name, item))
        else:
            notes.append(f"ignored {item.name}: a batch folder holds one subfolder per "
                         f"submission")
    if not subs:
        raise SubmissionError(f"--batch {folder}: no submission subfolders found")
    return subs, notes
