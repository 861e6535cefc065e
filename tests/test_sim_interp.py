"""The simulation engine's interpreter details: known versions, probes, and one place.

If ``test_this_python_is_one_the_engine_knows`` fails, the engine has not been
checked on this interpreter: its message says what to look at and where.
"""

from __future__ import annotations

import ast
import queue
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("greenlet")

from labtests.sim import UnsupportedInterpreter, interp, run_in_simulation  # noqa: E402
from labtests.sim.scheduler import FIRST_FAKE_IDENT  # noqa: E402

SIM_DIR = Path(interp.__file__).parent


def test_this_python_is_one_the_engine_knows():
    version = ".".join(map(str, interp.VERSION))
    assert interp.VERSION in interp.KNOWN_VERSIONS, (
        f"Python {version} is not in KNOWN_VERSIONS of labtests/sim/interp.py. Check each "
        "detail its docstring lists on this version (Thread's private fields in "
        "mark_started/mark_stopped, the clock aliases threading._time and queue.time, "
        "_threading_local, sys._getframe), update that module, run tests/test_sim*.py, "
        "then add the version to KNOWN_VERSIONS (and to .ci/pythons and setup.cfg)."
    )


def test_every_interpreter_assumption_holds_here():
    assert interp.problems() == []


def test_simulated_threads_read_as_ended_to_the_real_methods_after_the_run():
    threads: list[threading.Thread] = []

    def body():
        done = threading.Thread(target=time.sleep, args=(1,), name="done-in-time")
        done.start()
        threads.append(done)
        done.join()
        stuck = threading.Thread(target=threading.Event().wait, name="killed-at-end", daemon=True)
        stuck.start()  # still blocked when the run ends: the engine kills it
        threads.append(stuck)
        time.sleep(0.5)

    run_in_simulation(body, 1)
    for t in threads:  # threading's own is_alive/join/repr are back in place now
        assert not t.is_alive(), t
        t.join()
        t.join(0.1)
        assert "stopped" in repr(t)
        assert t.ident is not None and t.ident >= FIRST_FAKE_IDENT


def test_the_engine_refuses_an_interpreter_that_breaks_an_assumption(monkeypatch):
    monkeypatch.setattr(interp, "_checked", None)  # probe again; restored afterwards
    monkeypatch.setattr(queue, "time", lambda: 0.0)  # as if queue read the clock differently
    with pytest.raises(UnsupportedInterpreter) as info:
        run_in_simulation(lambda: None, 1)
    message = str(info.value)
    assert "queue.time is not time.monotonic" in message
    assert "update labtests/sim/interp.py" in message


# Interpreter details: attributes of stdlib objects that no documentation promises.
_PRIVATE_THREAD_FIELDS = {
    "_started", "_ident", "_native_id", "_tstate_lock", "_is_stopped", "_handle",
    "_invoke_excepthook", "_initialized", "_bootstrap", "_bootstrap_inner", "_target",
    "_args", "_kwargs", "_daemonic", "_stop", "_wait_for_tstate_lock",
}
_PRIVATE_MODULES = {"_thread", "_threading_local"}
_STDLIB_NAMES = {"threading", "_threading", "queue", "_queue", "sys", "time", "_time_mod"}


def _details(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""]
            found += [(node.lineno, f"imports {n}") for n in names if n in _PRIVATE_MODULES]
        elif isinstance(node, ast.Attribute):
            private = node.attr.startswith("_") and not node.attr.startswith("__")
            on_stdlib = isinstance(node.value, ast.Name) and node.value.id in _STDLIB_NAMES
            if (private and on_stdlib) or node.attr in _PRIVATE_THREAD_FIELDS:
                found.append((node.lineno, f"uses .{node.attr}"))
    return found


def test_no_engine_module_but_interp_touches_an_interpreter_detail():
    offenders = []
    for path in sorted(SIM_DIR.glob("*.py")):
        if path.name != "interp.py":
            tree = ast.parse(path.read_text(), str(path))
            offenders += [f"{path.name}:{line}: {what}" for line, what in _details(tree)]
    assert offenders == [], "move these into labtests/sim/interp.py:\n" + "\n".join(offenders)


def test_the_detail_scan_sees_what_interp_does():
    """The scan above is not vacuous: run on interp.py, it finds the details kept there."""
    found = {what for _, what in _details(ast.parse((SIM_DIR / "interp.py").read_text()))}
    assert {"uses ._ident", "uses ._started", "uses ._getframe", "imports _threading_local",
            "imports _thread"} <= found


def test_the_interpreters_own_excepthook_reports_a_simulated_threads_exception(
        monkeypatch, capsys):
    # threading.__excepthook__ is the C hook, which accepts only a real ExceptHookArgs.
    monkeypatch.setattr(threading, "excepthook", threading.__excepthook__)

    def body():
        t = threading.Thread(target=lambda: 1 / 0, name="crasher")
        t.start()
        t.join()

    run_in_simulation(body, 2)
    err = capsys.readouterr().err
    assert "Exception in thread crasher" in err and "ZeroDivisionError" in err
