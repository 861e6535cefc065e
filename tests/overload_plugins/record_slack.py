"""pytest plugin for the timer-slack, batch-scheduling and CPU-pin tests: which timer
slack, scheduling policy and CPUs the bundled Raft's threads run with.

Loaded with ``-p record_slack`` (its folder on PYTHONPATH) in a child pytest: each
peer's ticker and applier thread reads its own timer slack, policy and CPU mask as it
starts; at the end of the session the JSON file ``RAFTLAB_TEST_SLACK_OUT`` gets them as
``threads``: ``[thread name, slack ns, policy, [cpus]]``, with ``wide``, the process's
mask before the first test, ``after``, the mask of every thread of the process
once the tests have ended, and ``cpu_pin``, the tests' ``cpu_pin`` properties.  Test-only.
"""

from __future__ import annotations

import json
import os
import threading

from labtests import batchsched, timerslack
from raft.reference import raft as reference

_seen: list[list] = []
_mu = threading.Lock()


def _recording(method):  # noqa: ANN001, ANN202 - wraps a thread target of the Raft
    def run(self):  # noqa: ANN001, ANN202
        with _mu:
            _seen.append([threading.current_thread().name, timerslack.current_slack_ns(),
                          batchsched.current_policy(), sorted(os.sched_getaffinity(0))])
        return method(self)
    return run


reference.Raft._ticker = _recording(reference.Raft._ticker)
reference.Raft._applier = _recording(reference.Raft._applier)


_wide = sorted(os.sched_getaffinity(0))
_pins: list[str] = []  # the tests' "cpu_pin" properties


def pytest_runtest_logreport(report) -> None:  # noqa: ANN001
    if report.when == "call":
        _pins.extend(value for key, value in report.user_properties if key == "cpu_pin")


def pytest_sessionfinish(session, exitstatus) -> None:  # noqa: ANN001
    after = [sorted(os.sched_getaffinity(int(tid))) for tid in os.listdir("/proc/self/task")]
    with open(os.environ["RAFTLAB_TEST_SLACK_OUT"], "w") as f:
        json.dump({"threads": _seen, "wide": _wide, "after": after, "cpu_pin": _pins}, f)
