"""labtests/last_bound.py: the bound that ends a test's process from C when no Python can
run in it any more (a thread keeps the interpreter lock).

Each case runs in a child process: the bound ends the process it is armed in.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from labtests import last_bound

ROOT = Path(__file__).resolve().parent.parent


def _child(code: str, folder: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    script = "import time, faulthandler\nfrom labtests import last_bound\n" + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout,
                          env={**_env(), last_bound.ENV_DIR: str(folder)})


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "RAFTLAB_"))}


def _dumps(folder: Path) -> list[str]:
    return [p.read_text() for p in sorted(folder.iterdir())]


def test_a_thread_that_keeps_the_interpreter_lock_is_ended_with_every_stack(tmp_path):
    """One call into C that never ends in practice: nothing else of Python runs, yet
    the process ends at the bound, and its dump names the call's frame."""
    res = _child("""
        import threading
        def sums_forever():
            sum(range(10**15))
        last_bound.arm(1.0, None)
        threading.Thread(target=sums_forever, daemon=True).start()
        time.sleep(3600)
    """, tmp_path)
    assert res.returncode == 1, res.stderr
    (dump,) = _dumps(tmp_path)
    assert dump.startswith("Timeout (0:00:01)!"), dump
    assert "in sums_forever" in dump
    pid = int(next(tmp_path.iterdir()).stem.removeprefix("last-bound-"))
    assert last_bound.read_dump(tmp_path, pid) == dump
    assert last_bound.describe(dump) == (
        "raftlab's last bound ended the test process after 1 s: not even its watchdog could "
        "end the test (most likely a thread kept Python's interpreter lock: a long call into "
        "C code, or sys.setswitchinterval)")


def test_disarmed_it_never_fires_and_an_unused_dump_file_is_removed(tmp_path):
    res = _child("""
        last_bound.arm(1.0, None)
        last_bound.disarm()
        time.sleep(2.5)
        last_bound.close()
    """, tmp_path)
    assert res.returncode == 0, res.stderr
    assert _dumps(tmp_path) == []


def test_a_required_time_lengthens_the_bound_armed_before_or_after_it(tmp_path):
    """The simulation's backstop may come later than the watchdog's bound: it wins,
    whichever of the two plugins runs first.  A requirement never shortens a bound."""
    res = _child("""
        last_bound.require(30.0)
        last_bound.arm(1.0, None)      # armed after the requirement
        time.sleep(2.5)
        last_bound.disarm()
        last_bound.arm(1.0, None)
        last_bound.require(30.0)       # required after the arming
        time.sleep(2.5)
        last_bound.disarm()
        last_bound.arm(30.0, None)
        last_bound.require(1.0)        # shorter: no effect
        time.sleep(2.5)
        last_bound.close()
    """, tmp_path)
    assert res.returncode == 0, (res.returncode, _dumps(tmp_path))


def test_rearm_restores_a_dump_that_something_else_cancelled(tmp_path):
    """pytest's faulthandler plugin cancels any pending dump when a test fails."""
    res = _child("""
        last_bound.arm(2.0, None)
        faulthandler.cancel_dump_traceback_later()
        last_bound.rearm()
        time.sleep(60)
    """, tmp_path)
    assert res.returncode == 1
    assert _dumps(tmp_path)[0].startswith("Timeout (0:00:0")


@pytest.mark.parametrize("first, expected", [
    ("Timeout (0:06:00)!", "after 360 s"),
    ("Timeout (1:00:05.5)!", "after 3605.5 s"),
    ("something else", "after its deadline"),
])
def test_the_reason_reads_the_deadline_from_the_dump(first, expected):
    assert expected in last_bound.describe(first + "\nThread 0x1 (most recent call first):\n")


def test_the_bound_follows_the_watchdog_with_at_least_a_minute_of_margin():
    assert last_bound.seconds_for(5) == 65
    assert last_bound.seconds_for(180) == 360
