"""The one place that reads the harness's options and their environment variables.

Every component that needs to know which Raft is under test, the seed, the
watchdog, whether time is simulated, whether debug logging is on or whether each
peer runs in its own process asks this module for a :class:`HarnessOptions`.
Keeping the reading in one module is what lets the pytest plugins, the tools and
the rerun commands agree: an option added here is parsed once, reproduced once
(:meth:`HarnessOptions.pytest_args`) and cannot drift between readers.

Precedence: a pytest command-line option, then its environment variable, then
the default.  Nothing passes options by writing to ``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ENV_IMPL = "RAFTLAB_IMPL"
ENV_SEED = "RAFTLAB_SEED"
ENV_TIMEOUT = "RAFTLAB_TIMEOUT"
ENV_SIM = "RAFTLAB_SIM"
ENV_DEBUG = "RAFTLAB_DEBUG"
ENV_ISOLATE = "RAFTLAB_ISOLATE"
DEFAULT_TIMEOUT_S = 180.0


class OptionError(ValueError):
    """An option or environment variable has a value the harness cannot use."""


@dataclass(frozen=True)
class HarnessOptions:
    """Every harness option, already resolved against the environment."""

    impl: str | None = None  # as given by the user (module name or path); None = bundled Raft
    seed: int | None = None  # fixed seed for every test, or None (derived per test)
    timeout_s: float = DEFAULT_TIMEOUT_S
    sim: bool = False
    debug: bool = False
    isolate: bool = False  # each Raft peer in its own process (real time only)

    def pytest_args(self) -> list[str]:
        """The pytest options that reproduce these options, omitting defaults."""
        args: list[str] = []
        if self.impl is not None:
            args += ["--raft-impl", self.impl]
        if self.seed is not None:
            args += ["--seed", str(self.seed)]
        if self.sim:
            args.append("--sim")
        if self.debug:
            args.append("--raft-debug")
        if self.timeout_s != DEFAULT_TIMEOUT_S:
            args += ["--raft-timeout", f"{self.timeout_s:g}"]
        if self.isolate:
            args.append("--isolate")
        return args


def _flag(value: str | None) -> bool:
    """An environment flag is on unless unset, empty or ``0`` (the README's rule)."""
    return (value or "").strip() not in ("", "0")


def _parse(environ: Mapping[str, str], name: str, kind: type) -> Any:
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return kind(raw)
    except ValueError:
        raise OptionError(f"{name}={raw!r} is not a valid {kind.__name__}") from None


def from_env(environ: Mapping[str, str] | None = None) -> HarnessOptions:
    """The options given by environment variables alone (``os.environ`` by default)."""
    env = os.environ if environ is None else environ
    timeout = _parse(env, ENV_TIMEOUT, float)
    return HarnessOptions(
        impl=env.get(ENV_IMPL) or None,
        seed=_parse(env, ENV_SEED, int),
        timeout_s=DEFAULT_TIMEOUT_S if timeout is None else timeout,
        sim=_flag(env.get(ENV_SIM)),
        debug=_flag(env.get(ENV_DEBUG)),
        isolate=_flag(env.get(ENV_ISOLATE)),
    )


def from_pytest_config(config: Any, environ: Mapping[str, str] | None = None) -> HarnessOptions:
    """The options of a pytest run: command-line options first, then environment variables.

    Options this module did not register (a plugin disabled with ``-p no:...``)
    read as unset, so the environment still applies.
    """
    env = from_env(environ)

    def opt(dest: str) -> Any:
        return config.getoption(dest, None)

    impl = opt("raft_impl")
    seed = opt("raft_seed")
    timeout = opt("raft_timeout")
    return HarnessOptions(
        impl=impl or env.impl,
        seed=env.seed if seed is None else int(seed),
        timeout_s=env.timeout_s if timeout is None else float(timeout),
        sim=bool(opt("raft_sim")) or env.sim,
        debug=bool(opt("raft_debug")) or env.debug,
        isolate=bool(opt("raft_isolate")) or env.isolate,
    )


def add_pytest_options(parser: Any) -> None:
    """Register the harness's pytest options (the simulation's tuning options live with it)."""
    group = parser.getgroup("raftlab", "raftlab Raft lab harness")
    group.addoption(
        "--raft-impl", dest="raft_impl", default=None, metavar="MODULE|PATH",
        help=f"Raft implementation under test: a module name or a path to a .py file or "
        f"package directory (default: env {ENV_IMPL}, else the bundled Raft)",
    )
    group.addoption(
        "--seed", dest="raft_seed", default=None, type=int, metavar="N",
        help=f"seed for every test's random choices and network faults (default: env "
        f"{ENV_SEED}, else derived per test from a random session seed)",
    )
    group.addoption(
        "--raft-debug", dest="raft_debug", action="store_true", default=False,
        help=f"enable raft.debuglog output, the harness logs under topic TEST "
        f"(also env {ENV_DEBUG}=1)",
    )
    group.addoption(
        "--raft-timeout", dest="raft_timeout", default=None, type=float, metavar="S",
        help=f"per-test watchdog in seconds (default: env {ENV_TIMEOUT}, else "
        f"{DEFAULT_TIMEOUT_S:.0f}); the lab's own limit of 120 s is checked separately",
    )
    group.addoption(
        "--sim", dest="raft_sim", action="store_true", default=False,
        help=f"run graded tests on a virtual clock with a deterministic scheduler "
        f"(also env {ENV_SIM}=1)",
    )
    group.addoption(
        "--isolate", dest="raft_isolate", action="store_true", default=False,
        help=f"run each Raft peer in its own process, real time only (also env {ENV_ISOLATE}=1)",
    )
