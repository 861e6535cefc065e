"""The folder a Dask worker owns: where raftlab's tasks on that worker keep their files.

Why not /tmp: a task's files are removed by the task, but a worker can be killed in
the middle of one (by its host, by a batch system, by ``stress``'s own tests), and
the child processes a worker keeps for explore are never shut down at all (they die
with it).  What they wrote in /tmp stayed there for good.  Dask removes its worker's
folder when the worker closes, and when a worker starts it removes the folders of the
dead workers of that host (Dask's lock-file purge), so nothing is left behind.
"""

from __future__ import annotations


def worker_folder() -> str | None:
    """The current Dask worker's own folder, or None outside a Dask worker's task (then
    callers use the temporary directory).  Imports nothing of Dask when it is absent."""
    try:
        from distributed import get_worker
    except ImportError:
        return None
    try:
        return get_worker().local_directory
    except ValueError:  # not in a worker's task
        return None
