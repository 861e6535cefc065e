"""pytest plugin for the simulation-limit self-tests: a machine that starves the run.

Loaded with ``-p fake_runqueue`` (tests/toys_sim on PYTHONPATH) in a child
pytest, it makes :func:`labtests.sim.runqueue.run_delay_s` report every second
the simulation's thread spent off the CPU as time waiting for a CPU -- what a
machine too loaded to run the process looks like to the real measure.  With a
Raft that blocks in real calls (``real_sleeper.py``) the run's wall time then
grows while its CPU time does not, as under load.  Test-only: the harness has
no switch that fakes this.
"""

from __future__ import annotations

import time

from labtests.sim import runqueue

_real_monotonic = time.monotonic  # bound now: the simulation patches time.monotonic
_real_thread_time = time.thread_time


def _all_off_cpu_time_waited() -> float:
    return _real_monotonic() - _real_thread_time()


runqueue.run_delay_s = _all_off_cpu_time_waited
