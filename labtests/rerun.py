"""The one builder of "rerun this failure" commands.

A failure message, a stress log, a grade report and a simulated deadlock all
tell the user how to reproduce one run: the same test, the same seed, the same
implementation and the same mode (simulated time, isolated peers).  Building
that command in one place is what keeps those four from disagreeing.
"""

from __future__ import annotations

import os
import shlex
from typing import Literal

from labtests.options import HarnessOptions, looks_like_path

Style = Literal["raftlab", "pytest"]


def _impl_arg(impl: str | None) -> str | None:
    """The implementation as the rerun names it: a path is made absolute.

    The rerun command may be pasted in another directory (a stress log is read
    later, a grade report elsewhere), so a relative path would stop naming the
    same file.  A module name stays a module name, even where a folder of that
    name exists (``raft`` is the bundled Raft, never a student's ``./raft``).
    An implementation named by a project config (``[tool.raftlab]``) is named
    explicitly too, so the command does not depend on where it is run.
    """
    if impl is None:
        return None
    if looks_like_path(impl):
        return os.path.abspath(impl)
    return impl


def rerun_command(test: str, seed: int, options: HarnessOptions, *,
                  debug: bool = False, style: Style = "raftlab") -> str:
    """One shell command that reruns exactly ``test`` with ``seed`` and the same options.

    ``test`` is a graded test's name (``test_backup_2b``).  ``style="raftlab"``
    gives ``raftlab test NAME --seed N [--impl ...] [--sim] [--isolate] [--debug]``;
    ``style="pytest"`` gives the plain-pytest equivalent (``pytest --pyargs labtests
    -k NAME --seed N ...``).
    """
    impl = _impl_arg(options.impl)
    if style == "raftlab":
        args = ["raftlab", "test", test, "--seed", str(seed)]
        if impl is not None:
            args += ["--impl", impl]
        flags = {"--sim": options.sim, "--isolate": options.isolate, "--debug": debug,
                 "--race": options.race}
    elif style == "pytest":
        # The pytest script, not ``python -m pytest``: that would put the current
        # directory first on sys.path, where a student's own modules (``queue.py``,
        # ``log.py``) would shadow installed ones.
        args = ["pytest", "--pyargs", "labtests", "-k", test, "--seed", str(seed)]
        if impl is not None:
            args += ["--raft-impl", impl]
        flags = {"--sim": options.sim, "--isolate": options.isolate, "--raft-debug": debug,
                 "--race": options.race}
    else:
        raise ValueError(f"unknown rerun style {style!r} (raftlab or pytest)")
    args += [flag for flag, on in flags.items() if on]
    return shlex.join(args)


def rerun_hint(test: str, seed: int, options: HarnessOptions) -> str:
    """The two lines shown after a failure: the seed and both ways to rerun it."""
    return (
        f"seed {seed}; rerun with: {rerun_command(test, seed, options)}\n"
        f"  or: {rerun_command(test, seed, options, style='pytest')}"
    )
