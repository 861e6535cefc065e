"""What one worker process does: run a generated schedule, or shrink a failing one.

Functions take and return plain data (dicts, JSON text) so that they cross
process boundaries cheaply; the implementation is loaded once per process.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

from labtests.explore.generator import generate
from labtests.explore.runner import RACE_SLOWDOWN, RunResult
from labtests.explore.schedule import Schedule
from labtests.explore.shrink import Shrinker
from labtests.impl_loader import Implementation, load
from labtests.options import looks_like_path
from tools.explore import guard
from tools.explore.guard import GuardError, run_guarded

_IMPLS: dict[str | None, Implementation] = {}
# One simulation at a time per process: a simulation patches module attributes
# (threading, time, ...) process-wide; a Dask worker may run several tasks at once.
_SIM_LOCK = threading.Lock()


@dataclass(frozen=True)
class Shipped:
    """An implementation's source carried to another machine (a Dask worker).

    ``name`` is the file (``myraft.py``) or package directory name; ``files`` maps
    paths relative to it (``""`` for a single file) to their bytes; ``digest``
    names the content, so a process loads it once and every task reuses it.
    """

    name: str
    files: tuple[tuple[str, bytes], ...]
    digest: str

    def materialize(self) -> str:
        """Write the source into this process's scratch folder, once per content; its
        path.

        Why there: the folder goes with the process's pool (and with the Dask worker's
        folder, :mod:`tools.explore.remote`); a cache in /tmp kept a copy of every
        implementation ever explored (a class's worth of submissions) for good."""
        root = os.path.join(guard.RUNS_DIR or tempfile.gettempdir(),
                            f"raftlab-explore-impl-{os.getuid()}", self.digest)
        path = os.path.join(root, self.name)
        if os.path.exists(path):
            return path
        os.makedirs(root, exist_ok=True)
        scratch = tempfile.mkdtemp(prefix=".ship-", dir=root)
        try:
            for rel, data in self.files:
                dest = (os.path.join(scratch, self.name, rel) if rel
                        else os.path.join(scratch, self.name))
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                with open(dest, "wb") as f:
                    f.write(data)
            with contextlib.suppress(OSError):  # another process wrote the same content
                os.rename(os.path.join(scratch, self.name), path)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return path


def ship(spec: str | None) -> Shipped | None:
    """The source of ``spec`` to send to workers, or None for a module name (importable
    there, e.g. the bundled Raft).  A package directory ships its ``.py`` files."""
    if not spec or not looks_like_path(spec):
        return None  # a module name, as the loader reads it
    if not os.path.exists(spec):
        raise ValueError(f"--impl {spec}: no such file or directory")
    path = os.path.abspath(spec)
    files: list[tuple[str, bytes]] = []
    if os.path.isfile(path):
        with open(path, "rb") as f:
            files.append(("", f.read()))
    else:
        for top, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
            for n in sorted(names):
                if n.endswith(".py"):
                    full = os.path.join(top, n)
                    with open(full, "rb") as f:
                        files.append((os.path.relpath(full, path), f.read()))
        if not files:
            raise ValueError(f"--impl {spec}: no .py files in that directory to ship")
    name = os.path.basename(path.rstrip(os.sep))
    h = hashlib.sha256(name.encode())
    for rel, data in files:
        h.update(rel.encode() + b"\0" + data)
    return Shipped(name, tuple(files), h.hexdigest()[:16])


def implementation(spec: str | Shipped | None) -> Implementation:
    key = spec.digest if isinstance(spec, Shipped) else spec
    impl = _IMPLS.get(key)
    if impl is None:
        impl = _IMPLS[key] = load(spec.materialize() if isinstance(spec, Shipped) else spec)
    return impl


def record(seed: int | None, schedule: Schedule, result: RunResult) -> dict[str, Any]:
    """One line of ``results.jsonl``."""
    v = result.violation
    rec = {
        "seed": seed, "peers": schedule.n, "steps": len(schedule.steps),
        "horizon": schedule.horizon, "run_seed": schedule.seed,
        "outcome": "pass" if v is None else v.kind,
        "monitor": v.monitor if v else None, "at": v.at if v else None,
        "message": v.message.splitlines()[0] if v else None,
        "virtual_s": result.virtual_s, "wall_s": round(result.wall_s, 3),
        "commits": result.commits,
    }
    if result.output_bytes:  # what the Raft printed (kept off explore's output)
        rec["output_bytes"] = result.output_bytes
    return rec


def default_run_timeout(race: bool) -> float:
    """Wall seconds after which one run counts as hung (``--run-timeout``'s default)."""
    return 300.0 * (RACE_SLOWDOWN if race else 1.0)


def explore_one(seed: int, impl: str | Shipped | None, race: bool = False,
                run_timeout: float | None = None) -> dict[str, Any]:
    """Generate the schedule of ``seed`` and run it in a guarded child process (a failing
    record carries the schedule); ``race``: with the data-race detector."""
    schedule = generate(seed)
    timeout = default_run_timeout(race) if run_timeout is None else run_timeout
    with _SIM_LOCK:
        try:
            result = run_guarded(schedule, implementation(impl), race=race, timeout=timeout)
        except GuardError as exc:
            return {"seed": seed, "outcome": "error", "monitor": "crash",
                    "message": f"the run gave no result: {exc}", "virtual_s": 0.0}
    rec = record(seed, schedule, result)
    if result.violation is not None:
        rec["schedule"] = schedule.to_json()
    return rec


def shrink_one(schedule_json: dict[str, Any], impl: str | Shipped | None, max_runs: int,
               seconds: float, race: bool = False,
               run_timeout: float | None = None) -> dict[str, Any]:
    """Shrink a failing schedule; return the minimal one, its violation and debug log.

    At most ``2 * seconds`` plus a few runs: see :func:`_shrink`."""
    timeout = default_run_timeout(race) if run_timeout is None else run_timeout
    with _SIM_LOCK:
        try:
            return _shrink(schedule_json, implementation(impl), max_runs, seconds, race, timeout)
        except GuardError as exc:
            return {"error": f"not shrunk: a run gave no result ({exc})",
                    "unshrunk": schedule_json}


def _shrink(schedule_json: dict[str, Any], impl_obj: Implementation, max_runs: int,
            seconds: float, race: bool, timeout: float) -> dict[str, Any]:
    """Shrink without debug logging (faster), then run the minimal schedule with it, as its
    replay will.  Should that run fail otherwise (a Raft whose debug-log calls change
    what it does), shrink again from the start with every run logging, so that the
    schedule written always fails, when replayed, the monitor it was found by."""
    schedule = Schedule.from_json(schedule_json)

    def run(s: Schedule, debug: bool = False) -> RunResult:
        return run_guarded(s, impl_obj, timeout=timeout, race=race, debug=debug)

    first = run(schedule)
    if first.violation is None:
        return {"error": "the schedule did not fail again when rerun", "unshrunk": schedule_json}
    monitor = first.violation.monitor
    got = Shrinker(run, monitor, max_runs=max_runs,
                   deadline=time.monotonic() + seconds).shrink(schedule, first)
    final = run_guarded(got.schedule, impl_obj, timeout=timeout, race=race, debug=True,
                        timeline=True)
    note = None
    if final.violation != got.result.violation:
        note = (f"shrunk again with debug logging on: without it the minimal schedule broke "
                f"{_said(got.result)}, with it {_said(final)}")
        first = run(schedule, debug=True)
        if first.violation is None or first.violation.monitor != monitor:
            return {"error": f"not shrunk: with debug logging on (as its replay runs) the "
                             f"schedule {_said(first)} instead of [{monitor}]; the Raft "
                             f"behaves differently when its debug log is on",
                    "unshrunk": schedule_json}
        got = Shrinker(lambda s: run(s, debug=True), monitor, max_runs=max_runs,
                       deadline=time.monotonic() + seconds).shrink(schedule, first)
        final = run_guarded(got.schedule, impl_obj, timeout=timeout, race=race, debug=True,
                            timeline=True)
    same = final.violation is not None and final.violation == got.result.violation
    out = {
        "schedule": got.schedule.to_json(),
        "monitor": monitor,
        "violation": (final.violation or got.result.violation).headline(),
        "original_steps": got.steps_before, "steps": got.steps_after,
        "shrink_runs": got.runs, "replay_matches": same,
        "log": final.log or [],
        "timeline": final.timeline,
    }
    if note:
        out["note"] = note
    return out


def _said(result: RunResult) -> str:
    v = result.violation
    return "passed" if v is None else f"broke [{v.monitor}] ({v.message.splitlines()[0]})"
