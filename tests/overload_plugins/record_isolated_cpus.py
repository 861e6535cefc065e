"""pytest plugin for the CPU-pin tests in isolated mode: where the tester and the peers run.

Loaded with ``-p record_isolated_cpus`` (its folder on PYTHONPATH) in a child pytest
run with ``--isolate``: each time the tester has forked a peer it records the CPUs of
every thread of the tester's process and of that peer process; at the end of the
session the JSON file ``RAFTLAB_TEST_CPUS_OUT`` gets ``tester`` (a list of masks per
fork), ``peers`` (one mask per peer), ``wide`` (the process's mask before the first
test), ``after`` (every thread's mask once the tests ended) and ``cpu_pin`` (the
tests' properties).  Test-only.
"""

from __future__ import annotations

import json
import os

from labtests.isolation import launcher

_tester: list[list[list[int]]] = []
_peers: list[list[int]] = []
_pins: list[str] = []
_wide = sorted(os.sched_getaffinity(0))


def _masks_of_this_process() -> list[list[int]]:
    return [sorted(os.sched_getaffinity(int(tid))) for tid in os.listdir("/proc/self/task")]


_make_peer = launcher.IsolatedImplementation.make_peer


def _recording_make_peer(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
    proxy = _make_peer(self, *args, **kwargs)
    _tester.append(_masks_of_this_process())
    _peers.append(sorted(os.sched_getaffinity(proxy.pid)))
    return proxy


launcher.IsolatedImplementation.make_peer = _recording_make_peer


def pytest_runtest_logreport(report) -> None:  # noqa: ANN001
    if report.when == "call":
        _pins.extend(value for key, value in report.user_properties if key == "cpu_pin")


def pytest_sessionfinish(session, exitstatus) -> None:  # noqa: ANN001
    with open(os.environ["RAFTLAB_TEST_CPUS_OUT"], "w") as f:
        json.dump({"tester": _tester, "peers": _peers, "wide": _wide,
                   "after": _masks_of_this_process(), "cpu_pin": _pins}, f)
