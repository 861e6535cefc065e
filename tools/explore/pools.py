"""Where explore's runs happen: local worker processes, or the tasks of a Dask cluster.

Both hand out ``concurrent.futures`` futures, so the explore loop does not care
which one it has: the local pool is a ``ProcessPoolExecutor``; the Dask pool is
the client's executor (``Client.get_executor``), one task per schedule, with the
scheduler spreading them over every worker of every host.

The implementation under test must reach the Dask workers: a ``.py`` file or a
package directory given with ``--impl`` is read here, scattered to the workers
once (:class:`~tools.explore.work.Shipped`) and written on each worker into a
temporary directory named by its content; a module name must be importable on
the workers (e.g. the bundled Raft of an installed raftlab).

On a worker, each task runs in a child process of the worker thread
(:mod:`tools.explore.remote`): that keeps runs repeatable (the same seed gives
the same run as locally); each run is guarded there as locally
(:mod:`tools.explore.guard`).  Should a whole task still give no result, the
client cancels it and reports ``hang``.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from tools.explore import hashseed, remote, work
from tools.explore.work import Shipped, ship


class PoolError(RuntimeError):
    """The pool cannot be used (e.g. no Dask scheduler at that address); the message says why."""


def _pinned_executor(workers: int) -> ProcessPoolExecutor:
    """Worker processes spawned with explore's hash seed (:mod:`tools.explore.hashseed`),
    started, their semaphores' names already unlinked (:func:`hashseed.pinned_pool`)."""
    return hashseed.pinned_pool(workers)


class LocalPool:
    """``workers`` processes on this machine."""

    kind = "local"

    def __init__(self, workers: int, impl: str | None) -> None:
        self.slots = workers
        self.impl_arg: Any = impl
        self.description = f"{workers} local worker process(es)"
        self._executor = _pinned_executor(workers)

    def submit(self, fn: Any, *args: Any) -> Future[Any]:
        return self._executor.submit(fn, *args)

    def cancel(self, fut: Future[Any]) -> None:
        fut.cancel()

    def replace_workers(self) -> None:
        """Kill the worker processes (ours, by pid) and start fresh ones."""
        self.stop()
        self._executor = _pinned_executor(self.slots)

    def stop(self) -> None:
        """End the runs in flight now (a stop signal): kill the workers, whose runs'
        children die with them, rather than wait for the runs; nothing runs after.

        The pool's futures are left to its own thread, which fails them all once it sees
        the workers gone: one cancelled from here first made that thread die of
        ``InvalidStateError`` (Python 3.11's ``terminate_broken``), a traceback printed
        after a Ctrl-C (seen in 2 of 4 stops 0.5 s after the start)."""
        hashseed.kill_workers(self._executor)
        self._executor.shutdown(wait=False, cancel_futures=True)
        hashseed.remove_scratch(self._executor)

    def shutdown(self) -> None:
        self._executor.shutdown(cancel_futures=True)
        hashseed.remove_scratch(self._executor)
        hashseed.stop_resource_tracker()


class DaskPool:
    """One task per schedule on the Dask cluster whose scheduler is ``address``.

    ``address``: ``tcp://HOST:8786`` or a scheduler JSON file, as for ``raftlab stress``.
    """

    kind = "dask"
    CONNECT_TIMEOUT = 30.0

    def __init__(self, address: str, impl: str | None, run_timeout: float) -> None:
        self.run_timeout = run_timeout
        try:
            from distributed import Client
        except ImportError as exc:
            from tools.stress.backends.factory import CLUSTER_INSTALL_HINT

            raise PoolError(f"{CLUSTER_INSTALL_HINT} ({exc})") from None
        try:
            if os.path.isfile(address):
                client = Client(scheduler_file=address, timeout=self.CONNECT_TIMEOUT,
                                set_as_default=False)
            else:
                client = Client(address, timeout=self.CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise PoolError(f"cannot reach the dask scheduler at {address}: {exc}") from None
        self._client = client
        try:
            client.wait_for_workers(1, timeout=self.CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            self.shutdown()
            raise PoolError(f"the dask scheduler at {address} has no workers ({exc}); start "
                            f"some with: dask worker {address}") from None
        workers = client.scheduler_info(n_workers=-1)["workers"]
        self.slots = max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))
        shipped: Shipped | None = ship(impl)
        # Scattered once; each task gets a reference that the worker resolves.
        self.impl_arg = (client.scatter(shipped, broadcast=True, hash=False)
                         if shipped is not None else impl)
        self.description = (f"dask {address}: {len(workers)} worker(s), {self.slots} "
                            f"thread(s)" + (f", shipping {shipped.name}" if shipped else ""))
        self._tasks: dict[Future[Any], Any] = {}
        self._lock = threading.Lock()

    def submit(self, fn: Any, *args: Any) -> Future[Any]:
        """One task; its outcome lands in the returned ``concurrent.futures`` future.

        ``fn`` is :func:`work.explore_one` or :func:`work.shrink_one`; the task runs
        it in a child process of the worker (:mod:`tools.explore.remote`)."""
        cf: Future[Any] = Future()
        if fn is work.explore_one:  # (seed, impl, race, run_timeout)
            task = self._client.submit(remote.explore_one, *args, pure=False)
        elif fn is work.shrink_one:  # (schedule, impl, max_runs, seconds, race, run_timeout)
            task = self._client.submit(remote.shrink_one, *args, pure=False)
        else:
            raise ValueError(f"no Dask task for {fn!r}")
        with self._lock:
            self._tasks[cf] = task

        def copy(done: Any) -> None:
            with self._lock:
                self._tasks.pop(cf, None)
            try:
                value = done.result()
            except BaseException as exc:  # noqa: BLE001 - handed to the explore loop
                _settle(cf, exc=exc)
            else:
                _settle(cf, value=value)

        task.add_done_callback(copy)
        return cf

    def cancel(self, fut: Future[Any]) -> None:
        with self._lock:
            task = self._tasks.pop(fut, None)
        fut.cancel()
        if task is not None:
            task.cancel()

    def replace_workers(self) -> None:
        """Nothing to kill from here (a worker's thread cannot be stopped): see the module."""

    def stop(self) -> None:
        """End the runs in flight (a stop signal): cancel every task of ours."""
        with self._lock:
            futures = list(self._tasks)
        for fut in futures:
            self.cancel(fut)

    def shutdown(self) -> None:
        with self._lock:
            tasks, self._tasks = list(self._tasks.values()), {}
        client, self._client = self._client, None
        if client is not None and tasks:
            try:
                client.cancel(tasks)
            except Exception:  # noqa: BLE001 - best effort while closing
                pass
        if client is not None:
            try:
                client.close(timeout=10)
            except Exception:  # noqa: BLE001 - closing must not hide the outcome
                pass


def _settle(fut: Future[Any], *, value: Any = None, exc: BaseException | None = None) -> None:
    """Complete ``fut`` unless it was cancelled meanwhile."""
    if not fut.set_running_or_notify_cancel():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(value)


def make_pool(backend: str, *, workers: int, scheduler: str | None, impl: str | None,
              run_timeout: float) -> LocalPool | DaskPool:
    if backend == "dask":
        assert scheduler is not None
        return DaskPool(scheduler, impl, run_timeout)
    return LocalPool(workers, impl)
