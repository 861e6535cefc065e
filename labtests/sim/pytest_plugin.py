"""pytest plugin: ``--sim`` runs every graded test in simulated time.

It is registered through the ``pytest11`` entry point and can also be loaded
with ``-p labtests.sim.pytest_plugin``; it builds on the raftlab plugin
(``labtests.plugin``), which registers and reads ``--sim`` (env
``RAFTLAB_SIM=1``) with the other harness options in :mod:`labtests.options`.
With ``--sim``, each graded test (those using ``make_config``) -- fixture setup,
body and cleanup -- runs inside :func:`labtests.sim.activate`, seeded from the
test's seed, so ``--seed N`` replays a run exactly.  Options of its own:

* ``--sim-cpu SCALE``: charge SCALE x the CPU time each thread uses to the
  virtual clock (a slow implementation shows; runs stop being reproducible);
* ``--sim-preempt P``: also switch threads with probability P when one starts
  a thread and at each line executed in the implementation's own files
  (:mod:`labtests.sim.preempt`; more interleavings, still one run per seed);
  with ``--race`` it defaults to :data:`RACE_PREEMPT`;
* ``--sim-time-limit S``: fail a test whose virtual time passes S seconds
  (default 600, go test's limit) with every thread's stack.

A deadlock fails the test with :class:`~labtests.sim.SimDeadlock`, whose
message is the report (each thread's stack, the lock it waits for and who
holds it); the raftlab plugin's failure hint, which carries ``--sim``, is the
command that replays it.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from labtests.plugin import _implementation, harness_options, seed_for_test
from labtests.race.scope import Scope
from labtests.sim import DEFAULT_TIME_LIMIT, activate, sim_seed

RACE_PREEMPT = 0.02  # --sim --race: line preemption probability unless --sim-preempt is given

_SCHED = pytest.StashKey[Any]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("raftlab-sim", "raftlab simulated time (with --sim)")
    group.addoption(
        "--sim-cpu", dest="raft_sim_cpu", type=float, default=0.0, metavar="SCALE",
        help="charge SCALE x measured CPU time to the virtual clock (not reproducible)",
    )
    group.addoption(
        "--sim-preempt", dest="raft_sim_preempt", type=float, default=None, metavar="P",
        help="extra random thread switches with probability P at each thread start and "
        f"each line of the implementation's files (default 0; {RACE_PREEMPT} with --race)",
    )
    group.addoption(
        "--sim-time-limit", dest="raft_sim_time_limit", type=float,
        default=DEFAULT_TIME_LIMIT, metavar="S",
        help=f"virtual seconds before a test fails as hung (default {DEFAULT_TIME_LIMIT:.0f})",
    )


def sim_enabled(config: pytest.Config) -> bool:
    return harness_options(config).sim


def pytest_report_header(config: pytest.Config) -> list[str]:
    if not sim_enabled(config):
        return []
    extra = ""
    if config.getoption("raft_sim_cpu"):
        extra = f", CPU charged x{config.getoption('raft_sim_cpu')} (not reproducible)"
    return [f"raftlab: simulated time (virtual clock, deterministic scheduler){extra}"]


def _graded(item: pytest.Item) -> bool:
    return "make_config" in getattr(item, "fixturenames", ())


def _wall_limit(config: pytest.Config) -> float | None:
    limit = harness_options(config).timeout_s
    return 0.8 * limit if limit and limit > 0 else None


def _preemption(config: pytest.Config) -> tuple[float, Any]:
    """(probability, predicate on file names) of line preemption for this session."""
    preempt = config.getoption("raft_sim_preempt")
    if preempt is None:
        preempt = RACE_PREEMPT if harness_options(config).race else 0.0
    if not preempt:
        return 0.0, None
    impl = _implementation(config)
    module = getattr(impl, "module", None)
    if module is None:
        return preempt, None
    return preempt, Scope(module, impl.is_bundled).predicate()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Any) -> Generator[None, Any, Any]:
    if not (sim_enabled(item.config) and _graded(item)):
        return (yield)
    config = item.config
    seed = seed_for_test(item)
    preempt, scope = _preemption(config)
    cm = activate(
        sim_seed(seed),
        cpu_scale=config.getoption("raft_sim_cpu"),
        preempt=preempt,
        preempt_scope=scope,
        time_limit=config.getoption("raft_sim_time_limit"),
        wall_limit=_wall_limit(config),
    )
    sched = cm.__enter__()
    item.stash[_SCHED] = sched
    try:
        return (yield)
    finally:
        try:
            cm.__exit__(None, None, None)
        except AssertionError:
            pass  # already reported by the call phase (see pytest_runtest_call)


@pytest.hookimpl(optionalhook=True)
def pytest_raftlab_thread_report(item: pytest.Item, headline: str) -> str | None:
    """The harness asks for every thread's stack (a cleanup that did not end): the
    simulated threads all share one real thread, so only the simulation can say."""
    sched = item.stash.get(_SCHED, None)
    return sched.report(headline) if sched is not None else None


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    """Fail with the simulation's own report when it stopped the test."""
    __tracebackhide__ = True  # a failure's details start at the test, not in the plugin
    sched = item.stash.get(_SCHED, None)
    if sched is None:
        return (yield)
    try:
        result = yield
    except BaseException as exc:
        if sched.failure is not None and exc is not sched.failure:
            raise sched.failure from exc
        raise
    if sched.failure is not None:
        raise sched.failure
    return result
