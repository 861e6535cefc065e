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

A child that ends in the middle of a run -- the Raft called ``os._exit`` or killed
its process, or no Python could run in it and the last bound ended it
(labtests/last_bound.py) -- fails that run, naming how the process ended, and a new
child takes the runs it had not started, as xdist fails a dead worker's test and
replaces the worker.  Before, those runs had no result: stress either restarted the
whole session, so that the run was run again and could pass (a Raft that ended its
process one run in ten read as passing), or, with no result at all, ended with a
backend error.

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

from labtests import last_bound
from labtests.isolation.procs import die_with_parent
from labtests.verdicts import exit_description
from tools.stress.pytest_plugin import job_index_of

STAGGER_S = 0.01  # between two forks: 192 workers start over ~2 s, not all in one instant
START_KEY = "forked_start"  # a child's line that says which run it starts (not an event)
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
    """Run ``items`` with the ordinary per-item protocol; the child's exit status.

    Before each run a start line goes down the pipe (``{"forked_start": job}``, kept by
    the session process): if the child dies, the session knows which run it was in."""
    _child_events(session.config, fd, worker)
    failed_before = session.testsfailed
    for i, item in enumerate(items):
        nextitem = items[i + 1] if i + 1 < len(items) else None
        _write_all(fd, json.dumps({START_KEY: job_index_of(item.nodeid)}).encode() + b"\n")
        item.config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
        if session.shouldfail or session.shouldstop:
            break
    return 1 if session.testsfailed > failed_before else 0


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


class _Child:
    """A forked child as the session process follows it."""

    def __init__(self, pid: int, fd: int, worker: str, items: list[pytest.Item]) -> None:
        self.pid = pid
        self.fd = fd
        self.worker = worker
        self.items = items
        self.pending = b""  # a partial line read from its pipe
        self.started: dict[int, float] = {}  # runs started and not reported: job -> start
        self.reported: set[int] = set()
        self.ran = False  # it started a run


def _fork_one(session: pytest.Session, worker: str, items: list[pytest.Item],
              open_fds: list[int]) -> _Child:
    """Fork a child that runs ``items`` as ``worker``; ``open_fds``: the session's read
    ends of the other children's pipes (the child closes its copies)."""
    parent = os.getpid()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the parent's code
        os.close(read_fd)
        for other in open_fds:
            os.close(other)
        status = 2
        try:
            # Like an xdist worker, end with the session: no orphan writes events
            # after the stress CLI has seen pytest exit (and maybe restarted it).
            die_with_parent()
            if os.getppid() != parent:
                os._exit(status)
            status = _run_child(session, items, write_fd, worker)
        except BaseException:  # noqa: BLE001 - Ctrl-C, an internal error: exit 2
            status = 2
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(status)
    os.close(write_fd)
    return _Child(pid, read_fd, worker, items)


def _fork_all(session: pytest.Session, groups: list[list[pytest.Item]],
              children: dict[int, _Child]) -> None:
    """Fork one child per group into ``children`` ({read end of its pipe: the child})."""
    sys.stdout.flush()
    sys.stderr.flush()
    gc.collect()
    gc.freeze()  # the parent's objects stay out of the children's collections (fewer copies)
    for k, group in enumerate(groups):
        if k:
            time.sleep(STAGGER_S)
        child = _fork_one(session, f"gw{k}", group, list(children))
        children[child.fd] = child


class _Outcome:
    """What the children's ends add up to."""

    def __init__(self) -> None:
        self.failed = 0  # children that reported a failed run, and runs a child's end failed
        self.crashed = 0  # children that ended with runs left that no child could take


def _relay_events(session: pytest.Session, children: dict[int, _Child]) -> _Outcome:
    """Copy the children's event lines to the events file, whole lines only, until every
    child has ended; a child that ends in the middle of a run fails that run, and a new
    child takes the runs it had not started (:func:`_child_ended`)."""
    writers = _event_writers(session.config)
    outcome = _Outcome()
    sel = selectors.DefaultSelector()
    for fd in children:
        sel.register(fd, selectors.EVENT_READ)
    ended: list[_Child] = []  # pipe closed, process not yet reaped
    while children or ended:
        for key, _ in sel.select(timeout=_REAP_POLL_S if ended else None):
            child = children[int(key.fd)]
            chunk = os.read(child.fd, 65536)
            if not chunk:
                sel.unregister(child.fd)
                os.close(child.fd)
                del children[child.fd]  # a partial last line of a killed child is dropped
                ended.append(child)
                continue
            lines, _, child.pending = (child.pending + chunk).rpartition(b"\n")
            for line in lines.split(b"\n") if lines else ():
                if _note(child, line):
                    for w in writers:
                        w._events.write(line.decode() + "\n")  # noqa: SLF001
                        w._events.flush()  # noqa: SLF001
        for child in list(ended):
            pid, status = os.waitpid(child.pid, os.WNOHANG)
            if pid == 0:
                continue  # its pipe closed before it ended (or it closed the pipe itself)
            ended.remove(child)
            new = _child_ended(session, child, os.waitstatus_to_exitcode(status), outcome,
                               writers, list(children))
            if new is not None:
                children[new.fd] = new
                sel.register(new.fd, selectors.EVENT_READ)
    sel.close()
    return outcome


_REAP_POLL_S = 0.05


def _note(child: _Child, line: bytes) -> bool:
    """Note a start or a result line of ``child``; True for a line of the events file."""
    try:
        event = json.loads(line)
    except ValueError:
        return True
    if not isinstance(event, dict):
        return True
    if START_KEY in event:
        if isinstance(event[START_KEY], int):
            child.started[event[START_KEY]] = time.monotonic()
            child.ran = True
        return False
    job = event.get("job")
    if isinstance(job, int):
        child.reported.add(job)
        child.started.pop(job, None)
    return True


def _child_ended(session: pytest.Session, child: _Child, code: int, outcome: _Outcome,
                 writers: list[Any], open_fds: list[int]) -> _Child | None:
    """A child has ended: count it; fail the run it ended in; fork a child for the runs it
    had not started (returned), as xdist replaces a dead worker."""
    unreported = [item for item in child.items
                  if job_index_of(item.nodeid) not in child.reported]
    if not unreported:
        if code == 1:
            outcome.failed += 1
        elif code != 0:
            outcome.crashed += 1
        return None
    in_run = [j for j in child.started if j not in child.reported]
    for j in in_run:
        reason, log = _ended_in_run(child, code)
        for w in writers:
            w.crashed_run(j, child.worker, reason, time.monotonic() - child.started[j], log)
        outcome.failed += 1
    rest = [item for item in unreported if job_index_of(item.nodeid) not in in_run]
    if not rest:
        return None
    if not child.ran:  # it died before its first run: another would too
        outcome.crashed += 1
        return None
    return _fork_one(session, child.worker, rest, open_fds)


def _ended_in_run(child: _Child, code: int) -> tuple[str, str]:
    """The reason and log of a run whose process ended in its middle."""
    who = f"the run's process (forked worker {child.worker})"
    dump = last_bound.read_dump(os.environ.get(last_bound.ENV_DIR), child.pid)
    if dump is not None:  # a bound ended it (labtests.last_bound, labtests.memory_bound)
        reason = last_bound.describe(dump, who)
        return reason, f"{reason}\n\n{dump}"
    reason = f"{who} ended with {exit_description(code)} while this run was running"
    return reason, reason + "\n"


def _stop_children(children: dict[int, _Child]) -> None:
    for child in children.values():
        try:
            os.kill(child.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for child in children.values():
        try:
            os.waitpid(child.pid, 0)
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
    children: dict[int, _Child] = {}
    writers = _event_writers(session.config)
    if writers and not os.environ.get(last_bound.ENV_DIR):
        # A child the last bound ends leaves its stacks beside the events file, where
        # the run's reason is made (labtests/last_bound.py); the folder is the session's.
        os.environ[last_bound.ENV_DIR] = os.path.dirname(os.path.abspath(writers[0].events_path))
    try:
        _fork_all(session, groups, children)
        outcome = _relay_events(session, children)
    except BaseException:
        _stop_children(children)
        raise
    session.testsfailed += outcome.failed
    if outcome.crashed:
        raise session.Failed(f"{outcome.crashed} forked worker(s) ended abnormally")
    return True
