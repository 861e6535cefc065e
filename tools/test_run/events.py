"""pytest plugin of the child process of ``raftlab test``: one JSON event per line.

``raftlab test`` hands this module to ``pytest.main`` in its child process and
names the events file in the child's environment (:data:`ENV_EVENTS`), not on
pytest's command line: pytest-xdist passes the command line to its workers,
which do not load this plugin and would refuse an option they do not know.
Each event is written and flushed at once, so that whatever the child has
reported is on disk when it dies, and then the doorbell is rung
(:class:`~tools.test_run.channel.Doorbell`, when the parent gave one), so that
the parent wakes to read it.  With pytest-xdist the controller writes the events
(the workers' reports reach it), never a worker.

It imports the harness only inside its hooks: the child imports this module
before pytest starts (see :mod:`tools.test_run.follow`), and a harness module
imported that early would miss pytest's assertion rewriting.

Events (``"event"`` key):

* ``header``: the harness's header lines and its resolved options;
* ``collected``: the node ids of the tests that will run, in order;
* ``collecterror``: a file that could not be collected, with pytest's text;
* ``start``: a test begins (``nodeid``); ``seed``: its seed, once chosen;
* ``report``: one phase of a test ended (pytest's report: outcome, properties,
  and for a failure its text and captured output, bounded);
* ``finish``: the session ended, with pytest's exit status.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Generator
from typing import IO, Any

import pytest

from tools.jsonable import jsonable
from tools.test_run.channel import ENV_EVENTS, Doorbell

# Sections a passing test's report still carries to the parent (the rest is for failures).
KEPT_WHEN_PASSED = ("raftlab warning", "raftlab verdict")


def pytest_configure(config: pytest.Config) -> None:
    path = os.environ.get(ENV_EVENTS)
    if path and not hasattr(config, "workerinput"):
        config.pluginmanager.register(EventWriter(config, path), "raftlab-test-events")


class EventWriter:
    """Writes the events of one pytest session (see the module docstring)."""

    def __init__(self, config: pytest.Config, path: str) -> None:
        self.config = config
        self.out: IO[str] | None = open(path, "a", encoding="utf-8")  # noqa: SIM115
        self.bell = Doorbell.from_environment()
        self._collected_sent = False
        self._pid = os.getpid()

    def emit(self, event: str, **fields: Any) -> None:
        # Not from a copy of this process (a Raft that calls os.fork() in the test
        # process): its reports would stand beside the real ones -- a copy that passed
        # after the real test failed read as a pass.  labtests/child_processes.py ends it.
        if self.out is None or os.getpid() != self._pid:
            return
        self.out.write(json.dumps({"event": event, **fields}) + "\n")
        self.out.flush()
        if self.bell is not None:
            self.bell.ring()

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        from labtests.plugin import harness_options

        config = self.config
        answers = config.hook.pytest_report_header(config=config, start_path=config.rootpath)
        lines = []
        for answer in answers:
            for line in [answer] if isinstance(answer, str) else answer:
                if line.startswith(("raftlab:", "warning:")):
                    lines.append(line)
        options = dataclasses.asdict(harness_options(config))
        self.emit("header", lines=lines, options=options)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if session.items or not getattr(self.config.option, "numprocesses", None):
            self._collected([item.nodeid for item in session.items])

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        self._collected(list(ids))

    def _collected(self, ids: list[str]) -> None:
        if not self._collected_sent:
            self._collected_sent = True
            self.emit("collected", tests=ids)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        from labtests.output import bound_text

        if report.failed:
            self.emit("collecterror", nodeid=report.nodeid,
                      longrepr=bound_text(report.longreprtext))

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        self.emit("start", nodeid=nodeid)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: Any) -> None:
        # Not under xdist (the controller runs no test): the seed, for a crash's rerun line.
        if "make_config" in getattr(item, "fixturenames", ()):
            from labtests.plugin import seed_for_test

            self.emit("seed", nodeid=item.nodeid, seed=seed_for_test(item))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        from labtests.output import bound_text

        props = [[k, v] for k, v in (report.user_properties or ()) if jsonable(v)]
        sections = [
            [title, bound_text(content)] for title, content in report.sections
            if report.failed or title in KEPT_WHEN_PASSED
        ]
        self.emit("report", nodeid=report.nodeid, when=report.when, outcome=report.outcome,
                  duration=round(report.duration, 3), props=props,
                  longrepr=bound_text(report.longreprtext) if report.failed else "",
                  sections=sections)

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> Generator[None, Any, Any]:
        result = yield
        self.emit("finish", exitstatus=int(session.exitstatus))
        return result

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None
