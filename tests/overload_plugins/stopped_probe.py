"""pytest plugin for the machine-probe self-test: the shared probe process is not run.

Loaded with ``-p stopped_probe`` (its folder on PYTHONPATH) in a ``raftlab stress``
run, whose forked workers share one timer-lag probe process
(:mod:`labtests.machine_probe`).  Before each test's call it stops that process
with SIGSTOP for ``RAFTLAB_TEST_PROBE_STOP_MS`` and lets it go on: what the
probe sees when the operating system does not run it -- a sleep that returned
that much late while the probe used no CPU.  Nothing in the harness is
replaced: the real probe, shared memory and verdict decide.  Test-only.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from labtests import machine_probe


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):  # noqa: ANN201 - a hook wrapper
    probe = machine_probe.installed()
    if probe is None or probe.pid is None:
        pytest.fail("stopped_probe: no machine probe is installed in this process "
                    "(it is meant for raftlab stress's forked workers)")
    os.kill(probe.pid, signal.SIGSTOP)
    try:
        time.sleep(float(os.environ["RAFTLAB_TEST_PROBE_STOP_MS"]) / 1000.0)
    finally:
        os.kill(probe.pid, signal.SIGCONT)
    yield
