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
  (machine overloaded: ...)*, never a failure.

A Ctrl-C stops the run as in real time: its interrupt is raised in the test's
main thread, whichever simulated thread Python ran the handler in
(:func:`_ctrl_c_to_the_main_thread`).

The per-test watchdog (pytest-timeout's alarm, wall clock) cannot judge a
simulated test by itself either: each alarm is judged by the same rules (CPU
budget, time blocked outside the simulation, backstop) and, while the run is
within them, re-armed instead of failing it.  The alarm still matters: it is
what stops a run that never reaches the scheduler (a loop that polls nothing
the simulation sees, a real blocking call).

A run whose line preemption cannot be installed fully because the
implementation's source changed on disk after this process loaded it
(:class:`~labtests.sim.ticks.StaleSource`) errors in setup with that message
(verdict property :data:`~labtests.verdicts.REFUSED`, with the seed and reason
the lab's lines print): neither a pass nor a failure of the Raft, since a fresh
process with the same seed would run it otherwise.

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

from labtests import last_bound
from labtests.overload import DETAIL_KEY, INCONCLUSIVE, VERDICT_KEY
from labtests.plugin import _implementation, harness_options, seed_for_test
from labtests.verdicts import REASON_KEY, REFUSED, first_line

# The engine (labtests.sim: greenlet, a C extension with libstdc++) and the race
# detector are imported only when --sim is on: a real-time run's process is
# 1.5 MB smaller without them (docs/performance.md, Session 5: memory).

RACE_PREEMPT = 0.02  # --sim --race: line preemption probability unless --sim-preempt is given
CPU_LIMIT_FACTOR = 0.8  # default --sim-cpu-limit: this x --raft-timeout, in CPU seconds
WALL_BACKSTOP_FACTOR = 10.0  # default --sim-wall-limit: this x --raft-timeout, in real seconds

_SCHED = pytest.StashKey[Any]()
_REFUSED = pytest.StashKey[BaseException]()


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
        default=None, metavar="S",
        help="virtual seconds before a test fails as hung (default "
        "labtests.sim.DEFAULT_TIME_LIMIT: 600, go test's limit)",
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


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """With --sim, import the engine before the first test, as the plugin's own import
    did when it was eager (a bad option is still reported by the raftlab plugin)."""
    try:
        enabled = sim_enabled(config)
    except Exception:  # noqa: BLE001 - an option error is the raftlab plugin's to report
        return
    if enabled:
        from labtests.sim import load_engine

        load_engine()


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
    from labtests.race.scope import Scope  # --sim only (see the imports)

    return preempt, Scope(module, impl.is_bundled).predicate()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Any) -> Generator[None, Any, Any]:
    if not (sim_enabled(item.config) and _graded(item)):
        return (yield)
    from labtests.sim import DEFAULT_TIME_LIMIT, activate, sim_seed  # --sim only

    config = item.config
    seed = seed_for_test(item)
    preempt, scope = _preemption(config)
    time_limit = config.getoption("raft_sim_time_limit")
    cm = activate(
        sim_seed(seed),
        cpu_scale=config.getoption("raft_sim_cpu"),
        preempt=preempt,
        preempt_scope=scope,
        time_limit=DEFAULT_TIME_LIMIT if time_limit is None else time_limit,
        cpu_limit=cpu_limit(config),
        wall_limit=wall_limit(config),
    )
    from labtests.sim.ticks import StaleSource

    try:
        sched = cm.__enter__()
    except StaleSource as exc:  # pytest_runtest_setup makes it the test's error
        item.stash[_REFUSED] = exc
        item.user_properties.extend([("seed", seed), (REASON_KEY, first_line(str(exc))),
                                     (VERDICT_KEY, REFUSED)])
        try:
            return (yield)
        finally:
            del item.stash[_REFUSED]
    item.stash[_SCHED] = sched
    backstop = wall_limit(config)
    if backstop:  # the last bound (C, real time) must not end a run its backstop judges
        last_bound.require(backstop + last_bound.MIN_MARGIN_S)
    routed: list[KeyboardInterrupt] = []
    previous = _ctrl_c_to_the_main_thread(sched, routed)
    try:
        return (yield)
    except KeyboardInterrupt:
        routed.clear()  # it reached the test: pytest stops
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        try:
            cm.__exit__(None, None, None)
        except AssertionError:
            pass  # already reported by the call phase (see pytest_runtest_call)
        finally:
            # pytest keeps its items to the end of the session: a stress worker's
            # thousands of runs must not keep a scheduler (and its threads) each.
            del item.stash[_SCHED]
        if routed:  # a failure was raised in its place: the stop still stops the session
            raise routed[0]


def _ctrl_c_to_the_main_thread(sched: Any, routed: list[KeyboardInterrupt]) -> Any:
    """Route a Ctrl-C during a simulated test to the test's main thread; return the
    handler to put back (None: nothing installed).

    Why: the simulated threads share the test's OS thread, so Python runs the SIGINT
    handler in whichever of them is running, and its ``KeyboardInterrupt`` ended a
    Raft's thread: the harness reported that as the thread's uncaught exception, the
    test failed for a Ctrl-C (``uncaught exception in thread 'raft-S1-rpc':
    KeyboardInterrupt()``) and the run went on to the next test.  Here the handler's
    interrupt is handed to the main thread (:meth:`Scheduler.post_interrupt`), which
    raises it as soon as it runs (it is picked first at the next switch), as a
    real-time test's main thread would; the Raft's thread goes on.  So it is when the
    main thread was inside the simulation's own code, where raising could leave the
    run queue half-changed.  Should a failure take its place there, the interrupt is
    raised once the test is over (``routed``).  The handler it wraps decides whether
    there is an interrupt at all (``raftlab test``'s child takes two SIGINTs as one).
    """
    original = signal.getsignal(signal.SIGINT)
    if not callable(original):
        return None  # ignored, or not set from Python: nothing to route

    from labtests.sim.scheduler import in_engine  # --sim only (see the imports)

    def handler(signum: int, frame: Any) -> Any:
        if sched.dying or (sched.current is sched.main and not in_engine(frame)):
            return original(signum, frame)
        try:
            original(signum, frame)
        except KeyboardInterrupt as exc:
            routed.append(exc)
            sched.post_interrupt(exc)
        return None

    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread (pytest run from a thread): Python runs
        return None     # the handler in the real main thread, never in a simulated one
    return original


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A simulation that refused to start (the source changed on disk) is the test's
    error, in setup: the message says which functions and what to do."""
    refused = item.stash.get(_REFUSED, None)
    if refused is not None:
        pytest.fail(str(refused), pytrace=False)


@pytest.hookimpl(wrapper=True, optionalhook=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> Generator[None, Any, Any]:
    """In simulation, judge pytest-timeout's alarm like the simulation's own limits."""
    result = yield
    if (getattr(settings, "method", None) == "signal" and sim_enabled(item.config)
            and _graded(item) and getattr(settings, "timeout", None)):
        _judge_alarms(item, float(settings.timeout))
    return result


def _judge_alarms(item: pytest.Item, period: float) -> None:
    """Wrap pytest-timeout's SIGALRM handler for a simulated test.

    At each alarm the simulation judges the run (:meth:`Scheduler.overrun`):
    within its CPU budget and before the backstop it goes on and the alarm is
    re-armed (a slow machine is not a verdict); otherwise the verdict becomes
    the run's failure.  The handler runs in whichever simulated thread was
    running (they all share the test's OS thread): in the test's main thread
    the failure is raised at once; in a Raft's thread that thread is ended
    and the main thread raises the failure next (raised there, pytest's own
    exception would only have ended that thread, and the test could pass).  In the
    simulation's own code (a switch, a primitive) nothing is raised: the main
    thread raises the failure at the next switch (:func:`~labtests.sim.scheduler.in_engine`).
    """
    from greenlet import GreenletExit  # --sim only (see the imports)

    from labtests.sim import SimTimeLimit
    from labtests.sim.scheduler import in_engine

    original = signal.getsignal(signal.SIGALRM)
    if not callable(original):
        return

    def handler(signum: int, frame: Any) -> Any:
        sched = item.stash.get(_SCHED, None)
        if sched is None or sched.dying:
            return original(signum, frame)
        if sched.failure is None:
            verdict = sched.overrun()
            if verdict is None:
                signal.setitimer(signal.ITIMER_REAL, period)
                return None
        else:  # failed already, and its cleanup outlived the alarm too
            verdict = SimTimeLimit(sched.report(
                f"the test did not end within {period:g} s after it failed (the per-test "
                "watchdog)", stacks=False))
        sched.post_failure(verdict)
        if in_engine(frame):  # mid-switch: the main thread raises it at the next switch
            return None
        if sched.current is sched.main:
            sched.failure_raised()
            raise sched.failure if sched.failure is not None else verdict
        raise GreenletExit()

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
    if sched is None or call.excinfo is None or call.when != "call":
        return
    from labtests.sim import SimOverloaded  # imported already: a simulation ran

    if not isinstance(sched.failure, SimOverloaded):
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
