"""The worker side of the Dask backend: what runs inside a ``dask worker`` process.

One task is one run: :func:`run_one` gets plain data (test node id, seed, run
options, the implementation file's bytes), runs one fresh ``python -m pytest
<file> -p tools.stress.pytest_plugin --stress-jobs <one job>`` in a scratch
directory, so a timing-based run never shares a process with another, and
returns the plugin's event (outcome, message, log, properties) as a dict.  The
other functions are run on every worker by the client: planning run slots,
stopping a cancelled batch.

A test file is looked up under the client's rootdir (same host or shared
filesystem) and else in the worker's installed raftlab.  A run's pytest gets
SIGKILL when the worker thread that started it dies (Linux ``PR_SET_DEATHSIG``),
so a killed worker leaves no orphan run behind.

Nothing here imports dask at module level, so this module can be imported (and
tested) without it; it never imports the client side.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from tools.dask_folder import worker_folder
from tools.machine import machine_cores
from tools.stress.backends.base import WORKER_PYTHON, Job, RunOptions
from tools.stress.backends.pytest_runs import plugin_command, write_jobs_file

RESOURCE = "RUNS"
POLL = 0.1
OUTPUT_TAIL = 60

_lock = threading.Lock()
_running: dict[str, set[subprocess.Popen[bytes]]] = {}
_cancelled_batches: set[str] = set()

# Execs the command after asking the kernel to SIGKILL it when the thread that started
# it (a worker's task thread) dies: a SIGKILLed worker then takes its runs with it.
# It loads libc itself, not through labtests.libc: it runs in a fresh interpreter (the
# worker's), where raftlab may not be importable, and does nothing else before the exec.
_DEATHSIG_EXEC = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)\n"  # PR_SET_DEATHSIG
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(137)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def _with_deathsig(cmd: list[str]) -> list[str]:
    if not sys.platform.startswith("linux"):
        return cmd
    return [sys.executable, "-c", _DEATHSIG_EXEC, str(os.getpid()), *cmd]


def worker_rootdir(client_root: str, test_file: str) -> Path:
    """Where ``test_file`` (relative to the client's rootdir) is on this worker.

    The client's rootdir when it exists here (same host, shared filesystem); else the
    installed raftlab (node ids of the graded suites start with ``labtests/``).
    """
    root = Path(client_root)
    if (root / test_file).is_file():
        return root
    spec = importlib.util.find_spec("labtests")
    if spec is not None and spec.submodule_search_locations:
        installed = Path(next(iter(spec.submodule_search_locations))).parent
        if (installed / test_file).is_file():
            return installed
    raise FileNotFoundError(
        f"test file {test_file} is not on worker host {socket.gethostname()}: not under "
        f"{root} and not in an installed raftlab; install raftlab on every worker "
        "(pip install '.[cluster]' in a raftlab checkout) or put the tests on a shared "
        "filesystem")


def _worker_name() -> str:
    host = socket.gethostname()
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return f"{host}/pid{os.getpid()}"
    name = str(worker.name)
    return f"{host}/{name}" if name != worker.address else f"{host}/{worker.address}"


def _tail(path: Path, lines: int = OUTPUT_TAIL) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run_one(spec: dict[str, Any], impl_data: bytes | None = None) -> dict[str, Any] | None:
    """The task: do one run in a fresh pytest process; return its event dict.

    Returns None if the batch was cancelled while it ran.  A run whose pytest died
    without reporting (a crash, the outer time limit) is a failed run with the output
    tail as its log; a pytest that could not start the test at all (usage or
    collection error: a worker without raftlab or the tests) raises, which the client
    reports as a backend error.
    """
    batch = spec["batch"]
    job = Job(**spec["job"])
    options = RunOptions.from_json(spec["options"])
    test_file = job.test.split("::", 1)[0]
    root = worker_rootdir(str(options.rootdir), test_file)
    started = time.monotonic()
    # In the worker's own folder: a worker killed mid-run cannot remove it (tools/dask_folder.py).
    with tempfile.TemporaryDirectory(prefix="raftlab-run-", dir=worker_folder()) as tmp:
        scratch = Path(tmp)
        if impl_data is not None:
            impl_path = scratch / "impl" / spec["impl_name"]
            impl_path.parent.mkdir()
            impl_path.write_bytes(impl_data)
            options = replace(options, harness=replace(options.harness, impl=str(impl_path)))
        events = scratch / "events.jsonl"
        jobs_file = scratch / "job.json"
        write_jobs_file(jobs_file, events, [Job(0, job.test, job.seed)],
                        options.keep_passing_logs)
        cmd = plugin_command(options, jobs_file, [str(root / test_file)])
        cmd[3:3] = [f"--rootdir={root}", "-p", "no:cacheprovider"]  # after "python -m pytest"
        prefix = [sys.executable if arg == WORKER_PYTHON else arg
                  for arg in spec.get("prefix") or ()]
        cmd = prefix + cmd
        output = scratch / "output.txt"
        with open(output, "wb") as out:
            with _lock:
                if batch in _cancelled_batches:
                    return None
                proc = subprocess.Popen(_with_deathsig(cmd), cwd=scratch, stdout=out,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
                _running.setdefault(batch, set()).add(proc)
            try:
                limit = options.timeout + 120 if options.timeout else None
                try:
                    rc = proc.wait(timeout=limit)
                    timed_out = False
                except subprocess.TimeoutExpired:
                    _killpg(proc)
                    rc = proc.wait()
                    timed_out = True
            finally:
                with _lock:
                    _running.get(batch, set()).discard(proc)
        with _lock:
            if batch in _cancelled_batches:
                return None
        lines = [ln for ln in events.read_text(encoding="utf-8").splitlines() if ln.strip()]
        if lines:
            event = json.loads(lines[0])
        elif not timed_out and _could_not_start(rc, output):
            raise RuntimeError(
                f"pytest could not run {job.test} on {_worker_name()} (exit {rc}):\n"
                f"{_tail(output, 25)}")
        else:  # the run's process died (the code under test crashed it) or hung
            why = (f"no result after {limit:.0f} s; killed" if timed_out
                   else f"pytest ended with status {rc} without reporting the run (crashed?)")
            event = {"outcome": "failed", "duration": round(time.monotonic() - started, 4),
                     "message": why, "log": _tail(output), "properties": {}}
    event.update(job=job.index, test=job.test, seed=int(event.get("seed", job.seed)),
                 worker=_worker_name())
    event.setdefault("loadavg", [round(x, 2) for x in os.getloadavg()])
    return event


def _could_not_start(rc: int, output: Path) -> bool:
    """pytest's usage error, nothing collected, or a collection error: the worker's setup
    is wrong (not the run's fault).  Any other silent exit is the run crashing."""
    if rc in (4, 5):
        return True
    return rc == 2 and "error" in _tail(output, 5).lower()


def _killpg(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def cancel_batch(batch: str) -> int:
    """Run on every worker at Ctrl-C: stop the batch's runs, start no new ones."""
    with _lock:
        _cancelled_batches.add(batch)
        procs = list(_running.pop(batch, ()))
    for proc in procs:
        _killpg(proc)
    return len(procs)


def host_info() -> dict[str, Any]:
    """Run on every worker to plan run slots per host."""
    return {"host": socket.gethostname(), "cores": machine_cores()}


async def set_run_slots(dask_worker: Any, slots: int) -> None:
    """Run on a worker: it may run ``slots`` runs at once (its ``RUNS`` resource)."""
    await dask_worker.set_resources(**{RESOURCE: slots})


def split_slots(per_host: int, workers: Sequence[str]) -> dict[str, int]:
    """Share ``per_host`` run slots among one host's workers as evenly as possible."""
    base, extra = divmod(per_host, len(workers))
    return {w: base + (1 if i < extra else 0) for i, w in enumerate(sorted(workers))}


