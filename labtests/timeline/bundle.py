"""The failure bundle: one folder per failing graded test, to look at instead of read.

Written by the pytest plugin when a graded test fails (real time, ``--sim``,
``--isolate``); a passing test writes nothing.  The folder is
``<root>/<test>-seed<S>[-N]`` where ``<root>`` is ``--raftlab-bundle-dir``
(``RAFTLAB_BUNDLE_DIR``), by default ``.raftlab/failures`` under the current
directory, and ``-N`` keeps a second failure of the same test and seed apart.
It holds:

* ``failure.txt``: the lab's failure lines (as the run printed them) and the full message;
* ``rerun.txt``: the one command that reruns it (:mod:`labtests.rerun`);
* ``meta.json``: test, seed, mode, verdict, the failing tester check, the
  artifact, the reason and the timer-lag summary -- the fields ``raftlab stress``
  and ``raftlab grade`` group failures by (keep the names);
* ``events.jsonl``: the recorded events (:mod:`labtests.timeline.recorder`);
* ``timeline.html``: the self-contained view of those events;
* ``debug.log``: the debug lines, when the debug log was on;
* ``env.json``: Python and raftlab versions, platform, cores, load.

Every file is bounded (the recorder's caps, :data:`MAX_DEBUG_LOG`, the
renderer's budget): a bundle is tens or hundreds of kilobytes for a graded
test, and at most about 16 MB (130 000 events of ~70 bytes, 4 MB of debug log,
a 2 MB page).
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from labtests.options import HarnessOptions
from labtests.rerun import rerun_command
from labtests.timeline import html
from labtests.timeline.recorder import dump_jsonl, header

BUNDLE_KEY = "raftlab_bundle"  # the report's user property: the bundle's folder
DEFAULT_ROOT = os.path.join(".raftlab", "failures")
MAX_DEBUG_LOG = 4_000_000  # characters of debug.log (the end is kept)

# Failures that happen outside a tester check, by the start of their message.
_CHECK_BY_MESSAGE = (
    ("test took longer than", "time_limit"),
    ("threads still running after cleanup", "cleanup"),
    ("cleanup ", "cleanup"),
    ("deadlock", "deadlock"),
    ("virtual time limit", "time_limit"),
    ("wall-clock limit", "time_limit"),
    ("uncaught exception in thread", "raft_thread"),
    ("RPC ", "rpc"),
)


def mode_of(options: HarnessOptions) -> str:
    return "sim" if options.sim else "isolate" if options.isolate else "real"


def check_of(message: str, recorded: str | None) -> str | None:
    """The tester check the failure belongs to: the recorder's, else from the message."""
    if recorded:
        return recorded
    for prefix, check in _CHECK_BY_MESSAGE:
        if message.startswith(prefix):
            return check
    return None


def bundle_root(options: HarnessOptions) -> Path:
    return Path(options.bundle_dir or DEFAULT_ROOT).resolve()


def new_folder(root: Path, test: str, seed: int) -> Path:
    """A new folder ``<test>-seed<S>[-N]`` (safe from parallel workers: mkdir is atomic)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", test)[:120] + f"-seed{seed}"
    root.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        folder = root / (stem if n == 1 else f"{stem}-{n}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise OSError(f"{root}: too many bundles named {stem}-N")


def environment(impl: str) -> dict[str, Any]:
    try:
        version = metadata.version("raftlab")
    except metadata.PackageNotFoundError:
        version = "unknown"
    try:
        load = list(os.getloadavg())
    except OSError:
        load = []
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "raftlab": version,
        # os.uname, not platform.platform(): that may start a subprocess, which the
        # simulation refuses (the bundle of a --sim failure is written inside it).
        "platform": " ".join(os.uname()) if hasattr(os, "uname") else sys.platform,
        "cores": os.cpu_count(),
        "loadavg": load,
        "raft_impl": impl,
    }


def write_bundle(
    *,
    test: str,
    nodeid: str,
    seed: int,
    options: HarnessOptions,
    configs: list[Any],
    message: str,
    lab_lines: list[str],
    verdict: str,
    artifact: str | None,
    reason: str,
    timer_lag: dict[str, Any],
    impl: str,
    description: str | None,
    debug_lines: list[str] | None,
) -> Path:
    """Write one bundle (module docstring) and return its folder."""
    folder = new_folder(bundle_root(options), test, seed)
    rec = configs[0].timeline if configs else None
    if rec is not None and rec.failure_message is None:
        # Failed outside Config.fail (a timeout, a leftover thread, the simulation):
        # mark it now, in the check still open if the test was inside one.
        rec.failure(message, check=rec.current_check() or check_of(message, None))
    check = check_of(message, rec.failed_check if rec is not None else None)
    events = rec.events() if rec is not None else []
    n = configs[0].n if configs else 0
    rerun = rerun_command(test, seed, options)
    meta = {
        "test": nodeid, "name": test, "seed": seed, "mode": mode_of(options),
        "verdict": verdict, "check": check, "artifact": artifact, "reason": reason,
        "description": description, "rerun": rerun, "timer_lag": timer_lag,
        "events": len(events), "events_cut": rec.cut if rec is not None else 0,
    }
    head = header(n, test=test, seed=seed, mode=meta["mode"], description=description,
                  check=check, reason=reason)
    _write(folder / "failure.txt", "\n".join(lab_lines) + "\n\n" + message.rstrip() + "\n")
    _write(folder / "rerun.txt", rerun + "\n")
    _write(folder / "meta.json", json.dumps(meta, indent=2, default=str) + "\n")
    _write(folder / "events.jsonl", dump_jsonl(head, events))
    _write(folder / "timeline.html", html.render(head, events))
    _write(folder / "env.json", json.dumps(environment(impl), indent=2) + "\n")
    if debug_lines:
        text = "\n".join(debug_lines) + "\n"
        if len(text) > MAX_DEBUG_LOG:
            text = f"(first {len(text) - MAX_DEBUG_LOG} characters cut)\n" + text[-MAX_DEBUG_LOG:]
        _write(folder / "debug.log", text)
    return folder


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
