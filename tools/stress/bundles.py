"""Failure bundles on the move: from the test process to a stress or grade report folder.

The harness writes a *bundle* folder for every failing graded test (failure.txt,
rerun.txt, meta.json, events.jsonl, timeline.html, debug.log, env.json) and names
it in the report's user property ``raftlab_bundle``.  That folder is on the host
that ran the test -- a scratch folder of a Dask worker, or a grading run's private
folder that is removed afterwards -- so the stress plugin *packs* it into the run's
event (plain JSON, like everything else a backend sends back) and the client
*unpacks* it into its own output folder.

Bounded both ways, because the test process may run hostile code: only plain
file names (no folders, no ``..``), text only, at most :data:`MAX_FILE_BYTES`
per file and :data:`MAX_BUNDLE_BYTES` in all; a log that does not fit keeps its
last part, any other file that does not fit is left out, and ``CUT.txt`` in the
unpacked bundle says what was cut.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

BUNDLE_KEY = "raftlab_bundle"  # the harness's user property: the bundle folder's path
PACKED_KEY = "raftlab_bundle_packed"  # the stress plugin's: the packed bundle
CHECK_KEY = "raftlab_failed_check"  # the stress plugin's: the check meta.json names
MAX_FILE_BYTES = 2_500_000
MAX_BUNDLE_BYTES = 4_000_000
CUT_FILE = "CUT.txt"
# Small files first (they say what happened), the big ones after.
ORDER = ("failure.txt", "rerun.txt", "meta.json", "env.json", "timeline.html",
         "events.jsonl", "debug.log")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_TAIL_KEPT = (".log", ".txt")


def safe_name(name: str) -> bool:
    """A plain file name: no folder, no ``..``, no hidden file, nothing odd."""
    return bool(_SAFE_NAME.match(name)) and ".." not in name


def _read_text(path: Path, limit: int) -> tuple[str, int]:
    """Up to ``limit`` bytes of ``path`` as text (the last ones for a log); and its size."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        if size > limit and path.suffix in _TAIL_KEPT:
            fh.seek(size - limit)
        data = fh.read(limit)
    return data.decode("utf-8", errors="replace"), size


def pack(folder: str | Path, max_bytes: int = MAX_BUNDLE_BYTES,
         max_file: int = MAX_FILE_BYTES) -> dict[str, Any] | None:
    """The bundle in ``folder`` as plain data ``{"name", "files", "cut"}``; None if absent."""
    root = Path(folder)
    if not root.is_dir():
        return None
    names = sorted((p.name for p in root.iterdir() if p.is_file() and not p.is_symlink()),
                   key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    files: dict[str, str] = {}
    cut: list[str] = []
    budget = max_bytes
    for name in names:
        if not safe_name(name) or name == CUT_FILE:
            cut.append(f"{name!r}: left out (not a plain file name)")
            continue
        path = root / name
        limit = min(max_file, budget)
        try:
            size = path.stat().st_size
            if size > limit and path.suffix not in _TAIL_KEPT:
                cut.append(f"{name}: left out ({size} bytes; {limit} bytes left of the "
                           f"bundle's {max_bytes})")
                continue
            text, size = _read_text(path, limit)
        except OSError as exc:
            cut.append(f"{name}: could not be read ({exc})")
            continue
        if size > limit:
            cut.append(f"{name}: only its last {limit} of {size} bytes kept")
        files[name] = text
        budget -= min(size, limit)
    return {"name": root.name, "files": files, "cut": cut}


def valid(packed: Any) -> bool:
    """Whether ``packed`` looks like :func:`pack`'s output (it crossed a process boundary)."""
    return (isinstance(packed, dict) and isinstance(packed.get("files"), dict)
            and all(isinstance(k, str) and isinstance(v, str)
                    for k, v in packed["files"].items())
            and isinstance(packed.get("cut", []), list))


def meta(packed: Any) -> dict[str, Any]:
    """The bundle's meta.json (test, seed, verdict, check...), or {} if absent or bad."""
    if not valid(packed):
        return {}
    try:
        data = json.loads(packed["files"].get("meta.json") or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def unpack(packed: Any, dest: Path, max_bytes: int = MAX_BUNDLE_BYTES) -> Path | None:
    """Write a packed bundle into the new folder ``dest``; None if ``packed`` is not one.

    Checks names and sizes again: the data came from a process that ran the code
    under test.
    """
    if not valid(packed):
        return None
    dest.mkdir(parents=True, exist_ok=False)
    cut = [str(c) for c in packed.get("cut", [])][:50]
    budget = max_bytes
    for name, text in packed["files"].items():
        data = text.encode("utf-8")
        if not safe_name(name) or name == CUT_FILE:
            cut.append(f"{name[:100]!r}: refused (not a plain file name)")
            continue
        if len(data) > budget:
            cut.append(f"{name}: refused ({len(data)} bytes over the bundle's bound)")
            continue
        (dest / name).write_bytes(data)
        budget -= len(data)
    if cut:
        (dest / CUT_FILE).write_text("\n".join(cut) + "\n", encoding="utf-8")
    return dest
