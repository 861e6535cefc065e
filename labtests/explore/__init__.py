"""Explore: find the bugs the graded tests miss, with random fault schedules in simulated time.

The graded suites check a Raft under the lab's fixed scenarios.  Explore runs it
under *generated* ones -- partitions (symmetric, one-way, bridges), crashes at
arbitrary moments (including right after a peer saved its state or handled an
RPC), lost replies, unreliable and reordering periods, client bursts offered to
whoever claims to lead, snapshots -- while monitors check Raft's safety and
liveness properties from outside, through the lab's public API only.

Modules (one job each):

* :mod:`~labtests.explore.schedule` -- a schedule: plain, printable, JSON timed steps;
* :mod:`~labtests.explore.generator` -- a schedule drawn from a seed;
* :mod:`~labtests.explore.cluster` -- peers, links, crash triggers, apply readers;
* :mod:`~labtests.explore.monitors` -- the properties, what each can and cannot see;
* :mod:`~labtests.explore.runner` -- one schedule, one simulated run, the first violation;
* :mod:`~labtests.explore.shrink` -- a failing schedule reduced to a minimal one.

Everything runs inside :func:`labtests.sim.activate`: a schedule and its seed
give one run, so a shrunk failure replays exactly (same violation, same debug
log).  ``raftlab explore`` (``tools.explore``) is the command around it.
"""

from labtests.explore.generator import generate
from labtests.explore.monitors import Violation
from labtests.explore.runner import RunResult, run_schedule
from labtests.explore.schedule import Schedule, Step
from labtests.explore.shrink import shrink

__all__ = ["Schedule", "Step", "generate", "run_schedule", "RunResult", "Violation", "shrink"]
