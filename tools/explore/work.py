"""What one worker process does: run a generated schedule, or shrink a failing one.

Functions take and return plain data (dicts, JSON text) so that they cross
process boundaries cheaply; the implementation is loaded once per process.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

from labtests.explore.generator import generate
from labtests.explore.runner import RunResult, run_schedule
from labtests.explore.schedule import Schedule
from labtests.explore.shrink import Shrinker
from labtests.impl_loader import Implementation, load
from labtests.options import looks_like_path

_IMPLS: dict[str | None, Implementation] = {}
# One simulation at a time per process: a simulation patches module attributes
# (threading, time, ...) process-wide; a Dask worker may run several tasks at once.
_SIM_LOCK = threading.Lock()


@dataclass(frozen=True)
class Shipped:
    """An implementation's source carried to another machine (a Dask worker).

    ``name`` is the file (``myraft.py``) or package directory name; ``files`` maps
    paths relative to it (``""`` for a single file) to their bytes; ``digest``
    names the content, so a worker writes it once and every task reuses it.
    """

    name: str
    files: tuple[tuple[str, bytes], ...]
    digest: str

    def materialize(self) -> str:
        """Write the source under the temp directory (once per content); its path."""
        root = os.path.join(tempfile.gettempdir(), f"raftlab-explore-impl-{os.getuid()}",
                            self.digest)
        path = os.path.join(root, self.name)
        if os.path.exists(path):
            return path
        os.makedirs(root, exist_ok=True)
        scratch = tempfile.mkdtemp(prefix=".ship-", dir=root)
        for rel, data in self.files:
            dest = os.path.join(scratch, self.name, rel) if rel else os.path.join(scratch,
                                                                                   self.name)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as f:
                f.write(data)
        try:
            os.rename(os.path.join(scratch, self.name), path)
        except OSError:  # another task of this worker host wrote the same content first
            pass
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
    return {
        "seed": seed, "peers": schedule.n, "steps": len(schedule.steps),
        "horizon": schedule.horizon, "run_seed": schedule.seed,
        "outcome": "pass" if v is None else v.kind,
        "monitor": v.monitor if v else None, "at": v.at if v else None,
        "message": v.message.splitlines()[0] if v else None,
        "virtual_s": result.virtual_s, "wall_s": round(result.wall_s, 3),
        "commits": result.commits,
    }


def explore_one(seed: int, impl: str | Shipped | None, race: bool = False) -> dict[str, Any]:
    """Generate the schedule of ``seed`` and run it (a failing record carries the schedule);
    ``race``: with the data-race detector."""
    schedule = generate(seed)
    with _SIM_LOCK:
        result = run_schedule(schedule, implementation(impl), race=race)
    rec = record(seed, schedule, result)
    if result.violation is not None:
        rec["schedule"] = schedule.to_json()
    return rec


def shrink_one(schedule_json: dict[str, Any], impl: str | Shipped | None, max_runs: int,
               seconds: float, race: bool = False) -> dict[str, Any]:
    """Shrink a failing schedule; return the minimal one, its violation and debug log."""
    with _SIM_LOCK:
        return _shrink(schedule_json, implementation(impl), max_runs, seconds, race)


def _shrink(schedule_json: dict[str, Any], impl_obj: Implementation, max_runs: int,
            seconds: float, race: bool) -> dict[str, Any]:
    schedule = Schedule.from_json(schedule_json)
    first = run_schedule(schedule, impl_obj, race=race)
    if first.violation is None:
        return {"error": "the schedule did not fail again when rerun"}
    shrinker = Shrinker(lambda s: run_schedule(s, impl_obj, race=race), first.violation.monitor,
                        max_runs=max_runs, deadline=time.monotonic() + seconds)
    got = shrinker.shrink(schedule, first)
    final = run_schedule(got.schedule, impl_obj, debug=True, race=race, timeline=True)
    same = final.violation is not None and final.violation == got.result.violation
    return {
        "schedule": got.schedule.to_json(),
        "monitor": first.violation.monitor,
        "violation": (final.violation or got.result.violation).headline(),
        "original_steps": got.steps_before, "steps": got.steps_after,
        "shrink_runs": got.runs, "replay_matches": same,
        "log": final.log or [],
        "timeline": final.timeline,
    }
