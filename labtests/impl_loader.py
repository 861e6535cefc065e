"""Find the Raft implementation under test and check it has the lab's API.

The implementation is chosen by ``--raft-impl`` (or ``RAFTLAB_IMPL``, or a
project's ``[tool.raftlab] impl``; all read by :mod:`labtests.options`).  How a
spec is read (one rule, so that a student's folder called ``raft`` never
silently replaces what was asked):

* a **path** if it ends in ``.py``, contains a path separator (``./raft``,
  ``raft/``, ``work/myraft``) or starts with ``.``: a ``.py`` file or a package
  directory, loaded by path;
* otherwise a **module name** (``raft``, ``mypkg.myraft``), imported as Python
  would.  A folder or file of that name in the current directory does not
  count; if the import fails and one exists, the error says to write it as a
  path.

The default is the bundled reference Raft, the module ``raft`` (whose ``make``
delegates to :mod:`raft.reference`), recognised by identity, not by name.

A package or file loaded by path whose name is already taken in
``sys.modules`` (a student's ``raft/`` or ``raft.py``: ``raft`` is the
framework's API package) gets the private name ``raftlab_impl_<name>`` (then
``raftlab_impl_<name>_2``... for another student's in one process), so both
coexist; inside such a package, the student's own modules are imported
relatively (``from .log import Log``) and ``raft.api`` is always the framework's.

A module that lacks part of the API is reported once, by name, and every test
then fails fast with that message instead of with a confusing
``AttributeError`` deep inside the harness.

A module that forks its process while it is imported gets its copies ended at once
(labtests/fork_watch.py says why); each test reports how many
(:attr:`Implementation.import_forks`).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from labtests import fork_watch
from labtests.options import looks_like_path
from raft.api import REQUIRED_MODULE_FUNCTIONS, REQUIRED_RAFT_METHODS

DEFAULT_IMPL = "raft"


@dataclass
class Implementation:
    """The loaded implementation, or why it cannot be tested."""

    spec: str
    module: ModuleType | None = None
    error: str | None = None
    checked_classes: set[type] = field(default_factory=set)
    # Copies of the importing process the module's import made (each ended at once).
    import_forks: int = 0

    @property
    def is_bundled(self) -> bool:
        """Is this the reference Raft shipped with raftlab (held to stricter checks)?"""
        return self.module is not None and is_bundled_module(self.module)

    def make(self, peers: list[Any], me: int, persister: Any, apply_ch: Any) -> Any:
        """Call the implementation's ``make`` and check the object it returns."""
        if self.error is not None or self.module is None:
            raise ImplementationError(self.error or f"implementation {self.spec!r} not loaded")
        rf = self.module.make(peers, me, persister, apply_ch)
        cls = type(rf)
        if cls not in self.checked_classes:
            missing = missing_methods(rf)
            if missing:
                raise ImplementationError(
                    f"Raft implementation {self.spec!r}: the object returned by make() "
                    f"({cls.__module__}.{cls.__qualname__}) lacks required method(s): "
                    f"{', '.join(missing)} (needs {', '.join(REQUIRED_RAFT_METHODS)})"
                )
            self.checked_classes.add(cls)
        return rf


class ImplementationError(Exception):
    """The implementation under test cannot be used (missing API, import error)."""


BUNDLED_MODULES = ("raft", "raft.reference", "raft.reference.raft")


def is_bundled_module(module: ModuleType) -> bool:
    """True for the bundled Raft, recognised by identity of the loaded module.

    Not by name: a student's own folder or file called ``raft`` is loaded under
    another name (see :func:`_import_path`) and is not the bundled Raft.  The
    modules are looked up, not imported: the harness loads the bundled Raft like
    any other implementation and never imports it itself.
    """
    return any(module is sys.modules.get(name) for name in BUNDLED_MODULES)


def missing_methods(obj_or_class: Any) -> list[str]:
    return [m for m in REQUIRED_RAFT_METHODS if not callable(getattr(obj_or_class, m, None))]


def _file_of(module: ModuleType) -> str:
    return os.path.abspath(getattr(module, "__file__", None) or "")


def _import_path(path: str) -> ModuleType:
    """Import a ``.py`` file or a package directory given by path."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        init = os.path.join(path, "__init__.py")
        if not os.path.exists(init):
            raise ImportError(f"{path} is a directory without __init__.py (not a package)")
        name = os.path.basename(path.rstrip(os.sep))
        location, search = init, [path]
    else:
        name = os.path.splitext(os.path.basename(path))[0]
        location, search = path, None
    # A student's file is often called raft.py: never shadow an imported module, and
    # never mistake one student's raft for another's already loaded (raftlab_impl_raft_2).
    base, n = name, 1
    while name in sys.modules:
        if _file_of(sys.modules[name]) == location:
            return sys.modules[name]
        n += 1
        name = f"raftlab_impl_{base}" if n == 2 else f"raftlab_impl_{base}_{n - 1}"
    # A single file may import the modules beside it (``import log``), so its folder
    # goes on sys.path.  A package imports its own modules relatively and needs
    # nothing: putting its parent folder on sys.path would let whatever else lies
    # there (often the student's whole workspace) shadow installed modules.
    if search is None:
        parent = os.path.dirname(path)
        if parent not in sys.path:
            sys.path.insert(0, parent)
    spec = importlib.util.spec_from_file_location(name, location, submodule_search_locations=search)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    # Registered before running it, so pickled RPC classes can be found by name.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[loaded]
        raise
    return module


def _not_found_hint(spec: str, exc: BaseException) -> str:
    """Why a module name did not import, when the user probably meant a path."""
    if not isinstance(exc, ModuleNotFoundError) or exc.name != spec.split(".")[0]:
        return ""
    for candidate in (spec, spec + ".py"):
        if os.path.exists(candidate):
            return (f"\n{spec!r} is read as a module name; to test the "
                    f"{'folder' if os.path.isdir(candidate) else 'file'} {candidate!r} here, "
                    f"give it as a path: ./{candidate}")
    return ""


def _own_import_hint(spec: str, exc: BaseException) -> str:
    """A student's package called ``raft`` importing its own modules as ``raft.x``."""
    name = getattr(exc, "name", None) or ""
    if (isinstance(exc, ModuleNotFoundError) and name.startswith("raft.")
            and os.path.basename(os.path.abspath(spec).rstrip(os.sep)) == "raft"):
        return (f"\ninside your package, import your own modules relatively (from .x import "
                f"y): 'raft' always names raftlab's API package ({name!r} is not one of its "
                f"modules), and your package is loaded under a private name "
                f"(raftlab_impl_raft)")
    return ""


def load(spec: str | None = None) -> Implementation:
    """Load the implementation named by ``spec`` (default: the bundled Raft)."""
    spec = spec or DEFAULT_IMPL
    impl = Implementation(spec=spec)
    is_path = looks_like_path(spec)
    try:
        with fork_watch.forks_ended() as forks:
            try:
                if is_path:
                    if not os.path.exists(spec):
                        raise ImportError(f"no such file or directory: {spec}")
                    module = _import_path(spec)
                else:
                    module = importlib.import_module(spec)
            finally:
                impl.import_forks = forks.forks
    except BaseException as exc:  # noqa: BLE001 - every test reports it
        hint = _own_import_hint(spec, exc) if is_path else _not_found_hint(spec, exc)
        impl.error = (
            f"cannot import the Raft implementation {spec!r}: {exc!r}{hint}\n"
            + traceback.format_exc(limit=-3)
        )
        return impl
    impl.module = module
    problems = []
    missing_funcs = [f for f in REQUIRED_MODULE_FUNCTIONS if not callable(getattr(module, f, None))]
    if missing_funcs:
        problems.append(f"module function(s) {', '.join(missing_funcs)}")
    # If the module defines a Raft class, check it now rather than at make().
    cls = getattr(module, "Raft", None)
    if isinstance(cls, type):
        missing = missing_methods(cls)
        if missing:
            problems.append(f"method(s) {', '.join(missing)} on class Raft")
    if problems:
        impl.error = (
            f"Raft implementation {spec!r} ({getattr(module, '__file__', '?')}) lacks "
            + " and ".join(problems)
            + f"; the lab API is make(peers, me, persister, apply_ch) returning an object "
            f"with {', '.join(REQUIRED_RAFT_METHODS)}"
        )
    return impl
