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

PACKAGES = ("labrpc", "labtests", "raft")
# Standard modules a measured run imports only once a test runs: ctypes (labtests.libc
# loads the C library on first use: timer slack, malloc_trim) and the ascii codec
# (thread_cpu_plugin reads /proc with it).  Found by diffing the cache after a 2A run.
LATER = ("ctypes", "encodings.ascii")


def pytest_collection_finish(session: object) -> None:
    imported = failed = 0
    for top in PACKAGES:
        try:
            package = importlib.import_module(top)
        except Exception:  # noqa: BLE001 - a tree without this package: nothing to warm
            failed += 1
            continue
        names = [top] + [info.name for info in
                         pkgutil.walk_packages(package.__path__, prefix=f"{top}.",
                                               onerror=lambda _name: None)]
        for name in names:
            try:
                importlib.import_module(name)
                imported += 1
            except Exception:  # noqa: BLE001 - see the module docstring
                failed += 1
    for name in LATER:
        try:
            importlib.import_module(name)
            imported += 1
        except Exception:  # noqa: BLE001 - see the module docstring
            failed += 1
    print(f"\nbytecode warm-up: {imported} modules imported, {failed} could not be")
