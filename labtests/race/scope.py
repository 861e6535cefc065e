"""Which code is "the implementation": its files (for preemption) and modules (for fields).

One rule for both the race detector and line preemption, so they agree:

* the implementation's own files: the module's file, or its package folder;
  for the bundled Raft (the ``raft`` module, whose ``make`` delegates), the
  ``raft/reference`` folder -- never the API modules beside it, the harness,
  labrpc or the standard library;
* plus the files of any base class that a class of the implementation
  inherits from outside them (a mutant that subclasses the bundled Raft brings
  the bundled Raft's folder into scope: the inherited methods run on its
  objects).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from types import ModuleType

REFERENCE_PACKAGE = "raft.reference"


def _reference_dir() -> str:
    api = sys.modules.get("raft")
    base = os.path.dirname(os.path.abspath(api.__file__ or "")) if api else ""
    return os.path.join(base, "reference")


def _own_roots(module: ModuleType, bundled: bool) -> list[str]:
    if bundled:
        return [_reference_dir()]
    paths = getattr(module, "__path__", None)
    if paths:
        return [os.path.abspath(p) for p in paths]
    return [os.path.abspath(module.__file__ or "")]


def _under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _modules_under(roots: list[str]) -> list[ModuleType]:
    found = []
    for mod in list(sys.modules.values()):
        path = getattr(mod, "__file__", None)
        if isinstance(mod, ModuleType) and path and _under(os.path.abspath(path), roots):
            found.append(mod)
    return found


class Scope:
    """The implementation's files and loaded modules."""

    def __init__(self, module: ModuleType, bundled: bool) -> None:
        if bundled:
            # The bundled Raft's modules load on the first make(); load them now so
            # that their classes exist when the detector instruments them.
            importlib.import_module(f"{REFERENCE_PACKAGE}.raft")
        self.roots = _own_roots(module, bundled)
        for mod in _modules_under(self.roots):
            for value in list(vars(mod).values()):
                if not isinstance(value, type) or value.__module__ != mod.__name__:
                    continue
                for base in value.__mro__[1:]:
                    self._add_base(base)

    def _add_base(self, base: type) -> None:
        name = base.__module__
        if name == REFERENCE_PACKAGE or name.startswith(REFERENCE_PACKAGE + "."):
            root = _reference_dir()
        else:
            return  # the standard library, the API package, the harness: not in scope
        if root not in self.roots:
            self.roots.append(root)

    def contains(self, filename: str) -> bool:
        return _under(filename, self.roots)

    def predicate(self) -> Callable[[str], bool]:
        roots = list(self.roots)
        return lambda filename: _under(filename, roots)

    def modules(self) -> list[ModuleType]:
        return _modules_under(self.roots)
