"""pytest plugin: measure each test's timer lag with both probes, to compare them.

Why: forked stress workers share one probe process (labtests/machine_probe.py)
instead of each running its own 20/s probe (labtests/timing.py).  The shared
probe cannot see a worker's threads waiting for the GIL behind a holder the
machine preempted, so it may measure less than a worker's own probe would.
Loaded with ``-p probe_compare_plugin`` (``PYTHONPATH=benchmarks``) in a
``raftlab stress`` run, every test also runs the per-process probe, and one
JSON line per test goes to ``RAFTLAB_PROBE_COMPARE`` (a file, appended to):
``{"test", "outcome", "shared_max_ms", "process_max_ms", ...}``.  The verdict
still uses the shared probe.  The extra probes cost what they cost before the
shared probe (20 wake-ups a second per worker), so the load is that of the old
model.
"""

from __future__ import annotations

import json
import os

import pytest

from labtests import timing

_original = timing.start_sampler
_last: dict[str, object] = {}


class _Both:
    def __init__(self, shared, own) -> None:  # noqa: ANN001
        self.shared, self.own = shared, own

    @property
    def machine_max_s(self) -> float:
        return self.shared.machine_max_s

    def stop(self):  # noqa: ANN201
        own = self.own.stop()
        summary = self.shared.stop()
        _last.update(shared=summary, own=own)
        return summary

    def summary(self):  # noqa: ANN201
        return self.shared.summary()


def _start(sim: bool = False):  # noqa: ANN202
    sampler = _original(sim)
    if getattr(sampler, "probe", None) is None:  # not a shared view: nothing to compare
        return sampler
    return _Both(sampler, timing.LagSampler().start())


def pytest_configure(config: pytest.Config) -> None:
    timing.start_sampler = _start


@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed:
        _last["failed"] = True
    if report.when != "teardown" or "shared" not in _last:
        return
    shared, own = _last.pop("shared"), _last.pop("own")
    outcome = "failed" if _last.pop("failed", False) else "passed"
    line = {"test": report.nodeid.split("::")[-1], "outcome": outcome,
            "shared_max_ms": shared.max_ms, "shared_p99_ms": shared.p99_ms,
            "process_max_ms": own.max_ms, "process_p99_ms": own.p99_ms,
            "process_self_max_ms": own.self_max_ms}
    with open(os.environ["RAFTLAB_PROBE_COMPARE"], "a") as f:
        f.write(json.dumps(line) + "\n")
