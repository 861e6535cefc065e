"""The one ``jsonable`` both pytest plugins (stress's and raftlab test's events) filter with.

The events plugin is imported in ``raftlab test``'s child before the current folder
is on ``sys.path``, so a student's own ``tools`` package there must not take the
place of raftlab's: the shared helper has to be found in raftlab's package all the same.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import tools.stress.pytest_plugin as stress_plugin
import tools.test_run.events as events_plugin
from tools.jsonable import jsonable
from tools.test_run.follow import child_command


def test_both_plugins_use_the_one_definition():
    assert stress_plugin.jsonable is jsonable
    assert events_plugin.jsonable is jsonable
    assert not hasattr(stress_plugin, "_jsonable") and not hasattr(events_plugin, "_jsonable")


def test_what_is_kept_and_what_is_dropped():
    loop: list = []
    loop.append(loop)
    assert all(jsonable(v) for v in (1, 2.5, "x", None, [1, "a"], {"k": [True]}))
    assert not any(jsonable(v) for v in (object(), {1, 2}, b"bytes", loop, {"k": object()}))
    assert jsonable(float("nan"))  # json.dumps allows NaN by default: kept, as before


def test_a_students_tools_package_does_not_shadow_raftlabs(tmp_path: Path):
    """The child's events plugin still loads (and writes events) from a folder that has
    its own ``tools`` package, which would fail loudly if it were imported instead."""
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "__init__.py").write_text("raise ImportError('student tools')\n")
    (tmp_path / "tools" / "jsonable.py").write_text("raise ImportError('student jsonable')\n")
    (tmp_path / "test_props.py").write_text(textwrap.dedent("""
        def test_props(record_property):
            record_property("kept", [1, 2])
            record_property("dropped", object())
    """))
    out_file = tmp_path / "events.jsonl"
    env = {**os.environ, events_plugin.ENV_EVENTS: str(out_file)}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(child_command(["-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                                         "test_props.py"]),
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = out_file.read_text()
    assert '"props": [["kept", [1, 2]]]' in text
    assert "dropped" not in text
