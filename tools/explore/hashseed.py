"""One string-hash seed for every run of explore and for every replay.

Why: Python salts the hash of ``str`` and ``bytes`` per process (unless
``PYTHONHASHSEED`` is set when the interpreter starts), so the order in which a
set or a dict built from hashes iterates strings changes from process to
process.  A Raft that iterates a set of peer names or method names then takes
another path in a replay (a fresh process) than in the run explore found, and
"replays exactly" would hold only by luck.  So explore's runs happen in
interpreters started with ``PYTHONHASHSEED`` = :data:`HASH_SEED` (the local
worker processes, and the child process of each Dask worker thread); the seed is
recorded in each finding's JSON, and ``--replay`` runs in an interpreter started
with the recorded seed (:data:`HASH_SEED` for files written before it was
recorded).

The hash seed can only be chosen when an interpreter starts, so the workers are
*spawned* (a fresh interpreter), not forked, with the variable set just for
that start (:func:`pinned_context`); each run is then forked from a worker
(:mod:`tools.explore.guard`) and inherits its seed.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing.context as mp_context
import os
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

HASH_SEED = 0  # PYTHONHASHSEED of every run explore makes
KEY = "hash_seed"  # the field of a finding's JSON that records it

_environ_lock = threading.Lock()  # os.environ is changed only while a worker starts


class _PinnedProcess(mp_context.SpawnProcess):
    """A spawned process whose interpreter starts with ``PYTHONHASHSEED`` set."""

    hash_seed = HASH_SEED

    @staticmethod
    def _Popen(process_obj: Any) -> Any:  # noqa: N802 - multiprocessing's name
        with _environ_lock:
            before = os.environ.get("PYTHONHASHSEED")
            os.environ["PYTHONHASHSEED"] = str(process_obj.hash_seed)
            try:
                return mp_context.SpawnProcess._Popen(process_obj)
            finally:
                if before is None:
                    os.environ.pop("PYTHONHASHSEED", None)
                else:
                    os.environ["PYTHONHASHSEED"] = before


class _PinnedContext(mp_context.SpawnContext):
    """The ``spawn`` context, with every process started under one hash seed."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.seed = seed

    def Process(self, *args: Any, **kwargs: Any) -> _PinnedProcess:  # type: ignore[override]  # noqa: N802
        proc = _PinnedProcess(*args, **kwargs)
        proc.hash_seed = self.seed
        return proc


def pinned_context(seed: int = HASH_SEED) -> mp_context.SpawnContext:
    """A multiprocessing context (for ``ProcessPoolExecutor(mp_context=...)``) whose
    processes start with ``PYTHONHASHSEED=seed``."""
    return _PinnedContext(seed)


@contextlib.contextmanager
def pinned_executor(workers: int, seed: int = HASH_SEED) -> Iterator[ProcessPoolExecutor]:
    """A pool of ``workers`` spawned with ``PYTHONHASHSEED=seed``, for a ``with`` block.

    On leaving it the pool is shut down and the resource tracker it brought along is
    stopped (:func:`stop_resource_tracker`), so a command that used it ends with no
    process of its left behind.
    """
    pool = ProcessPoolExecutor(workers, mp_context=pinned_context(seed))
    try:
        yield pool
    finally:
        pool.shutdown(cancel_futures=True)
        stop_resource_tracker()


def stop_resource_tracker() -> None:
    """End the resource tracker that spawned workers brought along, and wait for it.

    A ``spawn`` context starts multiprocessing's resource tracker (a child process
    that cleans up the pool's semaphores); it ends by itself only once this process
    has exited, so ``raftlab explore`` would leave it behind for a moment, running in
    its process group.  Stopping it here, after the pool, makes the command end clean.
    ``_stop`` is private but present in 3.11-3.13; without it nothing is done.
    """
    from multiprocessing import resource_tracker

    stop = getattr(getattr(resource_tracker, "_resource_tracker", None), "_stop", None)
    if stop is not None:
        stop()


def current() -> int | None:
    """This interpreter's hash seed, if it was pinned when it started; None if random."""
    if not sys.flags.hash_randomization:
        return 0  # PYTHONHASHSEED=0 turns randomization off: the seed is 0
    value = os.environ.get("PYTHONHASHSEED", "")
    return int(value) if value.isdigit() else None


def recorded(data: dict[str, Any]) -> int:
    """The hash seed a finding's JSON records (:data:`HASH_SEED` for older files)."""
    value = data.get(KEY, HASH_SEED)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 4294967295:
        raise ValueError(f"{KEY} must be an integer from 0 to 4294967295, not {value!r}")
    return value


def with_hash_seed(schedule_text: str, seed: int = HASH_SEED) -> str:
    """A schedule's JSON text (``Schedule.dumps``) with the hash seed recorded first."""
    if not schedule_text.startswith("{"):
        raise ValueError("not a JSON object")
    text = f'{{"{KEY}": {int(seed)}, ' + schedule_text[1:]
    json.loads(text)  # still one JSON document
    return text
