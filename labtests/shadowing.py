"""The framework's own ``raft`` and ``labrpc`` packages, whatever else is on ``sys.path``.

A student of the lab keeps their Raft in a folder called ``raft/`` (the original
lab's ``src/raft``), and the framework's API package is called ``raft`` too.
``python -m pytest`` puts the current directory first on ``sys.path``; so does
``PYTHONPATH=.`` or an IDE's run configuration.  Without this module, the
student's folder would then be imported as the framework (and the run would die
with ``No module named 'raft.api'``), or worse, half of each.

:func:`install` puts one finder first on ``sys.meta_path``.  It answers only for
the two top-level names ``raft`` and ``labrpc`` and points them at the packages
installed beside ``labtests`` (the same distribution, so the same version).
Submodules (``raft.api``) then follow the package's own ``__path__``.  Nothing
is imported here: the finder only says where to look once somebody imports
them.  The student's package is loaded by path under a private name instead
(:mod:`labtests.impl_loader`), so both coexist in one process.

``labtests/__init__.py`` installs it, so every entry point (the ``raftlab``
commands, pytest's plugins, xdist workers, isolated peers' template) has it
before anything imports ``raft``.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType

FRAMEWORK_PACKAGES = ("raft", "labrpc")
# The folder holding labtests/, raft/ and labrpc/ (site-packages, or a source checkout).
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def framework_dir(name: str) -> str:
    """Where the framework's package ``name`` lives (beside ``labtests``)."""
    return os.path.join(_ROOT, name)


class FrameworkFinder(importlib.abc.MetaPathFinder):
    """Finds ``raft`` and ``labrpc`` beside ``labtests``, before any ``sys.path`` entry."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if path is not None or fullname not in FRAMEWORK_PACKAGES:
            return None
        folder = framework_dir(fullname)
        init = os.path.join(folder, "__init__.py")
        if not os.path.isfile(init):  # an unusual install: leave it to the normal finders
            return None
        return importlib.util.spec_from_file_location(
            fullname, init, submodule_search_locations=[folder])


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once per process)."""
    if not any(isinstance(f, FrameworkFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, FrameworkFinder())
    for name in FRAMEWORK_PACKAGES:
        _check_already_imported(name)


def _check_already_imported(name: str) -> None:
    """Refuse a ``raft`` imported from elsewhere before the harness (it cannot be undone)."""
    module = sys.modules.get(name)
    if module is None:
        return
    location = os.path.dirname(os.path.abspath(getattr(module, "__file__", None) or ""))
    expected = framework_dir(name)
    if not os.path.isfile(os.path.join(expected, "__init__.py")):
        return
    if os.path.normcase(location) != os.path.normcase(expected):
        raise ImportError(
            f"the module {name!r} was imported from {location} before raftlab's harness, "
            f"but raftlab's {name!r} package is {expected}: a folder named {name!r} on "
            f"sys.path (often the current directory, put first by 'python -m pytest') "
            f"shadowed it. Run 'pytest' or 'raftlab test' instead, and do not import "
            f"your own {name!r} package yourself: the harness loads it by path."
        )
