"""pytest plugin of the raftlab harness: options, seeds, watchdog, the lab's output.

Registered through the ``pytest11`` entry point, so it is active in every
pytest run once raftlab is installed.  Options:

* ``--raft-impl MODULE|PATH`` (env ``RAFTLAB_IMPL``): the Raft under test;
* ``--seed N`` (env ``RAFTLAB_SEED``): the seed of every test (otherwise each
  test's seed derives from a session seed printed in the header);
* ``--raft-debug``: turn on ``raft.debuglog`` (topic TEST is the harness);
* ``--raft-timeout S`` (env ``RAFTLAB_TIMEOUT``): the per-test watchdog, above
  the lab's own 120 s check; a hang fails with a stack dump of every thread.

Graded tests are those that use the ``make_config`` fixture.  Each prints the
lab's two lines (``Test (2A): ... ...`` and ``  ... Passed --  ...``) through
the terminal reporter, which works with output capture and with xdist, and
records the same figures as JUnit XML properties.
"""

from __future__ import annotations

import os
import random
import shlex
import warnings
from collections.abc import Callable, Generator
from typing import Any

import pytest

from labtests.config import Config, cpu_warning, derive_seed, passed_line
from labtests.context import TestContext
from labtests.impl_loader import DEFAULT_IMPL, Implementation, load
from labtests.impl_loader import ENV_VAR as IMPL_ENV
from raft import debuglog

SEED_ENV = "RAFTLAB_SEED"
TIMEOUT_ENV = "RAFTLAB_TIMEOUT"
DEFAULT_TIMEOUT_S = 180.0
PART_MARKERS = {
    "part2a": "Raft part 2A (leader election)",
    "part2b": "Raft part 2B (log replication)",
    "part2c": "Raft part 2C (persistence)",
    "part2d": "Raft part 2D (snapshots)",
    "selftest": "harness self-tests with deliberately broken implementations",
}

_CONTEXT = pytest.StashKey[TestContext]()
_IMPL = pytest.StashKey[Implementation]()
_SESSION_SEED = pytest.StashKey[int]()


class RaftlabImplementationWarning(UserWarning):
    """Something about a non-bundled implementation the student should look at."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("raftlab", "raftlab Raft lab harness")
    group.addoption(
        "--raft-impl", dest="raft_impl", default=None, metavar="MODULE|PATH",
        help=f"Raft implementation under test: a module name or a path to a .py file or "
        f"package directory (default: env {IMPL_ENV}, else the bundled '{DEFAULT_IMPL}')",
    )
    group.addoption(
        "--seed", dest="raft_seed", default=None, type=int, metavar="N",
        help=f"seed for every test's random choices and network faults (default: env "
        f"{SEED_ENV}, else derived per test from a random session seed)",
    )
    group.addoption(
        "--raft-debug", dest="raft_debug", action="store_true", default=False,
        help="enable raft.debuglog output (the harness logs under topic TEST)",
    )
    group.addoption(
        "--raft-timeout", dest="raft_timeout", default=None, type=float, metavar="S",
        help=f"per-test watchdog in seconds (default: env {TIMEOUT_ENV}, else "
        f"{DEFAULT_TIMEOUT_S:.0f}); the lab's own limit of 120 s is checked separately",
    )


def pytest_configure(config: pytest.Config) -> None:
    for name, text in PART_MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    if config.getoption("raft_debug"):
        debuglog.enable()
    worker_input = getattr(config, "workerinput", None)
    if worker_input is not None and "raftlab_session_seed" in worker_input:
        session_seed = int(worker_input["raftlab_session_seed"])
    else:
        session_seed = random.SystemRandom().randrange(2**62)
    config.stash[_SESSION_SEED] = session_seed


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist (controller): hand every worker the session seed."""
    node.workerinput["raftlab_session_seed"] = node.config.stash[_SESSION_SEED]


def _impl_spec(config: pytest.Config) -> str:
    return config.getoption("raft_impl") or os.environ.get(IMPL_ENV) or DEFAULT_IMPL


def _fixed_seed(config: pytest.Config) -> int | None:
    seed = config.getoption("raft_seed")
    if seed is None and os.environ.get(SEED_ENV):
        seed = int(os.environ[SEED_ENV])
    return seed


def pytest_report_header(config: pytest.Config) -> list[str]:
    seed = _fixed_seed(config)
    seeds = (
        f"seed {seed} (fixed)" if seed is not None
        else f"session seed {config.stash[_SESSION_SEED]} (per-test seeds derive from it)"
    )
    lines = [f"raftlab: Raft implementation {_impl_spec(config)!r}; {seeds}"]
    warning = cpu_warning()
    if warning:
        lines.append(warning)
    return lines


def _implementation(config: pytest.Config) -> Implementation:
    """Load the implementation once per process (on first use)."""
    if _IMPL not in config.stash:
        config.stash[_IMPL] = load(_impl_spec(config))
    return config.stash[_IMPL]


def _is_graded(item: pytest.Item) -> bool:
    return "make_config" in getattr(item, "fixturenames", ())


def _timeout_s(config: pytest.Config) -> float:
    value = config.getoption("raft_timeout")
    if value is None and os.environ.get(TIMEOUT_ENV):
        value = float(os.environ[TIMEOUT_ENV])
    return DEFAULT_TIMEOUT_S if value is None else value


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give every graded test the watchdog (unless --timeout or a marker says otherwise)."""
    if config.getoption("timeout", None) is not None:
        return
    limit = _timeout_s(config)
    for item in items:
        if _is_graded(item) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(limit, method="signal"))


def seed_for_test(config: pytest.Config, name: str) -> int:
    """The seed of one test: --seed, or derived from the session seed and its name."""
    fixed = _fixed_seed(config)
    if fixed is not None:
        return fixed
    return derive_seed(config.stash[_SESSION_SEED], name)


@pytest.fixture
def make_config(request: pytest.FixtureRequest) -> Callable[[int, bool, bool], Config]:
    """The lab's ``make_config(n, unreliable, snapshot)``; cleanup runs right after the test."""
    item = request.node
    seed = seed_for_test(request.config, item.name)
    ctx = TestContext(item.name, seed, _implementation(request.config))
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
    if ctx is None or report.when != "call":
        return report
    figures = ctx.figures
    for cfg in ctx.configs:
        for msg in getattr(cfg, "warnings", ()):
            item.user_properties.append(("lab_warning", msg))
    if report.passed and figures:
        for key in ("time", "peers", "rpcs", "bytes", "commits"):
            item.user_properties.append((key, figures[key]))
    report.user_properties = list(item.user_properties)
    for msg in ctx.warnings:
        warnings.warn(RaftlabImplementationWarning(f"{item.name}: {msg}"), stacklevel=1)
        report.sections.append(("raftlab warning", msg))
    if report.failed:
        hint = rerun_hint(item.config, item.originalname, ctx.seed)
        report.sections.append(("raftlab rerun", hint))
    return report


def rerun_hint(config: pytest.Config, name: str, seed: int) -> str:
    """The exact commands that rerun one test with its seed."""
    spec = _impl_spec(config)
    if spec != DEFAULT_IMPL and os.path.exists(spec):
        spec = os.path.abspath(spec)
    impl_raftlab = f" --impl {shlex.quote(spec)}" if spec != DEFAULT_IMPL else ""
    impl_pytest = f" --raft-impl {shlex.quote(spec)}" if spec != DEFAULT_IMPL else ""
    sim = " --sim" if config.getoption("raft_sim", False) else ""  # labtests.sim's option
    return (
        f"seed {seed}; rerun with: raftlab test {name} --seed {seed}{impl_raftlab}{sim}\n"
        f"  or: python -m pytest --pyargs labtests -k {name} --seed {seed}{impl_pytest}{sim}"
    )


def _props(report: pytest.TestReport) -> dict[str, Any]:
    return dict(report.user_properties)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Show the lab's lines for each graded test, even with output captured."""
    props = _props(report)
    if "seed" not in props or report.when != "call":
        return
    config = _CONFIG.get("config")
    if config is None:
        return
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr is None:
        return
    live = config.getoption("capture") == "no" and not getattr(config.option, "numprocesses", 0)
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
        tr.write_line(f"  ... FAILED -- {rerun_hint(config, name, props['seed'])}", red=True)


def _fresh_line(tr: Any) -> None:
    """Start our lines on a line of their own (after pytest's progress dots)."""
    tw = getattr(tr, "_tw", None)
    if tw is not None and getattr(tw, "width_of_current_line", 0):
        tr.write("\n")


_CONFIG: dict[str, pytest.Config] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    _CONFIG["config"] = session.config
