"""pytest plugin for the stress/grade bundle self-tests: a failure bundle per failing test.

Loaded with ``-p fake_bundle`` (its folder on PYTHONPATH).  It writes what the
harness's failure bundle contract says (a folder with failure.txt, rerun.txt,
meta.json with the failing check, timeline.html, debug.log, env.json; its path in
the report's user property ``raftlab_bundle``) under ``RAFTLAB_BUNDLE_DIR`` -- but
only when the harness did not already write one, so the same tests run against the
real bundles once the harness writes them.  In either bundle (the harness's or
this one), ``RAFTLAB_TEST_BUNDLE_LOG_BYTES`` makes debug.log that big (to test the
size bound) and ``RAFTLAB_TEST_BUNDLE_EVIL=1`` adds a hidden file that must not
travel.  Test-only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

CHECK = "fake_check"


@pytest.hookimpl(hookwrapper=True, tryfirst=True)  # outermost: after the harness
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    props = dict(item.user_properties)
    if "raftlab_bundle" in props:  # the harness wrote the real one
        _hostile(Path(props["raftlab_bundle"]))
        return
    seed = props.get("seed", 0)
    name = item.name.split("[", 1)[0]
    base = Path(os.environ.get("RAFTLAB_BUNDLE_DIR") or ".raftlab/failures")
    folder = base / f"{name}-seed{seed}"
    n = 1
    while folder.exists():
        n += 1
        folder = base / f"{name}-seed{seed}-{n}"
    folder.mkdir(parents=True)
    message = str(getattr(report.longrepr, "reprcrash", None) and report.longrepr.reprcrash.message)
    (folder / "failure.txt").write_text(message + "\n")
    (folder / "rerun.txt").write_text(f"raftlab test {name} --seed {seed}\n")
    (folder / "meta.json").write_text(json.dumps(
        {"test": item.nodeid, "seed": seed, "mode": "sim", "verdict": "failed", "check": CHECK,
         "artifact": props.get("raftlab_artifact")}))
    (folder / "timeline.html").write_text("<html><body id='timeline'>fake</body></html>\n")
    (folder / "env.json").write_text(json.dumps({"fake": True}))
    (folder / "debug.log").write_text("000001 TEST -- a debug line\n")
    _hostile(folder)
    item.user_properties.append(("raftlab_bundle", str(folder.resolve())))
    report.user_properties = list(item.user_properties)


def _hostile(folder: Path) -> None:
    size = os.environ.get("RAFTLAB_TEST_BUNDLE_LOG_BYTES")
    if size:
        line = "000001 TEST -- a debug line\n"
        (folder / "debug.log").write_text(line * (int(size) // len(line) + 1) + "the end\n")
    if os.environ.get("RAFTLAB_TEST_BUNDLE_EVIL"):
        (folder / ".hidden").write_text("secret\n")
