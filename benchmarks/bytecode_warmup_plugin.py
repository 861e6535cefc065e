"""Warm-up plugin of the benchmarks' bytecode cache: ``-p bytecode_warmup_plugin``.

Why: a benchmark that compares two source trees must not charge one of them for
compiling modules the other finds cached (see :func:`benchcommon.warm_bytecode`).
Loaded into one ``pytest --collect-only`` run per tree, it imports every module of
the lab's packages (``labrpc``, ``labtests``, ``raft``) once collection is done,
under the same assertion-rewriting hook and marks as the measured runs, so that
both the plain bytecode and pytest's rewritten ``*-pytest-*.pyc`` of every module a
test may import later are written before anything is measured.  A module that
cannot be imported here is skipped (the measured runs will say so if it matters).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

PACKAGES = ("labrpc", "labtests", "raft")
# Standard modules a measured run imports only once a test runs: ctypes (labtests.libc
# loads the C library on first use: timer slack, malloc_trim) and the ascii codec
# (thread_cpu_plugin reads /proc with it).  Found by diffing the cache after a 2A run.
LATER = ("ctypes", "encodings.ascii")


def _imports(name: str) -> bool:
    """Import ``name``; False if it cannot be (see the module docstring)."""
    try:
        importlib.import_module(name)
    except Exception:  # noqa: BLE001 - a module this tree lacks or cannot import alone
        return False
    return True


def pytest_collection_finish(session: object) -> None:
    imported = failed = 0
    names: list[str] = []
    for top in PACKAGES:
        if not _imports(top):  # a tree without this package: nothing to warm
            failed += 1
            continue
        names += [top] + [info.name for info in
                          pkgutil.walk_packages(sys.modules[top].__path__, prefix=f"{top}.",
                                                onerror=lambda _name: None)]
    for name in [*names, *LATER]:
        if _imports(name):
            imported += 1
        else:
            failed += 1
    print(f"\nbytecode warm-up: {imported} modules imported, {failed} could not be")
