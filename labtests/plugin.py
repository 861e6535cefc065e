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
records the same figures as JUnit XML properties.  A failure is followed by one
rerun hint, built by :mod:`labtests.rerun`.

Another plugin may choose the seed of one test (``raftlab stress`` runs each
repetition with its own) by implementing the hook
:func:`pytest_raftlab_test_seed`; see :mod:`labtests.hookspecs`.
"""

from __future__ import annotations

import importlib.util
import random
import warnings
from collections.abc import Callable, Generator
from typing import Any

import pytest

from labtests import hookspecs
from labtests.artifacts import ARTIFACT_KEY
from labtests.config import Config, cpu_warning, derive_seed, passed_line
from labtests.context import TestContext
from labtests.impl_loader import DEFAULT_IMPL, Implementation, load
from labtests.isolation import IsolatedImplementation
from labtests.options import HarnessOptions, OptionError, add_pytest_options, from_pytest_config
from labtests.output import bound_report_sections
from labtests.overload import (
    EXIT_INCONCLUSIVE,
    INCONCLUSIVE,
    VERDICT_KEY,
    inconclusive_text,
    is_inconclusive,
    verdict_text,
)
from labtests.rerun import rerun_hint
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
            isolated = IsolatedImplementation(options.impl, debug=options.debug)
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
    item.stash[_CONTEXT] = ctx
    item.user_properties.append(("seed", seed))
    yield ctx.make_config
    ctx.finish(body_failed=True)  # a no-op unless the call phase never ran


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
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
    report.user_properties = list(item.user_properties)
    for msg in ctx.warnings:
        warnings.warn(RaftlabImplementationWarning(f"{item.name}: {msg}"), stacklevel=1)
        report.sections.append(("raftlab warning", msg))
    if report.failed:
        hint = rerun_hint(item.originalname, ctx.seed, harness_options(item.config))
        report.sections.append(("raftlab rerun", hint))
    return report


def _record_timer_lag(item: pytest.Item, ctx: TestContext, call: pytest.CallInfo[Any],
                      report: pytest.TestReport) -> None:
    """Timer-lag properties on every graded test; a failure on an overloaded machine
    becomes inconclusive (labtests.overload, docs/harness.md)."""
    lag = ctx.timer_lag
    if lag is None:
        return
    item.user_properties.extend(lag.properties())
    if report.failed and call.excinfo is not None:
        message = str(call.excinfo.value)
        if is_inconclusive(lag, message):
            item.user_properties.append((VERDICT_KEY, INCONCLUSIVE))
            report.sections.append(("raftlab verdict", verdict_text(lag)))


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

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(self.config, "workerinput"):
            return  # an xdist worker: the controller decides
        if (session.exitstatus == pytest.ExitCode.TESTS_FAILED and self.failed
                and self.failed == self.inconclusive):
            session.exitstatus = EXIT_INCONCLUSIVE


def _props(report: pytest.TestReport) -> dict[str, Any]:
    return dict(report.user_properties)


class _LabLines:
    """Prints the lab's lines for each graded test, even with output captured.

    An object registered at configure time rather than a module-level hook,
    because ``pytest_runtest_logreport`` is not given the config it needs.
    """

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = _props(report)
        if "seed" not in props or report.when != "call":
            return
        config = self.config
        tr = config.pluginmanager.get_plugin("terminalreporter")
        if tr is None:
            return
        live = (config.getoption("capture") == "no"
                and not getattr(config.option, "numprocesses", 0))
        name = report.nodeid.rsplit("::", 1)[-1]
        desc = props.get("description") or name
        if report.passed and "time" in props:
            if live:
                return  # begin() and end() already printed these lines
            # Go prints the lab's warnings without a newline, so they prefix the Passed line.
            lab_warnings = "".join(v for k, v in report.user_properties if k == "lab_warning")
            line = lab_warnings + passed_line(props)
            _fresh_line(tr)
            tr.write_line(f"{desc} ...")
            tr.write_line(line, green=True)
        elif report.failed:
            _fresh_line(tr)
            if not live:
                tr.write_line(f"{desc} ...")
            hint = rerun_hint(name, props["seed"], harness_options(config))
            verdict = inconclusive_text(props)
            if verdict:
                tr.write_line(f"  ... {verdict} -- {hint}", yellow=True)
            else:
                tr.write_line(f"  ... FAILED -- {hint}", red=True)


def _fresh_line(tr: Any) -> None:
    """Start our lines on a line of their own (after pytest's progress dots)."""
    tw = getattr(tr, "_tw", None)
    if tw is not None and getattr(tw, "width_of_current_line", 0):
        tr.write("\n")
