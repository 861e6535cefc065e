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
  (default 600, go test's limit) with every thread's stack;
* ``--sim-cpu-limit S``: fail a test whose simulation used S seconds of CPU
  (default 0.8 x ``--raft-timeout``): a livelock is caught after the same work
  whatever the machine's load;
* ``--sim-wall-limit S``: the wall-clock backstop (default
  :data:`WALL_BACKSTOP_FACTOR` x ``--raft-timeout``).  A test still running
  then got too little CPU from the machine: its verdict is *inconclusive
  (machine overloaded: ...)*, never a failure.  The per-test watchdog
  (pytest-timeout, wall clock) of a simulated test moves behind this backstop.

A deadlock fails the test with :class:`~labtests.sim.SimDeadlock`, whose
message is the report (each thread's stack, the lock it waits for and who
holds it); the raftlab plugin's failure hint, which carries ``--sim``, is the
command that replays it.
"""

from __future__ import annotations

import signal
from collections.abc import Generator
from typing import Any

import pytest
from greenlet import GreenletExit

from labtests.overload import DETAIL_KEY, INCONCLUSIVE, VERDICT_KEY
from labtests.plugin import _implementation, harness_options, seed_for_test
from labtests.race.scope import Scope
from labtests.sim import DEFAULT_TIME_LIMIT, SimOverloaded, SimTimeLimit, activate, sim_seed

RACE_PREEMPT = 0.02  # --sim --race: line preemption probability unless --sim-preempt is given
CPU_LIMIT_FACTOR = 0.8  # default --sim-cpu-limit: this x --raft-timeout, in CPU seconds
WALL_BACKSTOP_FACTOR = 10.0  # default --sim-wall-limit: this x --raft-timeout, in real seconds
WATCHDOG_MARGIN_S = 60.0  # pytest-timeout fires this long after the backstop (cleanup's time)

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
    group.addoption(
        "--sim-cpu-limit", dest="raft_sim_cpu_limit", type=float, default=None, metavar="S",
        help=f"CPU seconds a simulated test may use before it fails as hung "
        f"(default {CPU_LIMIT_FACTOR:g} x --raft-timeout; the same whatever the load)",
    )
    group.addoption(
        "--sim-wall-limit", dest="raft_sim_wall_limit", type=float, default=None, metavar="S",
        help=f"wall-clock backstop: a simulated test still running after S real seconds is "
        f"inconclusive, machine overloaded (default {WALL_BACKSTOP_FACTOR:g} x --raft-timeout)",
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


def _limit(config: pytest.Config, option: str, factor: float) -> float | None:
    """An option's value, else ``factor`` x the watchdog; None when neither is set (> 0).

    The default also scales with what the options make the same work cost
    (``sim_limit_factor``: ``--race``'s detector and preemption).
    """
    given = config.getoption(option)
    if given is not None:
        return given if given > 0 else None
    options = harness_options(config)
    watchdog = options.timeout_s
    return factor * watchdog * options.sim_limit_factor if watchdog and watchdog > 0 else None


def cpu_limit(config: pytest.Config) -> float | None:
    """CPU seconds a simulated test may use (``--sim-cpu-limit``)."""
    return _limit(config, "raft_sim_cpu_limit", CPU_LIMIT_FACTOR)


def wall_limit(config: pytest.Config) -> float | None:
    """The wall-clock backstop of a simulated test (``--sim-wall-limit``)."""
    return _limit(config, "raft_sim_wall_limit", WALL_BACKSTOP_FACTOR)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Move the wall-clock watchdog of simulated graded tests behind the backstop.

    The raftlab plugin gives each graded test pytest-timeout's watchdog of
    ``--raft-timeout`` real seconds; in simulation that would fail a correct run
    on a loaded machine.  The simulation's CPU limit takes its place as the
    judge; the watchdog stays, later, for what the simulation cannot stop (a
    loop that polls nothing it sees).  A ``--timeout`` given explicitly or a
    test's own marker is left alone.
    """
    if not sim_enabled(config) or config.getoption("timeout", None) is not None:
        return
    watchdog = harness_options(config).timeout_s
    backstop = wall_limit(config)
    if not watchdog or watchdog <= 0 or backstop is None:
        return
    for item in items:
        marker = item.get_closest_marker("timeout")
        if _graded(item) and marker is not None and marker.args[:1] == (watchdog,):
            item.add_marker(pytest.mark.timeout(backstop + WATCHDOG_MARGIN_S, method="signal"),
                            append=False)


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
        cpu_limit=cpu_limit(config),
        wall_limit=wall_limit(config),
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


@pytest.hookimpl(wrapper=True, optionalhook=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> Generator[None, Any, Any]:
    """In simulation, have pytest-timeout's alarm fail the test, whichever thread it hits."""
    result = yield
    if (getattr(settings, "method", None) == "signal" and sim_enabled(item.config)
            and _graded(item)):
        _route_alarm_to_the_test(item)
    return result


def _route_alarm_to_the_test(item: pytest.Item) -> None:
    """Wrap pytest-timeout's SIGALRM handler for a simulated test.

    Every simulated thread runs in the test's OS thread, so the alarm's
    exception is raised in whichever simulated thread runs at that moment.
    Raised in a Raft's thread it would only end that thread (reported, if at
    all, as its uncaught exception) and the test could even pass.  Instead the
    timeout becomes the run's failure (the test's main thread raises it next,
    with the simulation's report) and the thread that ran is ended.
    """
    original = signal.getsignal(signal.SIGALRM)
    if not callable(original):
        return

    def handler(signum: int, frame: Any) -> Any:
        sched = item.stash.get(_SCHED, None)
        if sched is None or sched.dying or sched.current is sched.main:
            return original(signum, frame)
        thread = sched.current.name
        try:
            return original(signum, frame)
        except BaseException as exc:  # noqa: BLE001 - pytest's Failed: handed to the test
            why = str(getattr(exc, "msg", exc)).strip().splitlines()[0]
            sched.post_failure(SimTimeLimit(sched.report(
                f"{why} (the per-test watchdog, wall clock) while simulated thread "
                f"{thread!r} ran out of the simulation's reach: a loop that polls nothing "
                "the simulation sees, or a real blocking call")))
            raise GreenletExit() from None

    signal.signal(signal.SIGALRM, handler)


@pytest.hookimpl(optionalhook=True)
def pytest_raftlab_thread_report(item: pytest.Item, headline: str) -> str | None:
    """The harness asks for every thread's stack (a cleanup that did not end): the
    simulated threads all share one real thread, so only the simulation can say."""
    sched = item.stash.get(_SCHED, None)
    return sched.report(headline) if sched is not None else None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> None:
    """A run the wall-clock backstop ended is inconclusive (machine overloaded), not failed.

    Marked before the report is made (its user properties are copied from the
    item), with the same property every tool reads for an inconclusive verdict.
    """
    sched = item.stash.get(_SCHED, None)
    if (sched is None or call.excinfo is None or call.when != "call"
            or not isinstance(sched.failure, SimOverloaded)):
        return
    item.user_properties.append((VERDICT_KEY, INCONCLUSIVE))
    item.user_properties.append((DETAIL_KEY, sched.failure.detail))


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
