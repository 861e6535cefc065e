"""The watchdog's thread stacks show one instant, whatever the threads do while they are formatted.

Formatting reads source files, and other threads run meanwhile; a stack whose line
numbers were read frame by frame during formatting showed where a thread got to
later (``run()``'s ``finally`` under a deeper frame it had already left).
"""

from __future__ import annotations

import linecache
import threading

import pytest

from labtests import watchdog


def _first_stage(go: threading.Event, moved: threading.Event, done: threading.Event) -> None:
    go.wait(30)  # FIRST-STAGE-LINE
    moved.set()
    done.wait(30)  # SECOND-STAGE-LINE


def _line_of(marker: str) -> int:
    with open(__file__, encoding="utf-8") as f:
        return next(n for n, text in enumerate(f, 1) if marker in text and "_line_of" not in text)


def test_stacks_are_captured_before_any_thread_is_formatted(monkeypatch: pytest.MonkeyPatch):
    go, moved, done, idle = (threading.Event() for _ in range(4))
    # 'a-idle' sorts before 'z-mover': it is formatted first, and formatting it moves 'z-mover' on.
    sleeper = threading.Thread(target=idle.wait, args=(30,), name="a-idle", daemon=True)
    mover = threading.Thread(target=_first_stage, args=(go, moved, done), name="z-mover",
                             daemon=True)
    sleeper.start()
    mover.start()
    real_getline = linecache.getline

    def getline(*args: object, **kwargs: object) -> str:
        if not go.is_set():  # the first source line read: let the mover go on, wait till it has
            go.set()
            assert moved.wait(10)
        return real_getline(*args, **kwargs)

    monkeypatch.setattr(linecache, "getline", getline)
    try:
        stacks = watchdog.all_stacks("now")
    finally:
        monkeypatch.undo()
        go.set()
        done.set()
        idle.set()
        sleeper.join(5)
        mover.join(5)
    assert moved.is_set(), "formatting read no source line: the test no longer tests anything"
    mover_part = stacks.split("thread 'z-mover'")[1].split("\nthread ")[0]
    here = f'File "{__file__}", line '
    assert f"{here}{_line_of('FIRST-STAGE-LINE')}, in _first_stage" in mover_part, mover_part
    assert f"{here}{_line_of('SECOND-STAGE-LINE')}" not in mover_part, mover_part
    assert "go.wait(30)" in mover_part  # the source line is still shown, read afterwards
    # The captured frames go on below the mover's function (Event.wait in threading).
    assert mover_part.rstrip().splitlines()[-2].lstrip().startswith('File "')


def test_capture_walks_every_thread_innermost_last():
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, args=(30,), name="capture-probe", daemon=True)
    t.start()
    try:
        captured = watchdog.capture_stacks()
    finally:
        stop.set()
        t.join(5)
    entries = captured[t.ident]
    assert entries[0][2] == "_bootstrap"  # outermost first
    assert entries[-1][2] == "wait"  # innermost: Condition.wait inside Event.wait
    assert all(isinstance(line, int) for _, line, _ in entries)
    me = captured[threading.get_ident()]
    assert me[-1][2] == "capture_stacks"


def test_abandoned_thread_is_named_only_while_that_very_thread_lives(
        monkeypatch: pytest.MonkeyPatch):
    stop = threading.Event()
    blocked = threading.Thread(target=stop.wait, args=(30,), name="left-blocked", daemon=True)
    blocked.start()
    try:
        assert watchdog.abandon([blocked], "test_x") == ["left-blocked"]
        assert blocked.ident in watchdog.abandoned_idents()
        assert "left blocked by test_x" in watchdog.all_stacks("now")
        # Another thread object with the same ident (the OS reused it; or a simulated
        # thread, numbered alike in every simulated run) is not the abandoned thread.
        other = threading.Thread(name="same-ident")
        other._ident = blocked.ident  # type: ignore[attr-defined]
        real = threading.enumerate
        monkeypatch.setattr(threading, "enumerate",
                            lambda: [other if t is blocked else t for t in real()])
        assert blocked.ident not in watchdog.abandoned_idents()
        monkeypatch.undo()
        assert blocked.ident not in watchdog.abandoned_idents()  # forgotten for good
    finally:
        stop.set()
        blocked.join(5)


def test_captures_at_once_leave_the_switch_interval_as_it_was(monkeypatch: pytest.MonkeyPatch):
    """The capture raises the interpreter's switch interval for its walk; a second capture
    that starts while the first walks and ends after it must not leave it raised
    (threads would then switch once a second)."""
    import sys

    before = sys.getswitchinterval()
    real = sys._current_frames
    inside_second, first_done = threading.Event(), threading.Event()
    calls: list[str] = []

    def current_frames() -> dict:
        if threading.current_thread().name == "second-capture":
            inside_second.set()  # it has read the interval by now
            first_done.wait(10)  # and ends after the first one
        elif not calls:
            calls.append("first")
            second.start()
            inside_second.wait(0.5)  # a capture running alongside would be inside by now
        return real()

    second = threading.Thread(target=watchdog.capture_stacks, name="second-capture")
    monkeypatch.setattr(sys, "_current_frames", current_frames)
    try:
        watchdog.capture_stacks()
        first_done.set()
        second.join(10)
    finally:
        monkeypatch.undo()
        first_done.set()
    after = sys.getswitchinterval()
    sys.setswitchinterval(before)  # whatever happened, not for the tests that follow
    assert calls == ["first"] and not second.is_alive()
    assert after == before
