"""The Dask cluster backend of ``raftlab stress`` (and ``raftlab grade``): the client side.

Why Dask: one machine is not enough to grade a class or to run tens of thousands of
repetitions, and Dask distributed already schedules tasks over many hosts (a
scheduler plus ``dask worker`` processes, or SLURM/PBS through dask-jobqueue),
resubmits the tasks of a worker that dies and streams results back as they finish.

One task per run; what a task does on its worker is :mod:`.dask_worker`.

What must be on a worker: raftlab itself (the harness, the graded suites and this
module: ``pip install '.[cluster]'`` in a raftlab checkout), the same version as on the
client.  A
test file is looked up under the client's rootdir (same host or shared filesystem)
and else in the worker's installed raftlab.  The Raft implementation under test is
*shipped*: a single ``.py`` file given with ``--impl`` is scattered to the workers
once, written to each run's scratch directory and passed as ``--raft-impl``.  A
module name (not a file) must be importable on the workers.

Counted once: each run is one future with a unique key; the scheduler reruns the
task of a worker that died (up to ``distributed.scheduler.allowed-failures`` times),
a future is released as soon as its result is read (so a finished run is never
recomputed), and job indices already reported are ignored.  A run's pytest gets
SIGKILL when the worker thread that started it dies (Linux ``PR_SET_DEATHSIG``), so
a killed worker leaves no orphan run behind.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tools.stress.backends.base import BackendError, Job, RunOptions, RunResult, result_from_event
from tools.stress.backends.dask_worker import (
    POLL,
    RESOURCE,
    cancel_batch,
    host_info,
    run_one,
    set_run_slots,
    split_slots,
)


class DaskBackend:
    """Runs each job as one task on a Dask cluster (see the module docstring).

    ``scheduler``: an address (``tcp://HOST:8786``) or a scheduler JSON file.
    ``workers_per_host``: at most this many concurrent runs per host, shared out as
    the ``RUNS`` resource of the workers present at the start (it stays set on them
    afterwards; workers that join later get no runs unless started with
    ``--resources RUNS=n``).  Without it, the workers' own ``RUNS`` resources are used
    if they declare them (``dask worker --resources RUNS=2``), else their threads.
    ``command_prefix`` goes in front of each run's pytest command on the worker.
    """

    CONNECT_TIMEOUT = 30.0

    def __init__(self, scheduler: str, options: RunOptions, *,
                 workers_per_host: int | None = None,
                 command_prefix: Sequence[str] = ()) -> None:
        if workers_per_host is not None and workers_per_host < 1:
            raise ValueError("--workers-per-host must be at least 1")
        self.scheduler = scheduler
        self.options = options
        self.workers_per_host = workers_per_host
        self.command_prefix = list(command_prefix)
        self.batch = f"raftlab-{uuid.uuid4().hex[:12]}"
        self.slots = 0
        self.description = ""
        self._client: Any = None
        self._resources: dict[str, float] | None = None
        self._futures: list[Any] = []
        self._cancelled = threading.Event()
        self._cancel_requests = 0
        self._lock = threading.Lock()

    # -- setup --

    def connect(self) -> str:
        """Connect, plan the run slots and return a one-line description of the cluster.

        Raises BackendError when the scheduler cannot be reached or has no workers.
        """
        if self._client is not None:
            return self.description
        from distributed import Client

        try:
            if os.path.isfile(self.scheduler):
                client = Client(scheduler_file=self.scheduler, timeout=self.CONNECT_TIMEOUT,
                                set_as_default=False)
            else:
                client = Client(self.scheduler, timeout=self.CONNECT_TIMEOUT,
                                set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise BackendError(f"cannot reach the dask scheduler at {self.scheduler}: "
                               f"{exc}") from None
        self._client = client
        try:
            client.wait_for_workers(1, timeout=self.CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            self.close()
            raise BackendError(f"the dask scheduler at {self.scheduler} has no workers "
                               f"({exc}); start some with: dask worker {self.scheduler}"
                               ) from None
        self.description = self._plan_slots()
        return self.description

    def _plan_slots(self) -> str:
        client = self._client
        workers = client.scheduler_info(n_workers=-1)["workers"]
        infos = client.run(host_info)
        by_host: dict[str, list[str]] = {}
        for addr, info in infos.items():
            by_host.setdefault(info["host"], []).append(addr)
        cores = {info["host"]: info["cores"] for info in infos.values()}
        note = ""
        if self.workers_per_host is not None:
            for host_workers in by_host.values():
                for addr, n in split_slots(self.workers_per_host, host_workers).items():
                    client.run(set_run_slots, slots=n, workers=[addr])
            self._resources = {RESOURCE: 1}
            per_host = {h: self.workers_per_host for h in by_host}
            how = f"--workers-per-host {self.workers_per_host}"
        elif any(RESOURCE in (w.get("resources") or {}) for w in workers.values()):
            self._resources = {RESOURCE: 1}
            per_host = {h: 0 for h in by_host}
            for addr, w in workers.items():
                host = infos.get(addr, {}).get("host")
                if host in per_host:
                    per_host[host] += int((w.get("resources") or {}).get(RESOURCE, 0))
            if not all(RESOURCE in (w.get("resources") or {}) for w in workers.values()):
                note = f"; workers without a {RESOURCE} resource get no runs"
            how = f"the workers' {RESOURCE} resources"
        else:
            self._resources = None
            per_host = {h: 0 for h in by_host}
            for addr, w in workers.items():
                host = infos.get(addr, {}).get("host")
                if host in per_host:
                    per_host[host] += int(w.get("nthreads", 1))
            how = "the workers' threads"
        self.slots = sum(per_host.values())
        busy = [h for h, n in per_host.items() if n > cores.get(h, n)]
        if busy:
            note += (f"; warning: more runs than cores on {', '.join(sorted(busy))} "
                     "(timing-based tests may fail without a Raft bug; "
                     "use --workers-per-host)")
        address = client.scheduler_info(n_workers=0).get("address", self.scheduler)
        return (f"dask {address}: {len(infos)} worker(s) on "
                f"{len(by_host)} host(s), {self.slots} concurrent runs ({how}){note}")

    def _impl_to_ship(self) -> tuple[str, bytes] | None:
        impl = self.options.harness.impl
        if not impl or not os.path.exists(impl):
            return None  # a module name: must be importable on the workers
        if os.sep not in impl and not impl.endswith(".py") and _importable(impl):
            return None  # e.g. "raft" run from a checkout: the installed module, not a folder
        path = Path(impl)
        if not path.is_file() or path.suffix != ".py":
            raise BackendError(
                f"--impl {impl}: the dask backend ships a single .py file; install a "
                "package implementation on every worker and pass its module name instead")
        return path.name, path.read_bytes()

    def _spec(self, job: Job, impl_name: str | None) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "job": {"index": job.index, "test": job.test, "seed": job.seed},
            "options": self.options.to_json(),
            "impl_name": impl_name,
            "prefix": self.command_prefix,
        }

    # -- running --

    def run(self, jobs: Sequence[Job], on_result: Callable[[RunResult], None]) -> None:
        from distributed import as_completed
        from distributed.client import FutureCancelledError
        from distributed.scheduler import KilledWorker

        try:
            self.connect()
            client = self._client
            shipped = self._impl_to_ship()
            impl_future = (client.scatter(shipped[1], broadcast=True, hash=False)
                           if shipped else None)
            index_of: dict[str, int] = {}
            futures: list[Any] = []
            with self._lock:
                if self._cancelled.is_set():
                    return
                for job in jobs:
                    spec = self._spec(job, shipped[0] if shipped else None)
                    future = client.submit(run_one, spec, impl_future,
                                           key=f"{self.batch}-run-{job.index}", pure=False,
                                           resources=self._resources)
                    index_of[future.key] = job.index
                    futures.append(future)
                self._futures = futures
            reported: set[int] = set()
            lost: list[str] = []
            pending = as_completed(futures, loop=client.loop)
            while not pending.is_empty():
                if self._cancelled.is_set():
                    break
                if not pending.has_ready():
                    time.sleep(POLL)
                    continue
                for future in pending.next_batch(block=False):
                    index = index_of[future.key]
                    try:
                        event = future.result()
                    except (FutureCancelledError, KilledWorker) as exc:
                        if not self._cancelled.is_set():
                            lost.append(f"run {index}: {type(exc).__name__}: {exc}")
                        continue
                    except Exception as exc:
                        self._stop(client)
                        raise BackendError(f"a run could not be done: {exc}") from None
                    finally:
                        future.release()
                    if event is None or index in reported:
                        continue
                    reported.add(index)
                    on_result(result_from_event(event))
            if lost and not self._cancelled.is_set():
                raise BackendError(
                    f"{len(lost)} run(s) lost (their workers kept dying):\n" + "\n".join(lost[:10]))
        finally:
            self.close()

    def _stop(self, client: Any) -> None:
        """Cancel every outstanding run of this batch and stop those already running."""
        with self._lock:
            outstanding = [f for f in self._futures if not f.done()]
        try:
            client.cancel(outstanding, force=True)
        except Exception:  # noqa: BLE001 - best effort while shutting down
            pass
        try:
            client.run(cancel_batch, self.batch, on_error="ignore")
        except Exception:  # noqa: BLE001
            pass

    def cancel(self) -> None:
        """Stop: outstanding runs are cancelled, running ones killed on their workers."""
        with self._lock:
            self._cancel_requests += 1
            self._cancelled.set()
            client = self._client
        if client is not None:
            self._stop(client)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
            self._futures = []
        if client is not None:
            try:
                client.close(timeout=10)
            except Exception:  # noqa: BLE001 - closing must not hide the run's outcome
                pass


def _importable(name: str) -> bool:
    """Whether ``name`` is a module this interpreter can import (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
