"""What one Dask task of ``raftlab explore`` runs: the work function, in a child process.

Why a child process: a simulated run seeds and draws from the module-level
``random`` (the Raft's election timeouts come from it), and a Dask worker's own
threads draw from it too, so a run inside the worker process would not be
repeatable -- the same seed would give another run than locally, and the
printed replay command would not reproduce it.  Each worker thread therefore
keeps one spawned child process (a clean interpreter with the worker's
``sys.path`` and explore's hash seed, :mod:`tools.explore.hashseed`) and runs
the schedules there, one at a time.

Each run is guarded inside that child as it is locally (:mod:`tools.explore.guard`:
a Raft that ends its process or hangs is a finding and the child lives on); should
the child itself die or stop answering, it is killed and replaced, and the task
returns an ``exit`` or ``hang`` record, so the worker thread is free again.

The child's scratch folder (its runs' work folders, the shipped implementation) is
made in the Dask worker's own folder (:mod:`tools.dask_folder`), not in /tmp: nothing
shuts these children down when the worker ends (they die with it,
:func:`tools.explore.hashseed.pinned_pool`), so a scratch folder in /tmp stayed behind
for every worker thread that ever ran a task.
"""

from __future__ import annotations

import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from tools.dask_folder import worker_folder
from tools.explore import hashseed, work

_local = threading.local()


def _child() -> ProcessPoolExecutor:
    pool = getattr(_local, "pool", None)
    if pool is None:
        # Spawned, with explore's hash seed (tools/explore/hashseed.py): as locally; no
        # semaphore name is left in /dev/shm should the worker's group be SIGKILLed.
        pool = _local.pool = hashseed.pinned_pool(1, scratch_in=worker_folder())
    return pool


def _discard() -> None:
    """Kill this thread's child (ours, by pid) so the next task gets a fresh one."""
    pool = getattr(_local, "pool", None)
    _local.pool = None
    if pool is None:
        return
    hashseed.kill_workers(pool)
    pool.shutdown(wait=False, cancel_futures=True)
    hashseed.remove_scratch(pool)


def explore_one(seed: int, impl: Any, race: bool, run_timeout: float) -> dict[str, Any]:
    """:func:`tools.explore.work.explore_one` in this thread's child process.

    The run itself is guarded there (:mod:`tools.explore.guard`: a Raft that ends its
    process or hangs is a finding); the checks here are for the child itself."""
    try:
        return _child().submit(work.explore_one, seed, impl, race,
                               run_timeout).result(timeout=run_timeout + 60)
    except FutureTimeout:
        _discard()
        return {"seed": seed, "outcome": "error", "monitor": "hang",
                "message": f"no result within {run_timeout + 60:.0f} s of wall time; its "
                           f"process on the Dask worker was killed",
                "virtual_s": 0.0}
    except BrokenProcessPool as exc:
        _discard()
        return {"seed": seed, "outcome": "error", "monitor": "exit",
                "message": f"the run's process on the Dask worker died ({exc})",
                "virtual_s": 0.0}


def shrink_one(schedule_json: dict[str, Any], impl: Any, max_runs: int, seconds: float,
               race: bool, run_timeout: float) -> dict[str, Any]:
    """:func:`tools.explore.work.shrink_one` in this thread's child process."""
    try:
        return _child().submit(work.shrink_one, schedule_json, impl, max_runs, seconds, race,
                               run_timeout).result(timeout=shrink_limit(seconds, run_timeout))
    except (FutureTimeout, BrokenProcessPool) as exc:
        _discard()
        return {"error": f"shrinking did not finish on the Dask worker "
                         f"({type(exc).__name__}: its process hung or died)",
                "unshrunk": schedule_json}


def shrink_limit(seconds: float, run_timeout: float) -> float:
    """Wall seconds one shrink may take: two passes (:func:`tools.explore.work._shrink`)
    and the runs that end them, each at most ``run_timeout``."""
    return 2 * seconds + 4 * run_timeout + 60
