"""pytest plugin of the raftlab harness: options, seeds, watchdog, the lab's output.

Registered through the ``pytest11`` entry point, so it is active in every
pytest run once raftlab is installed.  Its options (``--raft-impl``, ``--seed``,
``--raft-debug``, ``--raft-timeout``, ``--sim``, ``--isolate`` and their
``RAFTLAB_*`` environment variables) are registered and read by
:mod:`labtests.options`; a hang fails through the per-test watchdog with a
stack dump of every thread, above the lab's own 120 s check.

Graded tests are those that use the ``make_config`` fixture.  Each prints the
lab's two lines (``Test (2A): ... ...`` and ``  ... Passed --  ...``) through
the terminal reporter, which works with output capture and with xdist, and
records the same figures as JUnit XML properties.  A failure's line carries
its reason (the first line of the message), then the seed and one rerun
command (:mod:`labtests.rerun`); the lines are built by :mod:`labtests.verdicts`.

No test can keep the run from producing a result: the watchdog covers a test's
setup, body and cleanup, the cleanup is bounded (:mod:`labtests.watchdog`), a
process in which no Python can run any more (a thread keeps the interpreter lock)
is ended from C by the last bound (:mod:`labtests.last_bound`), a
pytest-xdist worker that dies is reported as a failure of the test it was
running, naming its exit status or signal, and threads a Raft left running
that are not daemons never keep the process alive: once every result is
written they are reported and the process ends with pytest's exit status.

Another plugin may choose the seed of one test (``raftlab stress`` runs each
repetition with its own) by implementing the hook
:func:`pytest_raftlab_test_seed`; see :mod:`labtests.hookspecs`.
"""

from __future__ import annotations

import importlib.util
import os
import random
import sys
import threading
import warnings
from collections.abc import Callable, Generator
from typing import Any

import pytest

from labtests import heap, hookspecs, last_bound, memory_bound
from labtests.artifacts import ARTIFACT_KEY
from labtests.config import Config, cpu_warning, derive_seed
from labtests.context import TestContext
from labtests.impl_loader import DEFAULT_IMPL, Implementation, load
from labtests.isolation import IsolatedImplementation
from labtests.options import HarnessOptions, OptionError, add_pytest_options, from_pytest_config
from labtests.output import bound_report_sections, summarize_names
from labtests.overload import (
    EXIT_INCONCLUSIVE,
    INCONCLUSIVE,
    VERDICT_KEY,
    inconclusive_text,
    is_inconclusive,
)
from labtests.verdicts import (
    REASON_KEY,
    exit_description,
    failure_reason,
    inconclusive_sections,
    verdict_lines,
)
from labtests.watchdog import threads_keeping_process_alive
from raft import debuglog

PART_MARKERS = {
    "part2a": "Raft part 2A (leader election)",
    "part2b": "Raft part 2B (log replication)",
    "part2c": "Raft part 2C (persistence)",
    "part2d": "Raft part 2D (snapshots)",
    "selftest": "harness self-tests with deliberately broken implementations",
}
ISOLATION_MODULE = "labtests.isolation"

_CONTEXT = pytest.StashKey[TestContext]()
_IMPL = pytest.StashKey[Implementation | IsolatedImplementation]()
_OPTIONS = pytest.StashKey[HarnessOptions]()
_SESSION_SEED = pytest.StashKey[int]()
_SEED = pytest.StashKey[int]()
_SESSION = pytest.StashKey[pytest.Session]()


class RaftlabImplementationWarning(UserWarning):
    """Something about a non-bundled implementation the student should look at."""


def pytest_addoption(parser: pytest.Parser) -> None:
    add_pytest_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    for name, text in PART_MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    try:
        options = from_pytest_config(config)
    except OptionError as exc:
        raise pytest.UsageError(str(exc)) from None
    if options.isolate and importlib.util.find_spec(ISOLATION_MODULE) is None:
        raise pytest.UsageError(
            "--isolate (RAFTLAB_ISOLATE): running each Raft peer in its own process is "
            "not available yet in this version of raftlab"
        )
    if options.isolate and options.sim:
        raise pytest.UsageError("--isolate runs in real time only; it cannot be used with --sim")
    config.stash[_OPTIONS] = options
    if options.debug:
        debuglog.enable()
    worker_input = getattr(config, "workerinput", None)
    if worker_input is not None and "raftlab_session_seed" in worker_input:
        session_seed = int(worker_input["raftlab_session_seed"])
    else:
        session_seed = random.SystemRandom().randrange(2**62)
    config.stash[_SESSION_SEED] = session_seed
    config.pluginmanager.register(_LabLines(config), "raftlab-lab-lines")
    config.pluginmanager.register(_Verdicts(config), "raftlab-verdicts")
    config.pluginmanager.register(_LastBound(config, _watchdog_s, options.memory_mb),
                                  "raftlab-last-bound")
    if options.race and not options.isolate:
        from labtests.race.pytest_plugin import RacePlugin  # only with --race

        config.pluginmanager.register(RacePlugin(
            lambda: _implementation(config), simulated=options.sim, warn=options.race_warn),
            "raftlab-race")
    # Registered first, so it runs last of the cleanups (after isolation's, for one).
    baseline = {t.ident for t in threads_keeping_process_alive()}
    config.add_cleanup(lambda: _end_if_threads_left(config, baseline))


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_SESSION] = session


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Freeze what lives to the session's end (pytest, the items, the modules) now, before
    any test's objects exist (:func:`labtests.heap.freeze_once`).  Frozen any later, the
    first test's context and cluster would stay in the permanent generation for good."""
    heap.freeze_once()


def _end_if_threads_left(config: pytest.Config, baseline: set[int | None]) -> None:
    """Threads that are not daemons would make the interpreter wait for them forever
    at exit, after every result was written: report them and end the process now,
    with pytest's exit status."""
    if threading.current_thread() is not threading.main_thread():
        return
    left = [t for t in threads_keeping_process_alive() if t.ident not in baseline]
    if not left:
        return
    session = config.stash.get(_SESSION, None)
    status = int(session.exitstatus) if session is not None else 1
    names = summarize_names(sorted(t.name for t in left))
    sys.stdout.flush()
    print(f"raftlab: {len(left)} thread(s) that are not daemons still run after the last "
          f"test: {names}; a Python process waits for such threads forever at exit, so "
          f"it ends now with pytest's exit status {status} (a killed Raft must make its "
          "threads exit, or start them with daemon=True)", file=sys.stderr, flush=True)
    os._exit(status)


class _LastBound:
    """Arms the last bound (:mod:`labtests.last_bound`) around each graded test's whole
    protocol: setup, body, cleanup and report; and keeps the memory bound
    (:mod:`labtests.memory_bound`) watching from the first test on."""

    def __init__(self, config: pytest.Config,
                 watchdog_s: Callable[[pytest.Item], float | None], memory_mb: int) -> None:
        self._watchdog_s = watchdog_s
        self._memory_mb = memory_mb
        self._debugging = bool(config.getoption("usepdb", False)
                               or config.getoption("trace", False))
        # Standard error as it is now, before pytest's capture takes fd 2 for a test
        # (capture is suspended while pytest configures): where the stacks go when no
        # file is asked for.
        try:
            self._stderr_fd: int | None = os.dup(2)
        except OSError:
            self._stderr_fd = None

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, Any, Any]:
        if _is_graded(item):
            # Every graded test, not once: a process forked after the first (stress's
            # workers) has no watcher until it is started in it.
            memory_bound.watch(self._memory_mb, self._stderr_fd)
        watchdog = None if self._debugging else self._watchdog_s(item)
        if not watchdog or watchdog <= 0:
            return (yield)
        last_bound.arm(last_bound.seconds_for(watchdog), self._stderr_fd)
        try:
            return (yield)
        finally:
            last_bound.disarm()

    @pytest.hookimpl(trylast=True)
    def pytest_exception_interact(self) -> None:
        last_bound.rearm()  # after pytest's faulthandler plugin cancelled the dump

    @pytest.hookimpl(tryfirst=True)
    def pytest_enter_pdb(self) -> None:
        last_bound.disarm()

    def pytest_unconfigure(self) -> None:
        memory_bound.stop()
        last_bound.close()
        if self._stderr_fd is not None:
            os.close(self._stderr_fd)
            self._stderr_fd = None


def harness_options(config: pytest.Config) -> HarnessOptions:
    """The options of this pytest run (read once, when the run is configured)."""
    if _OPTIONS not in config.stash:  # configured without this plugin's pytest_configure
        config.stash[_OPTIONS] = from_pytest_config(config)
    return config.stash[_OPTIONS]


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist (controller): hand every worker the session seed."""
    node.workerinput["raftlab_session_seed"] = node.config.stash[_SESSION_SEED]


def _impl_label(options: HarnessOptions) -> str:
    return options.impl if options.impl is not None else DEFAULT_IMPL


def pytest_report_header(config: pytest.Config) -> list[str]:
    options = harness_options(config)
    seeds = (
        f"seed {options.seed} (fixed)" if options.seed is not None
        else f"session seed {config.stash[_SESSION_SEED]} (per-test seeds derive from it)"
    )
    lines = [f"raftlab: Raft implementation {_impl_label(options)!r}; {seeds}"]
    warning = cpu_warning()
    if warning:
        lines.append(warning)
    return lines


def _implementation(config: pytest.Config) -> Implementation | IsolatedImplementation:
    """Load the implementation once per process (on first use).

    With --isolate the tester never imports it: a template process does, and
    every peer runs in a process forked from it (labtests.isolation).
    """
    if _IMPL not in config.stash:
        options = harness_options(config)
        if options.isolate:
            isolated = IsolatedImplementation(options.impl, debug=options.debug,
                                              memory_mb=options.memory_mb)
            config.add_cleanup(isolated.close)
            config.stash[_IMPL] = isolated
        else:
            config.stash[_IMPL] = load(options.impl)
    return config.stash[_IMPL]


def _is_graded(item: pytest.Item) -> bool:
    return "make_config" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give every graded test the watchdog (unless --timeout or a marker says otherwise)."""
    if config.getoption("timeout", None) is not None:
        return
    limit = harness_options(config).timeout_s
    for item in items:
        if _is_graded(item) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(limit, method="signal"))


def _watchdog_s(item: pytest.Item) -> float | None:
    """A graded test's watchdog in seconds, as pytest-timeout will apply it (None: not a
    graded test; 0: no watchdog)."""
    if not _is_graded(item):
        return None
    marker = item.get_closest_marker("timeout")
    if marker is not None:
        value = marker.args[0] if marker.args else marker.kwargs.get("timeout")
    else:
        value = item.config.getoption("timeout", None)
    if value is None:
        value = harness_options(item.config).timeout_s
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def seed_for_test(item: pytest.Item) -> int:
    """The seed of one test: a plugin's choice, --seed, or derived from the session seed.

    Computed once per test and kept on the item, so the simulation plugin (which
    seeds its scheduler before the fixture runs) and the harness agree.
    """
    if _SEED in item.stash:
        return item.stash[_SEED]
    config = item.config
    chosen = config.hook.pytest_raftlab_test_seed(item=item)
    if chosen is not None:
        seed = int(chosen)
    else:
        fixed = harness_options(config).seed
        seed = fixed if fixed is not None else derive_seed(config.stash[_SESSION_SEED], item.name)
    item.stash[_SEED] = seed
    return seed


@pytest.fixture
def make_config(request: pytest.FixtureRequest) -> Callable[[int, bool, bool], Config]:
    """The lab's ``make_config(n, unreliable, snapshot)``; cleanup runs right after the test."""
    item = request.node
    seed = seed_for_test(item)
    ctx = TestContext(item.name, seed, _implementation(request.config),
                      options=harness_options(request.config))
    hook = request.config.hook
    ctx.thread_report = lambda headline: hook.pytest_raftlab_thread_report(
        item=item, headline=headline)
    item.stash[_CONTEXT] = ctx
    item.user_properties.append(("seed", seed))
    yield ctx.make_config
    ctx.finish(body_failed=True)  # a no-op unless the call phase never ran


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    __tracebackhide__ = True  # a failure's details start at the test, not in the plugin
    ctx = item.stash.get(_CONTEXT, None)
    if ctx is None:
        return (yield)
    try:
        result = yield
    except BaseException:
        ctx.finish(body_failed=True)
        raise
    finally:
        _record_figures(item, ctx)
    ctx.finish(body_failed=False)
    return result


def _record_figures(item: pytest.Item, ctx: TestContext) -> None:
    if ctx.description and ("description", ctx.description) not in item.user_properties:
        item.user_properties.append(("description", ctx.description))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    ctx = item.stash.get(_CONTEXT, None)
    if ctx is not None:
        bound_report_sections(report)  # a Raft may print megabytes (labtests/output.py)
    if ctx is not None and report.when == "teardown":
        # The last phase: nothing reads the context after it.  pytest keeps every item
        # to the end of the session, and a stress worker runs thousands of them: each
        # kept context held its Configs and their networks (about 40 kB a run), and
        # every later Config.release() collected them again, so a worker's runs got
        # slower and slower (1,000 simulated runs per test: 440 runs/min -> 90).
        del item.stash[_CONTEXT]
    if ctx is None or report.when != "call":
        return report
    figures = ctx.figures
    for msg in ctx.lab_warnings:
        item.user_properties.append(("lab_warning", msg))
    if report.passed and figures:
        for key in ("time", "peers", "rpcs", "bytes", "commits"):
            item.user_properties.append((key, figures[key]))
    _record_timer_lag(item, ctx, call, report)
    if report.failed and ctx.failures.artifact:  # a known artifact (labtests/artifacts.py)
        item.user_properties.append((ARTIFACT_KEY, ctx.failures.artifact))
    if report.failed and call.excinfo is not None:
        item.user_properties.append((REASON_KEY, failure_reason(call.excinfo.value)))
    report.user_properties = list(item.user_properties)
    if report.failed:  # inconclusive (timer lag above, or the simulation's backstop)
        report.sections.extend(inconclusive_sections(
            item.nodeid, dict(report.user_properties), harness_options(item.config)))
    for msg in ctx.warnings:
        warnings.warn(RaftlabImplementationWarning(f"{item.name}: {msg}"), stacklevel=1)
        report.sections.append(("raftlab warning", msg))
    if ctx.cleanup_report and report.failed:
        # Something failed first (that is the reason); the stuck cleanup comes with it.
        report.sections.append(("raftlab cleanup", ctx.cleanup_report))
    if report.failed and call.excinfo is not None:
        _write_bundle(item, ctx, call.excinfo.value, report)
    for cfg in ctx.configs:
        cfg.timeline.clear()  # pytest keeps the context for the session; the events can go
        if cfg.watch is not None:
            cfg.watch.release()
        cfg.release()  # and so can the cluster (Raft instances, logs, persisted state)
    return report


def _write_bundle(item: pytest.Item, ctx: TestContext, exc: BaseException,
                  report: pytest.TestReport) -> None:
    """The failure bundle (labtests.timeline.bundle): its path on the report and one line
    in the failure's details; a bundle that cannot be written never changes the verdict.

    Imported here, by the first failure: the bundle and its HTML page are not needed by
    a run that passes."""
    from labtests.timeline.bundle import BUNDLE_KEY, write_bundle

    options = harness_options(item.config)
    props = dict(item.user_properties)
    try:
        capture = next((cfg.watch.capture for cfg in ctx.configs
                        if cfg.watch is not None and cfg.watch.capture), None)
        folder = write_bundle(
            test=item.name, nodeid=item.nodeid, seed=ctx.seed, options=options,
            configs=ctx.configs, message=str(exc),
            lab_lines=[text for text, _ in verdict_lines(item.nodeid, props, "failed", "call",
                                                           options)],
            verdict=props.get(VERDICT_KEY) or "failed", artifact=ctx.failures.artifact,
            reason=props.get(REASON_KEY) or "", impl=_impl_label(options),
            timer_lag=dict(ctx.timer_lag.properties()) if ctx.timer_lag else {},
            description=ctx.description, debug_lines=list(capture.lines) if capture else None)
    except Exception as err:  # noqa: BLE001 - reported, never a verdict
        report.sections.append(("raftlab timeline", f"no failure bundle: {err!r}"))
        return
    item.user_properties.append((BUNDLE_KEY, str(folder)))
    report.user_properties.append((BUNDLE_KEY, str(folder)))
    report.sections.append(("raftlab timeline", f"timeline: {folder / 'timeline.html'}"))


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem: str, report: pytest.TestReport, sched: Any) -> None:
    """xdist (controller): a worker died while running ``crashitem``; say how it ended.

    xdist reports the test as failed with "worker crashed"; the worker's exit
    status or signal, the reason line and the test's seed (for the rerun
    command) are added here.
    """
    node = getattr(report, "node", None)
    popen = _worker_popen(getattr(node, "gateway", None))
    status = _worker_returncode(popen)
    how = exit_description(status) if status is not None else "an unknown status"
    worker = getattr(getattr(node, "gateway", None), "id", "?")
    reason = (f"the test process (xdist worker {worker}) ended with {how} while this "
              "test was running")
    dump = last_bound.read_dump(os.environ.get(last_bound.ENV_DIR),
                                getattr(popen, "pid", None))
    if dump is not None:  # a bound ended it (labtests.last_bound, labtests.memory_bound)
        reason = last_bound.describe(dump, f"the test process (xdist worker {worker})")
        report.longrepr = f"{reason}\n\n{dump}"
    else:
        report.longrepr = f"{reason}\n{report.longrepr}"
    props = [(REASON_KEY, reason)]
    config = getattr(node, "config", None)
    if config is not None and _SESSION_SEED in config.stash:
        fixed = harness_options(config).seed
        name = crashitem.rsplit("::", 1)[-1]
        seed = fixed if fixed is not None else derive_seed(config.stash[_SESSION_SEED], name)
        props.insert(0, ("seed", seed))
    report.user_properties = [*report.user_properties, *props]


def _worker_popen(gateway: Any) -> Any:
    """The process of an xdist worker (an execnet popen gateway's), or None."""
    return getattr(getattr(gateway, "_io", None), "popen", None)


def _worker_returncode(popen: Any) -> int | None:
    """The exit status of a dead xdist worker's process (:func:`_worker_popen`)."""
    if popen is None:
        return None
    try:
        return popen.wait(timeout=5)
    except Exception:  # noqa: BLE001 - still running or not a child: unknown
        return None


def _record_timer_lag(item: pytest.Item, ctx: TestContext, call: pytest.CallInfo[Any],
                      report: pytest.TestReport) -> None:
    """Timer-lag properties on every graded test; a failure on an overloaded machine
    becomes inconclusive (labtests.overload, docs/harness.md)."""
    lag = ctx.timer_lag
    if lag is None:
        return
    item.user_properties.extend(lag.properties())
    if ctx.cpu_pin is not None:  # where the test ran (labtests.cpupin): cpu N[, released early]
        item.user_properties.append(("cpu_pin", ctx.cpu_pin.describe()))
    if report.failed and call.excinfo is not None:
        message = str(call.excinfo.value)
        if is_inconclusive(lag, message):
            item.user_properties.append((VERDICT_KEY, INCONCLUSIVE))


class _Verdicts:
    """Counts failures; a run whose only failures are inconclusive exits EXIT_INCONCLUSIVE.

    Shown as ``INCONCLUSIVE`` (``I``) in pytest's progress and summary; the
    report's outcome stays "failed", so nothing that only knows pass/fail takes
    an inconclusive run for a pass.
    """

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.failed = 0
        self.inconclusive = 0

    def pytest_report_teststatus(self, report: pytest.TestReport) -> Any:
        if report.when == "call" and report.failed and inconclusive_text(_props(report)):
            return INCONCLUSIVE, "I", ("INCONCLUSIVE", {"yellow": True})
        return None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            self.failed += 1
            if inconclusive_text(_props(report)):
                self.inconclusive += 1

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """An INCONCLUSIVE section after pytest's FAILURES, in the same form: each
        inconclusive test's traceback and captured output, with why it was not
        judged and its rerun command (the report's sections).  pytest's own
        summary leaves them out: their category is not "failed"."""
        show_inconclusive(terminalreporter)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(self.config, "workerinput"):
            return  # an xdist worker: the controller decides
        if (session.exitstatus == pytest.ExitCode.TESTS_FAILED and self.failed
                and self.failed == self.inconclusive):
            session.exitstatus = EXIT_INCONCLUSIVE


def _props(report: pytest.TestReport) -> dict[str, Any]:
    return dict(report.user_properties)


def show_inconclusive(tr: Any) -> None:
    """Write the INCONCLUSIVE section as pytest writes FAILURES (``summary_failures``):
    obeying ``--tb`` (``no``: nothing; ``line``: one line a test), ``--show-capture``
    and ``--no-summary``; a teardown's captured output follows its test's, as there."""
    config = tr.config
    reports = [rep for rep in tr.getreports(INCONCLUSIVE) if rep.when == "call"]
    style = config.getoption("tbstyle", "auto")
    if not reports or style == "no" or config.getoption("no_summary", False):
        return
    tr.write_sep("=", "INCONCLUSIVE", yellow=True)
    if style == "line":
        for rep in reports:
            tr.write_line(f"{rep.nodeid}: {inconclusive_text(_props(rep))}")
        return
    showcapture = config.getoption("showcapture", "all")
    for rep in reports:
        tr.write_sep("_", rep.head_line or rep.nodeid, yellow=True, bold=True)
        tw = getattr(tr, "_tw", None)
        if tw is not None:
            rep.toterminal(tw)
        else:
            tr.write_line(rep.longreprtext)
        teardown = [section for later in tr.getreports("")
                    if later.nodeid == rep.nodeid and later.when == "teardown"
                    for section in later.sections if "teardown" in section[0]]
        for title, content in [*rep.sections, *teardown]:
            if showcapture == "no" or (showcapture != "all" and showcapture not in title):
                continue
            tr.write_sep("-", title)
            tr.write_line(content[:-1] if content.endswith("\n") else content)


class _LabLines:
    """Prints the lab's lines for each graded test, even with output captured.

    An object registered at configure time rather than a module-level hook,
    because ``pytest_runtest_logreport`` is not given the config it needs.
    """

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = _props(report)
        if "seed" not in props:
            return
        if report.when != "call" and not (report.failed and report.when in ("setup", "???")):
            return
        config = self.config
        tr = config.pluginmanager.get_plugin("terminalreporter")
        if tr is None:
            return
        live = (config.getoption("capture") == "no"
                and not getattr(config.option, "numprocesses", 0))
        if report.passed and live:
            return  # begin() and end() already printed these lines
        lines = verdict_lines(report.nodeid, props, report.outcome, report.when,
                              harness_options(config))
        if live and report.when == "call":
            lines = lines[1:]  # begin() already printed the description
        if lines:
            _fresh_line(tr)
        for text, colour in lines:
            tr.write_line(text, **({colour: True} if colour else {}))


def _fresh_line(tr: Any) -> None:
    """Start our lines on a line of their own (after pytest's progress dots)."""
    tw = getattr(tr, "_tw", None)
    if tw is not None and getattr(tw, "width_of_current_line", 0):
        tr.write("\n")
