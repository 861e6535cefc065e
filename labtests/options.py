"""The one place that reads the harness's options and their environment variables.

Every component that needs to know which Raft is under test, the seed, the
watchdog, whether time is simulated, whether debug logging is on or whether each
peer runs in its own process asks this module for a :class:`HarnessOptions`.
Keeping the reading in one module is what lets the pytest plugins, the tools and
the rerun commands agree: an option added here is parsed once, reproduced once
(:meth:`HarnessOptions.pytest_args`) and cannot drift between readers.

Precedence: a pytest command-line option, then its environment variable, then
(for the implementation only) the project config, then the default.  Nothing
passes options by writing to ``os.environ``.

The project config is the ``[tool.raftlab]`` table of the nearest
``pyproject.toml`` holding one, in the current directory or above it (so a
student's workspace made by ``raftlab init`` tests the student's code from
anywhere inside it)::

    [tool.raftlab]
    impl = "raft"     # a path, relative to this file: the folder ./raft

Its ``impl`` is always a path (a package folder or a ``.py`` file), never a
module name, and is made absolute when read.  A mistake in the table (an
unknown key, a missing folder, broken TOML) stops the run with a message
naming the file and the key.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ENV_IMPL = "RAFTLAB_IMPL"
ENV_SEED = "RAFTLAB_SEED"
ENV_TIMEOUT = "RAFTLAB_TIMEOUT"
ENV_SIM = "RAFTLAB_SIM"
ENV_DEBUG = "RAFTLAB_DEBUG"
ENV_ISOLATE = "RAFTLAB_ISOLATE"
ENV_RACE = "RAFTLAB_RACE"
# --sim --race: the simulation's CPU and wall limits are this many times larger, because
# the detector and line preemption make the same work cost that much more CPU (the
# full suite's measured cost, x6.5 in session 5, with a margin: docs/race.md "Cost";
# a livelock is still caught, later).
RACE_SIM_COST = 10.0
RACE_WITH_ISOLATE = (
    "--race cannot be used with --isolate: the race detector hooks the implementation's "
    "objects and the locks in the test's own process, and --isolate runs each Raft peer in "
    "a process of its own, whose accesses it would not see (every test would pass unchecked). "
    "Run --race without --isolate, in real time or with --sim.")
ENV_BUNDLE_DIR = "RAFTLAB_BUNDLE_DIR"
ENV_MEMORY_MB = "RAFTLAB_MEMORY_MB"
DEFAULT_TIMEOUT_S = 180.0
# The memory bound (labtests.memory_bound): the bundled Raft's test process peaked at
# 46 MB for 2C, 95 MB for the whole lab under --race, 309 MB under --sim --race
# --raft-debug (the largest measured); 2 GiB leaves room for any correct design and
# still stops a runaway Raft long before a laptop swaps.
DEFAULT_MEMORY_MB = 2048
PROJECT_FILE = "pyproject.toml"
PROJECT_KEYS = ("impl",)


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
    race: bool = False  # the data-race detector (labtests.race)
    race_warn: bool = False  # with race: a race is a warning, not the test's failure
    bundle_dir: str | None = None  # failure bundles go here (absolute); None = .raftlab/failures
    memory_mb: int = DEFAULT_MEMORY_MB  # the bound on a test process's resident MiB; 0: none
    # Where ``impl`` came from (for messages): "--raft-impl", "RAFTLAB_IMPL" or
    # "<path>/pyproject.toml [tool.raftlab] impl"; not an option of its own.
    impl_origin: str | None = field(default=None, compare=False)

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
        if self.race:
            args.append("--race")
        if self.race_warn:
            args.append("--race-warn")
        if self.bundle_dir is not None:
            args += ["--raftlab-bundle-dir", self.bundle_dir]
        if self.memory_mb != DEFAULT_MEMORY_MB:
            args += ["--raft-memory-mb", str(self.memory_mb)]
        return args

    @property
    def sim_limit_factor(self) -> float:
        """How many times the simulation's default CPU/wall limits a test gets (--race costs)."""
        return RACE_SIM_COST if self.race else 1.0


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


def _memory_mb(value: int | None, origin: str) -> int:
    if value is None:
        return DEFAULT_MEMORY_MB
    if value < 0:
        raise OptionError(f"{origin}={value}: the memory bound is a number of MiB, or 0 for "
                          "none")
    return value


def memory_mb_from_env(environ: Mapping[str, str] | None = None) -> int:
    """The memory bound the environment gives (``raftlab explore``'s runs have no pytest
    options; :data:`ENV_MEMORY_MB` reaches them, on Dask's workers too)."""
    env = os.environ if environ is None else environ
    return _memory_mb(_parse(env, ENV_MEMORY_MB, int), ENV_MEMORY_MB)


def _env_options(env: Mapping[str, str]) -> HarnessOptions:
    timeout = _parse(env, ENV_TIMEOUT, float)
    impl = env.get(ENV_IMPL) or None
    return HarnessOptions(
        impl=impl,
        seed=_parse(env, ENV_SEED, int),
        timeout_s=DEFAULT_TIMEOUT_S if timeout is None else timeout,
        sim=_flag(env.get(ENV_SIM)),
        debug=_flag(env.get(ENV_DEBUG)),
        isolate=_flag(env.get(ENV_ISOLATE)),
        race=_flag(env.get(ENV_RACE)),
        bundle_dir=_abs_dir(env.get(ENV_BUNDLE_DIR)),
        memory_mb=memory_mb_from_env(env),
        impl_origin=ENV_IMPL if impl else None,
    )


def _abs_dir(value: str | None) -> str | None:
    """A folder option made absolute (a test process may change directory); None if unset."""
    value = (value or "").strip()
    return os.path.abspath(value) if value else None


def _with_project_impl(opts: HarnessOptions, cwd: str | os.PathLike[str] | None) -> HarnessOptions:
    """``opts`` with the project config's implementation, if nothing else named one."""
    if opts.impl is not None:
        return opts
    project = find_project_config(cwd)
    if project is None or project.impl is None:
        return opts
    return replace(opts, impl=project.impl, impl_origin=project.origin("impl"))


def from_env(environ: Mapping[str, str] | None = None, *,
             cwd: str | os.PathLike[str] | None = None) -> HarnessOptions:
    """The options given by environment variables (``os.environ`` by default), then by the
    project config found from ``cwd`` (default: the current directory)."""
    env = os.environ if environ is None else environ
    return _with_project_impl(_env_options(env), cwd)


def from_pytest_config(config: Any, environ: Mapping[str, str] | None = None, *,
                       cwd: str | os.PathLike[str] | None = None) -> HarnessOptions:
    """The options of a pytest run: command-line options, environment variables, project config.

    Options this module did not register (a plugin disabled with ``-p no:...``)
    read as unset, so the environment still applies.
    """
    env = _env_options(os.environ if environ is None else environ)

    def opt(dest: str) -> Any:
        return config.getoption(dest, None)

    impl = opt("raft_impl")
    seed = opt("raft_seed")
    timeout = opt("raft_timeout")
    memory_mb = opt("raft_memory_mb")
    options = HarnessOptions(
        impl=impl or env.impl,
        seed=env.seed if seed is None else int(seed),
        timeout_s=env.timeout_s if timeout is None else float(timeout),
        sim=bool(opt("raft_sim")) or env.sim,
        debug=bool(opt("raft_debug")) or env.debug,
        isolate=bool(opt("raft_isolate")) or env.isolate,
        race=bool(opt("raft_race")) or bool(opt("raft_race_warn")) or env.race,
        race_warn=bool(opt("raft_race_warn")),
        bundle_dir=_abs_dir(opt("raftlab_bundle_dir")) or env.bundle_dir,
        memory_mb=(env.memory_mb if memory_mb is None
                   else _memory_mb(int(memory_mb), "--raft-memory-mb")),
        impl_origin="--raft-impl" if impl else env.impl_origin,
    )
    if options.race and options.isolate:
        raise OptionError(RACE_WITH_ISOLATE)
    return _with_project_impl(options, cwd)


def looks_like_path(spec: str) -> bool:
    """Is an implementation spec a path (``x.py``, ``./raft``, ``raft/``, ``a/b``)?

    Otherwise it is a module name.  Decided by spelling alone, never by what
    exists in the current directory: ``raft`` names the bundled Raft even where
    a student's folder ``raft/`` exists, and ``./raft`` names that folder.
    """
    seps = {os.sep, "/"} | ({os.altsep} if os.altsep else set())
    return spec.endswith(".py") or spec.startswith(".") or any(c in spec for c in seps)


# --- the project config ---------------------------------------------------------


@dataclass(frozen=True)
class ProjectConfig:
    """The ``[tool.raftlab]`` table of one ``pyproject.toml``, checked."""

    path: Path                 # the pyproject.toml (absolute)
    impl: str | None = None    # absolute path of the implementation

    def origin(self, key: str) -> str:
        return f"{self.path} [tool.raftlab] {key}"


def find_project_config(cwd: str | os.PathLike[str] | None = None) -> ProjectConfig | None:
    """The nearest ``pyproject.toml`` with a ``[tool.raftlab]`` table, from ``cwd`` upward.

    A ``pyproject.toml`` without the table is passed over (the search goes on
    above it), as is one that is not valid TOML and does not mention
    ``tool.raftlab`` (somebody else's broken file must not stop a run).
    """
    here = Path(os.getcwd() if cwd is None else cwd).resolve()
    for folder in (here, *here.parents):
        candidate = folder / PROJECT_FILE
        if candidate.is_file():
            table = _raftlab_table(candidate)
            if table is not None:
                return _check_project(candidate, table)
    return None


def _raftlab_table(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise OptionError(f"{path}: cannot be read ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        if "raftlab" in text:
            raise OptionError(f"{path}: not valid TOML ({exc}); raftlab reads its "
                              f"[tool.raftlab] table from this file") from None
        return None
    tool = data.get("tool")
    if not isinstance(tool, dict) or "raftlab" not in tool:
        return None
    table = tool["raftlab"]
    if not isinstance(table, dict):
        raise OptionError(f"{path}: tool.raftlab must be a table ([tool.raftlab]), "
                          f"not {type(table).__name__}")
    return table


def _check_project(path: Path, table: dict[str, Any]) -> ProjectConfig:
    unknown = sorted(set(table) - set(PROJECT_KEYS))
    if unknown:
        raise OptionError(f"{path}: [tool.raftlab] has unknown key(s) {', '.join(unknown)} "
                          f"(known: {', '.join(PROJECT_KEYS)})")
    impl = table.get("impl")
    if impl is None:
        return ProjectConfig(path)
    if not isinstance(impl, str) or not impl.strip():
        raise OptionError(f"{path}: [tool.raftlab] impl must be a path (a string such as "
                          f"\"raft\"), not {impl!r}")
    target = (path.parent / impl).resolve()
    if not target.exists():
        raise OptionError(f"{path}: [tool.raftlab] impl = {impl!r}: no such file or folder "
                          f"{target} (the path is relative to this pyproject.toml)")
    if target.is_dir() and not (target / "__init__.py").is_file():
        raise OptionError(f"{path}: [tool.raftlab] impl = {impl!r}: the folder {target} is "
                          f"not a package (it has no __init__.py)")
    if target.is_file() and target.suffix != ".py":
        raise OptionError(f"{path}: [tool.raftlab] impl = {impl!r}: {target} is not a "
                          f".py file or a package folder")
    return ProjectConfig(path, str(target))


def add_pytest_options(parser: Any) -> None:
    """Register the harness's pytest options (the simulation's tuning options live with it)."""
    group = parser.getgroup("raftlab", "raftlab Raft lab harness")
    group.addoption(
        "--raft-impl", dest="raft_impl", default=None, metavar="MODULE|PATH",
        help=f"Raft implementation under test: a module name or a path to a .py file or "
        f"package directory (default: env {ENV_IMPL}, else [tool.raftlab] impl in the "
        f"nearest pyproject.toml, else the bundled Raft)",
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
    group.addoption(
        "--race", dest="raft_race", action="store_true", default=False,
        help=f"detect data races on the implementation's fields; a race fails the test "
        f"(also env {ENV_RACE}=1; see docs/race.md)",
    )
    group.addoption(
        "--raftlab-bundle-dir", dest="raftlab_bundle_dir", default=None, metavar="DIR",
        help=f"write each failing test's bundle (timeline, events, rerun command) under DIR "
        f"(default: env {ENV_BUNDLE_DIR}, else .raftlab/failures in the current directory)",
    )
    group.addoption(
        "--raft-memory-mb", dest="raft_memory_mb", default=None, type=int, metavar="MIB",
        help=f"end a test process whose resident size passes MIB, with every thread's stack "
        f"(default: env {ENV_MEMORY_MB}, else {DEFAULT_MEMORY_MB}; 0: no bound)",
    )
    group.addoption(
        "--race-warn", dest="raft_race_warn", action="store_true", default=False,
        help="--race, but a race is reported as a warning instead of failing the test",
    )
