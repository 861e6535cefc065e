"""A stop signal ends ``raftlab explore`` promptly, in words, with nothing lost or left.

Ctrl-C (SIGINT to the whole process group, as a terminal sends it), SIGTERM to the
command alone (``kill``, a batch system) or to its group, and SIGHUP: explore kills its
workers (and with them the runs they had forked), keeps every finished run in
results.jsonl and the failures found in failures/, writes summary.json, says what was
done and what was not, and exits 130 or 128 + the signal.  Before, Ctrl-C ended it with
status 0 (or with a traceback and no failure file while shrinking), and SIGTERM killed
the command at once: no summary, the rows still in its buffer lost, and the workers and
the resource tracker left running for good when only the command was signalled.

Load-proof: each command has far more work than it is given time for (thousands of
schedules, or a shrink of up to 300 runs), the signal goes out at a state read on disk
(rows in results.jsonl, "shrinking" on the output), and the bounds are generous (60 s
to end where the old code never ended, or ended without its words).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

pytest.importorskip("greenlet")

from labtests.explore.schedule import Schedule  # noqa: E402
from tests.mutants.make_mutants import materialize  # noqa: E402
from tests.session_procs import left_after  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORDS = "raftlab explore: "


def _explore(out: Path, *argv: str, tmp: Path | None = None) -> subprocess.Popen[str]:
    """The command in a session of its own, its output in a file (read while it runs),
    its temporary files in a folder of its own (:func:`_temporary_left`; or ``tmp``)."""
    log = open(out.parent / "output.txt", "w")  # noqa: SIM115 - closed by the child's end
    if tmp is None:
        tmp = out.parent / "tmp"
        tmp.mkdir()
    try:
        return subprocess.Popen([sys.executable, "-m", "tools.explore", *argv, "-o", str(out)],
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True, env=dict(os.environ, TMPDIR=str(tmp)))
    finally:
        log.close()


def _temporary_left(out: Path) -> list[str]:
    """What the command left in its temporary folder.  A stop SIGKILLs the workers, whose
    runs in flight never removed their work folders: one per worker and stop was left
    in /tmp until the pool's scratch folder held them all and went with the pool."""
    return sorted(p.name for p in (out.parent / "tmp").iterdir())


@contextmanager
def _group_killed_on_exit(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """Nothing of the command under test outlives its test, whatever failed: its whole
    process group is killed (the command alone would leave its workers)."""
    try:
        yield proc
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _output(out: Path) -> str:
    return (out.parent / "output.txt").read_text(errors="replace")


def _wait_until(proc: subprocess.Popen[str], out: Path, ready, what: str) -> None:
    deadline = time.monotonic() + 300  # start-up only: generous for a loaded machine
    while not ready():
        assert proc.poll() is None, f"explore ended before {what}:\n{_output(out)[-3000:]}"
        assert time.monotonic() < deadline, f"not {what} within 300 s"
        time.sleep(0.05)


def _rows(out: Path) -> list[dict]:
    path = out / "results.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _signal(proc: subprocess.Popen[str], sig: int, group: bool) -> None:
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)


def _ended(proc: subprocess.Popen[str], out: Path) -> str:
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"explore had not ended 60 s after the signal:\n{_output(out)[-3000:]}")
    return _output(out)


STOPS = [(signal.SIGINT, True, "interrupted"),
         (signal.SIGTERM, False, "terminated by SIGTERM"),
         (signal.SIGTERM, True, "terminated by SIGTERM"),
         (signal.SIGHUP, False, "terminated by SIGHUP")]
STOP_IDS = ["ctrl-c-to-group", "sigterm-to-command", "sigterm-to-group", "sighup-to-command"]


@pytest.mark.parametrize("sig, group, said", STOPS, ids=STOP_IDS)
def test_a_stop_signal_while_runs_are_in_flight(tmp_path, sig, group, said):
    out = tmp_path / "out"
    with _group_killed_on_exit(_explore(out, "-n", "5000", "-p", "2", "--no-shrink")) as proc:
        _wait_until(proc, out, lambda: len(_rows(out)) >= 2, "two runs finished")
        _signal(proc, sig, group)
        text = _ended(proc, out)
    assert proc.returncode == 128 + sig, (proc.returncode, text[-3000:])
    # Nothing of the command left running: its workers, their runs, the resource tracker.
    left = left_after({proc.pid}, 10)
    assert left == {}, f"left behind: {left}\n{text[-3000:]}"
    assert _temporary_left(out) == []
    rows = _rows(out)  # every line parses: written whole
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"] == len(rows) >= 2 and summary["stopped"] == said, summary
    assert len({r["seed"] for r in rows}) == len(rows) < 5000
    assert f"{said}: summarising what finished" in text
    last = text.strip().splitlines()[-1]
    assert last.startswith(f"{WORDS}{said}; {len(rows)} of 5000 schedules ran"), last
    assert "Traceback" not in text, text[-3000:]


@pytest.mark.parametrize("sig, group, said", STOPS[:2], ids=STOP_IDS[:2])
def test_a_stop_signal_while_shrinking_keeps_the_failure_found(tmp_path, sig, group, said):
    """The old code: Ctrl-C gave a traceback, SIGTERM killed the command; either way no
    failure file (it was written only once shrunk) and no summary."""
    out = tmp_path / "out"
    # 40 schedules of this mutant fail election-safety; shrinking them takes up to 300
    # reruns, the signal comes as soon as it has begun.
    argv = ["--impl", materialize("no_persist_vote"), "-n", "40", "-p", "2"]
    with _group_killed_on_exit(_explore(out, *argv)) as proc:
        _wait_until(proc, out, lambda: "shrinking" in _output(out), "shrinking")
        _signal(proc, sig, group)
        text = _ended(proc, out)
    assert proc.returncode == 128 + sig, (proc.returncode, text[-3000:])
    left = left_after({proc.pid}, 10)
    assert left == {}, f"left behind: {left}\n{text[-3000:]}"
    assert _temporary_left(out) == []
    rows = _rows(out)
    assert len(rows) == 40
    failing = {r["monitor"] for r in rows if r["monitor"]}
    assert "election-safety" in failing
    for monitor in failing:  # the schedule found, as it was: replayable
        kept = Schedule.loads((out / "failures" / f"{monitor}.json").read_text())
        assert kept.steps
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped"] == said and summary["runs"] == 40
    assert summary["minimal"]["election-safety"]["error"] == f"not shrunk: explore was {said}"
    last = text.strip().splitlines()[-1]
    assert last.startswith(f"{WORDS}{said}; 40 of 40 schedules ran"), last
    assert "failure(s) kept unshrunk" in last and "Traceback" not in text


def _spawned_in(session: int) -> bool:
    """A spawned multiprocessing process (a worker starting) is in ``session``."""
    for name in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{name}/stat").read_text() if name.isdigit() else ""
            if stat and int(stat.rsplit(")", 1)[1].split()[3]) == session \
                    and b"spawn_main" in Path(f"/proc/{name}/cmdline").read_bytes():
                return True
        except (OSError, ValueError, IndexError):
            continue
    return False


@pytest.mark.parametrize("sig, group, said", STOPS[:2], ids=STOP_IDS[:2])
def test_a_stop_signal_as_the_workers_start(tmp_path, sig, group, said):
    """The signal goes out as the first worker process appears: usually while the pool
    waits for its workers (hashseed.pinned_pool), where the old code ended with a
    traceback (Ctrl-C, status -2) or at once (SIGTERM) leaving its workers running; on
    a slow poll, just after -- the runs' stop then, with its own words."""
    out = tmp_path / "out"
    with _group_killed_on_exit(_explore(out, "-n", "5000", "-p", "2", "--no-shrink")) as proc:
        _wait_until(proc, out, lambda: _spawned_in(proc.pid), "a worker started")
        _signal(proc, sig, group)
        text = _ended(proc, out)
    assert proc.returncode == 128 + sig, (proc.returncode, text[-3000:])
    left = left_after({proc.pid}, 10)
    assert left == {}, f"left behind: {left}\n{text[-3000:]}"
    assert _temporary_left(out) == []
    last = text.strip().splitlines()[-1]
    assert last in (f"{WORDS}{said} while its workers started; no schedule ran",) \
        or last.startswith(f"{WORDS}{said}; "), last
    # No traceback of its own, of its pool's thread, or of a worker still starting (a
    # Ctrl-C reaches the whole group: 3 of 17 printed one before the workers blocked it).
    assert "Traceback" not in text and "Fatal Python error" not in text, text[-3000:]


def test_explore_killed_alone_takes_its_workers_with_it(tmp_path):
    """``kill -9`` of the command alone (no handler runs): its workers die with it, and
    their runs with them.  The old code left both workers (and the resource tracker
    they kept alive) waiting for tasks for good."""
    out = tmp_path / "out"
    with _group_killed_on_exit(_explore(out, "-n", "5000", "-p", "2", "--no-shrink")) as proc:
        _wait_until(proc, out, lambda: len(_rows(out)) >= 2, "two runs finished")
        proc.kill()
        proc.wait(timeout=60)
        left = left_after({proc.pid}, 30)
    assert left == {}, f"left behind by the killed command: {left}"
    assert len(_rows(out)) >= 2  # each finished run was on disk at once
    # Its pool's folder stays (no handler ran) -- until the next explore reclaims it.
    assert [p[:21] for p in _temporary_left(out)] == ["raftlab-explore-pool-"]
    again = tmp_path / "again" / "out"
    again.parent.mkdir()
    with _group_killed_on_exit(_explore(again, "-n", "1", "-p", "1", "--no-shrink",
                                        tmp=out.parent / "tmp")) as proc:
        assert proc.wait(timeout=300) == 0, (again.parent / "output.txt").read_text()
    assert _temporary_left(out) == []


def test_the_resource_tracker_is_stopped_even_while_another_process_holds_its_pipe():
    """A worker being spawned as a stop signal came inherits the tracker's pipe without
    being in the pool's table, so it is not killed; the tracker then never saw the end of
    its pipe and the command waited for it for good (6 hangs in a loop of SIGTERMs as the workers
    start).  Here a forked child holds the pipe: the stop must still end within its bound."""
    code = textwrap.dedent("""
        import os, signal, sys, time
        from multiprocessing import resource_tracker
        from tools.explore.hashseed import stop_resource_tracker

        resource_tracker.ensure_running()
        tracker = resource_tracker._resource_tracker._pid
        holder = os.fork()
        if holder == 0:  # holds every inherited fd, the tracker's pipe among them
            time.sleep(60)
            os._exit(0)
        start = time.monotonic()
        stop_resource_tracker(within_s=1.0)
        took = time.monotonic() - start
        os.kill(holder, signal.SIGKILL)
        os.waitpid(holder, 0)
        try:
            os.kill(tracker, 0)
            alive = True
        except ProcessLookupError:
            alive = False
        print(f"{took:.2f} {alive}")
    """)
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    took, alive = res.stdout.split()
    assert float(took) < 10 and alive == "False", res.stdout
