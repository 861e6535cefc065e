"""What one worker process does: run a generated schedule, or shrink a failing one.

Functions take and return plain data (dicts, JSON text) so that they cross
process boundaries cheaply; the implementation is loaded once per process.
"""

from __future__ import annotations

import time
from typing import Any

from labtests.explore.generator import generate
from labtests.explore.runner import RunResult, run_schedule
from labtests.explore.schedule import Schedule
from labtests.explore.shrink import Shrinker
from labtests.impl_loader import Implementation, load

_IMPLS: dict[str | None, Implementation] = {}


def implementation(spec: str | None) -> Implementation:
    impl = _IMPLS.get(spec)
    if impl is None:
        impl = _IMPLS[spec] = load(spec)
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


def explore_one(seed: int, impl: str | None) -> dict[str, Any]:
    """Generate the schedule of ``seed`` and run it (a failing record carries the schedule)."""
    schedule = generate(seed)
    result = run_schedule(schedule, implementation(impl))
    rec = record(seed, schedule, result)
    if result.violation is not None:
        rec["schedule"] = schedule.to_json()
    return rec


def shrink_one(schedule_json: dict[str, Any], impl: str | None, max_runs: int,
               seconds: float) -> dict[str, Any]:
    """Shrink a failing schedule; return the minimal one, its violation and debug log."""
    impl_obj = implementation(impl)
    schedule = Schedule.from_json(schedule_json)
    first = run_schedule(schedule, impl_obj)
    if first.violation is None:
        return {"error": "the schedule did not fail again when rerun"}
    shrinker = Shrinker(lambda s: run_schedule(s, impl_obj), first.violation.monitor,
                        max_runs=max_runs, deadline=time.monotonic() + seconds)
    got = shrinker.shrink(schedule, first)
    final = run_schedule(got.schedule, impl_obj, debug=True)
    same = final.violation is not None and final.violation == got.result.violation
    return {
        "schedule": got.schedule.to_json(),
        "monitor": first.violation.monitor,
        "violation": (final.violation or got.result.violation).headline(),
        "original_steps": got.steps_before, "steps": got.steps_after,
        "shrink_runs": got.runs, "replay_matches": same,
        "log": final.log or [],
    }
