"""This machine's cores and load: what the stress and grade commands warn about and report.

The graded tests are timing-based, so a run's verdict depends on how loaded the
machine was; every command that starts many runs reads these two figures, and
the Dask workers report them for their own hosts.
"""

from __future__ import annotations

import os


def machine_cores() -> int:
    """The cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def loadavg() -> tuple[float, float, float]:
    """The 1, 5 and 15-minute load averages (zeros where the platform has none)."""
    try:
        return os.getloadavg()
    except OSError:
        return (0.0, 0.0, 0.0)
