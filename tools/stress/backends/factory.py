"""Choosing a backend by name (``--backend local|dask``), shared by stress and grade.

Kept apart from :mod:`.base` so that the interface module imports no backend:
this module imports them (the Dask one lazily: it needs the optional
``cluster`` extra), they import the interface, and nothing imports back.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tools.stress.backends.base import Backend, BackendUnavailable, RunOptions
from tools.stress.backends.xdist import XdistBackend

BACKENDS = ("local", "dask")
CLUSTER_INSTALL_HINT = (
    "the dask backend needs the optional cluster extra: pip install '.[cluster]' in a raftlab "
    "checkout (or pip install 'dask[distributed]'), on this machine and on every worker")


def check_backend(name: str) -> None:
    """Raise BackendUnavailable (with how to install it) if ``name`` cannot be used."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r} (choose from {', '.join(BACKENDS)})")
    if name == "dask":
        try:
            import distributed  # noqa: F401
        except ImportError as exc:
            raise BackendUnavailable(f"{CLUSTER_INSTALL_HINT} ({exc})") from None


def make_backend(name: str, options: RunOptions, *, workers: int = 1,
                 scheduler: str | None = None, workers_per_host: int | None = None,
                 output_log: Path | None = None,
                 command_prefix: Sequence[str] = ()) -> Backend:
    """A backend by name: ``local`` (``workers`` forked processes, or pytest-xdist) or ``dask``.

    ``dask`` needs ``scheduler`` (``tcp://HOST:8786`` or a scheduler JSON file);
    ``workers_per_host`` caps the concurrent runs per host there (default: the
    workers' own ``RUNS`` resources, else their thread counts).  ``command_prefix``
    (dask only) is put in front of each run's pytest command on the worker, e.g. an
    exec wrapper that sets resource limits; an argument equal to ``WORKER_PYTHON``
    becomes the worker's interpreter (``wrapper_command(limits, python=WORKER_PYTHON)``).
    Raises BackendUnavailable when dask is not installed and ValueError on bad arguments.
    """
    check_backend(name)
    if name == "local":
        return XdistBackend(workers, options, output_log=output_log)
    if not scheduler:
        raise ValueError("--backend dask needs --scheduler tcp://HOST:8786 (or a scheduler file)")
    from tools.stress.backends.dask_client import DaskBackend

    return DaskBackend(scheduler, options, workers_per_host=workers_per_host,
                       command_prefix=command_prefix)
