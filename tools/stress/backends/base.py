"""The backend interface of stress and grade runs: what a run is, what comes back, who runs it.

``raftlab stress`` and ``raftlab grade`` both plan *jobs* (one test node id + one
seed each) and hand them to a backend; the backend calls ``on_result`` once per
finished run, from its own thread.  Nothing else crosses the interface, so the
commands, the display and the output files do not know whether runs happen in a
local pytest session (:mod:`.xdist`: forked workers, or ``pytest -n``) or on a
Dask cluster (:mod:`.dask_client`).

This module is the neutral ground both commands import (the grader never imports
the stress *command*); it imports no backend, so no backend can form a cycle with
it.  Choosing a backend by name is :mod:`.factory`'s job.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from labtests.options import HarnessOptions

# In a dask ``command_prefix``: replaced by the worker's own Python interpreter.
WORKER_PYTHON = "{python}"


@dataclass(frozen=True)
class Job:
    """One run to do: test ``test`` (a pytest node id) with seed ``seed``."""

    index: int
    test: str
    seed: int


def one_token(args: Sequence[str]) -> list[str]:
    """``["--raft-impl", "x.py"]`` -> ``["--raft-impl=x.py"]``: one token per option.

    pytest reads its command line before the plugin that defines an option is
    loaded, and would take a separate value that is an existing path (a ``.py``
    implementation) for a test path, changing the rootdir.
    """
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        nxt = args[i + 1] if i + 1 < len(args) else None
        if arg.startswith("--") and "=" not in arg and nxt is not None \
                and not nxt.startswith("-"):
            out.append(f"{arg}={nxt}")
            i += 2
        else:
            out.append(arg)
            i += 1
    return out


@dataclass(frozen=True)
class RunOptions:
    """Options shared by every job of a run (the rerun commands repeat ``harness`` too).

    ``harness`` holds the harness's own options (implementation, simulated time,
    debug log...; never a seed: each job has its own).  ``timeout`` is
    pytest-timeout's per-run watchdog; ``pytest_args`` are extra pytest options
    given after ``--``; ``rootdir`` is where pytest runs.
    """

    harness: HarnessOptions = field(default_factory=HarnessOptions)
    timeout: float | None = None
    keep_passing_logs: bool = False
    pytest_args: tuple[str, ...] = ()
    rootdir: Path = field(default_factory=Path.cwd)

    def harness_args(self) -> list[str]:
        """pytest options for the raftlab harness, then the extra ones."""
        return one_token(self.harness.pytest_args()) + list(self.pytest_args)

    def to_json(self) -> dict[str, Any]:
        """Plain data (a dask task's argument)."""
        return {"harness": asdict(self.harness), "timeout": self.timeout,
                "keep_passing_logs": self.keep_passing_logs,
                "pytest_args": list(self.pytest_args), "rootdir": str(self.rootdir)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunOptions:
        return cls(harness=HarnessOptions(**data["harness"]), timeout=data["timeout"],
                   keep_passing_logs=bool(data["keep_passing_logs"]),
                   pytest_args=tuple(data["pytest_args"]), rootdir=Path(data["rootdir"]))


@dataclass(frozen=True)
class RunResult:
    """What a backend reports for one finished job."""

    job: int
    test: str
    seed: int
    # passed | failed | error | skipped | inconclusive (labtests.overload) | refused
    # (labtests.verdicts.REFUSED: the source changed on disk after the worker loaded it)
    outcome: str
    duration: float
    worker: str
    loadavg: tuple[float, ...]
    message: str | None = None
    log: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """A failure the Raft is blamed for (an inconclusive run is not one)."""
        return self.outcome in ("failed", "error")

    @property
    def refused(self) -> bool:
        """Not run as asked (the implementation changed on disk): no verdict either way."""
        return self.outcome == "refused"

    @property
    def inconclusive(self) -> bool:
        """Failed while the machine made timers late beyond the lab's tolerance."""
        return self.outcome == "inconclusive"


class BackendError(RuntimeError):
    """The backend could not run the jobs (not: a test failed)."""


class BackendUnavailable(BackendError):
    """The chosen backend cannot be used here (its optional dependency is missing)."""


class Backend(Protocol):
    def run(self, jobs: Sequence[Job], on_result: Callable[[RunResult], None]) -> None:
        """Run every job, calling ``on_result`` per finished run; return when all are done
        or the run was cancelled.  Raises BackendError if runs could not be done."""

    def cancel(self) -> None:
        """Stop soon (thread-safe; a second call may stop harder); finished results are
        still delivered."""


def result_from_event(event: dict[str, Any]) -> RunResult:
    """A RunResult from one line of the plugin's events file (plain JSON data)."""
    return RunResult(
        job=int(event["job"]), test=event["test"], seed=int(event["seed"]),
        outcome=event["outcome"], duration=float(event["duration"]),
        worker=str(event["worker"]), loadavg=tuple(event.get("loadavg") or ()),
        message=event.get("message"), log=event.get("log"),
        properties=dict(event.get("properties") or {}),
    )
