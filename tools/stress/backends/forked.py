"""Warm forked workers for the local backend: one pytest session, N forked children.

Why: with ``pytest -n N`` (xdist) every worker is a fresh interpreter that imports
pytest, the harness and the tests (0.3-0.5 s of CPU and ~35 MB each) and talks to
the controller over execnet.  At ``-p 192`` that is over a minute of CPU spent on
two cores just starting, while the first workers' runs already measure time.
Here one process imports and collects once, then, in ``pytest_runtestloop``,
forks N children that share its memory copy-on-write.  Each child runs its share
of the items (job i goes to child i mod N, in job order) with pytest's ordinary
per-item protocol, so reports, the harness's verdicts and the stress plugin's
event lines are exactly those of a single-process run; a child then ends with
``os._exit`` (its status: 0, or 1 if a run failed), and dies with the session
(``PR_SET_PDEATHSIG``), as an xdist worker does.  Children are started a few
milliseconds apart (``STAGGER_S``) so their first tests do not all start at once.

As under xdist, only the session process writes the stress plugin's event file:
a child sends each event line (with its worker id, ``gw<k>``) down a pipe of its
own and the session copies whole lines over.  So a run whose child outlives a
killed session by a few milliseconds records nothing, as with a dead xdist
controller, and lines of different children never interleave.

Load with ``-p tools.stress.backends.forked --stress-forks N``.  Without the
option this plugin does nothing.
"""

from __future__ import annotations

import gc
import json
import os
import selectors
import signal
import sys
import threading
import time
from typing import Any

import pytest

from labtests.isolation.procs import die_with_parent

STAGGER_S = 0.01  # between two forks: 192 workers start over ~2 s, not all in one instant
OPTION = "--stress-forks"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("raftlab-stress").addoption(
        OPTION, type=int, default=0, metavar="N",
        help="run the items in N children forked after collection (raftlab stress -p N)")


class _PipeLines:
    """The event file as a child sees it: each line goes, with this child's worker id,
    down a pipe to the session process, which alone writes the real file."""

    def __init__(self, fd: int, worker: str) -> None:
        self._fd: int | None = fd
        self._pending = ""
        self._worker = worker

    def write(self, text: str) -> int:
        self._pending += text
        if "\n" in self._pending:
            head, _, self._pending = self._pending.rpartition("\n")
            data = "".join(self._named(line) + "\n" for line in head.split("\n")).encode()
            while data and self._fd is not None:
                data = data[os.write(self._fd, data):]
        return len(text)

    def _named(self, line: str) -> str:
        """The event with this child's worker id, ``gw<k>`` as under xdist (same format)."""
        try:
            event = json.loads(line)
        except ValueError:
            return line
        if isinstance(event, dict) and event.get("worker") == "main":
            event["worker"] = self._worker
            return json.dumps(event)
        return line

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _event_writers(config: pytest.Config) -> list[Any]:
    """The stress plugin instances that write an event file (at most one)."""
    return [p for p in config.pluginmanager.get_plugins()
            if getattr(p, "_events", None) is not None and getattr(p, "events_path", None)]


def _child_events(config: pytest.Config, fd: int, worker: str) -> None:
    """In a child: the stress plugin's events go down the pipe ``fd`` (see module doc)."""
    for plugin in _event_writers(config):
        plugin.report_to(_PipeLines(fd, worker))  # closes its copy of the parent's file


def _run_child(session: pytest.Session, items: list[pytest.Item], fd: int, worker: str) -> int:
    """Run ``items`` with the ordinary per-item protocol; the child's exit status."""
    _child_events(session.config, fd, worker)
    failed_before = session.testsfailed
    for i, item in enumerate(items):
        nextitem = items[i + 1] if i + 1 < len(items) else None
        item.config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
        if session.shouldfail or session.shouldstop:
            break
    return 1 if session.testsfailed > failed_before else 0


def _fork_all(session: pytest.Session, groups: list[list[pytest.Item]],
              children: dict[int, int]) -> None:
    """Fork one child per group into ``children`` ({pid: read end of its event pipe})."""
    sys.stdout.flush()
    sys.stderr.flush()
    gc.collect()
    gc.freeze()  # the parent's objects stay out of the children's collections (fewer copies)
    parent = os.getpid()
    for k, group in enumerate(groups):
        if k:
            time.sleep(STAGGER_S)
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the parent's code
            os.close(read_fd)
            for other in children.values():
                os.close(other)
            status = 2
            try:
                # Like an xdist worker, end with the session: no orphan writes events
                # after the stress CLI has seen pytest exit (and maybe restarted it).
                die_with_parent()
                if os.getppid() != parent:
                    os._exit(status)
                status = _run_child(session, group, write_fd, f"gw{k}")
            except BaseException:  # noqa: BLE001 - Ctrl-C, an internal error: exit 2
                status = 2
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(status)
        os.close(write_fd)
        children[pid] = read_fd


def _relay_events(session: pytest.Session, children: dict[int, int]) -> None:
    """Copy the children's event lines to the events file, whole lines only, until every
    child's pipe is closed (the child ended)."""
    writers = _event_writers(session.config)
    sel = selectors.DefaultSelector()
    pending: dict[int, bytes] = {}
    for fd in children.values():
        sel.register(fd, selectors.EVENT_READ)
        pending[fd] = b""
    while pending:
        for key, _ in sel.select():
            fd = int(key.fd)
            chunk = os.read(fd, 65536)
            if not chunk:
                sel.unregister(fd)
                os.close(fd)
                del pending[fd]  # a partial last line of a killed child is dropped
                continue
            data = pending[fd] + chunk
            lines, _, pending[fd] = data.rpartition(b"\n")
            if lines:
                for w in writers:
                    w._events.write(lines.decode() + "\n")  # noqa: SLF001
                    w._events.flush()  # noqa: SLF001
    sel.close()


def _wait_all(children: dict[int, int]) -> tuple[int, int]:
    """Wait for every child: (children that reported a failure, children that crashed)."""
    failed = crashed = 0
    for pid in list(children):
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code == 1:
            failed += 1
        elif code != 0:
            crashed += 1
    return failed, crashed


def _stop_children(children: dict[int, int]) -> None:
    for pid in children:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for pid in children:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> Any:
    forks = session.config.getoption(OPTION)
    if not forks:
        return None
    if session.testsfailed and not session.config.option.continue_on_collection_errors:
        raise session.Interrupted(f"{session.testsfailed} errors during collection")
    if session.config.option.collectonly or not session.items:
        return True
    if threading.active_count() > 1:
        names = ", ".join(t.name for t in threading.enumerate()
                          if t is not threading.current_thread())
        sys.stderr.write(f"raftlab stress: forking workers while other threads run ({names}); "
                         "they do not exist in the children\n")
    items = list(session.items)
    n = min(forks, len(items))
    groups = [items[k::n] for k in range(n)]
    children: dict[int, int] = {}
    try:
        _fork_all(session, groups, children)
        _relay_events(session, children)
        failed, crashed = _wait_all(children)
    except BaseException:
        _stop_children(children)
        raise
    session.testsfailed += failed
    if crashed:
        raise session.Failed(f"{crashed} forked worker(s) ended abnormally")
    return True
