"""The fixed cost of a test process: what a plain run imports, and what it leaves for later.

Every graded pytest process imports the harness plugin, so whatever it imports at
start is paid by every run, passing or not (issue 19: about 0.3 s of CPU per process
before the first test, of which the raftlab part is compiling and running its modules;
``PYTHONDONTWRITEBYTECODE=1`` machines compile them on every run).  Machinery that only
some runs need is imported on first use: the isolated mode's peer side (``--isolate``)
and the failure bundle (a failing test).  These tests pin that down, and check that
the lazy paths still work where they are needed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Imported only by the runs that use them (see the module docstring).
LAZY = (
    "labtests.isolation.proxy",  # --isolate: a peer's proxy
    "labtests.isolation.procs",
    "labtests.isolation.wire",
    "labtests.timeline.bundle",  # a failing test's bundle
    "labtests.timeline.html",
)


def _modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    script = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_the_plugin_and_the_harness_leave_isolation_and_bundles_unimported() -> None:
    loaded = _modules_after("import pytest, labtests.plugin, labtests.context, "
                            "labtests.sim.pytest_plugin")
    assert "labtests.config" in loaded  # the harness itself is there
    assert "labtests.isolation" in loaded  # for isinstance checks: the launcher alone
    early = sorted(set(LAZY) & loaded)
    assert not early, f"imported at start by every pytest process: {early}"


def test_a_collection_of_the_graded_tests_imports_none_of_them(tmp_path: Path) -> None:
    """What ``pytest --co`` of a part loads (the fixed cost of every graded run)."""
    loaded = _modules_after(textwrap.dedent("""
        import pytest
        rc = pytest.main(["-q", "-p", "no:cacheprovider", "--co", "--pyargs", "labtests",
                          "-m", "part2a"])
        assert rc == 0, rc
    """))
    assert "labtests.test_2a" in loaded
    early = sorted(set(LAZY) & loaded)
    assert not early, f"imported by a collection: {early}"


def test_the_lazy_names_resolve_to_the_real_objects() -> None:
    """``labtests.isolation.PeerProxy`` still works (module ``__getattr__``), unknown
    names still raise AttributeError, and the launcher's methods find their modules."""
    import labtests.isolation as isolation
    from labtests.isolation import launcher, proxy

    assert isolation.PeerProxy is proxy.PeerProxy
    try:
        isolation.NoSuchThing  # noqa: B018 - the attribute access is the test
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("an unknown attribute of labtests.isolation did not raise")
    assert isolation.IsolatedImplementation is launcher.IsolatedImplementation


def test_the_raftlab_test_command_leaves_pytest_to_its_child() -> None:
    """``raftlab test``'s own process only follows a child pytest: it must not import
    pytest itself (about 0.2 s of CPU and 15 MB on every invocation)."""
    loaded = _modules_after("import tools.cli, tools.test_command, tools.test_run.follow")
    assert "tools.test_run.follow" in loaded
    assert "tools.test_run.events" not in loaded  # the child's plugin, and pytest with it
    assert not {"pytest", "_pytest"} & loaded, "raftlab test's parent imported pytest"
    # Nor the harness, the network, the Raft or the isolation launcher (about 0.08 s of
    # CPU): it prints the lab's lines from the child's events, it runs no test.
    harness = {"labtests.config", "labrpc", "raft", "labtests.isolation.launcher"} & loaded
    assert not harness, f"raftlab test's parent imported the harness: {sorted(harness)}"
