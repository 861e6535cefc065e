"""What several benchmark scripts share: timing a child process, its bytecode, the Go lab.

The scripts run as ``python benchmarks/<name>.py``, so this folder is on
``sys.path`` and they import this module by its plain name.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def run_child(cmd: list[str], env: dict[str, str],
              cwd: Path | None = None) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """Run ``cmd`` to completion; return (its result, wall seconds, CPU seconds).

    CPU is user + system of the children reaped meanwhile (``RUSAGE_CHILDREN``), so
    it counts the whole process tree of ``cmd`` (pytest's workers included) and
    nothing else, as long as the caller runs one child at a time.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return done, wall, cpu


def go_binary(lab: Path) -> Path | None:
    """Compile the Go lab's test binary once (``go test -c``); None without a Go toolchain."""
    if shutil.which("go") is None:
        return None
    binary = Path(tempfile.mkdtemp(prefix="go-raft-")) / "raft.test"
    subprocess.run(["go", "test", "-c", "-o", str(binary)], cwd=lab, check=True)
    return binary


# -- bytecode: what a child process finds compiled ---------------------------------------

BYTECODE_MODE = (
    "cached: each tree's children write and read bytecode in a fresh PYTHONPYCACHEPREFIX "
    "of their own (PYTHONDONTWRITEBYTECODE dropped), filled by one unmeasured warm-up "
    "(compileall of the tree, then a pytest collection that imports every labrpc, "
    "labtests and raft module the way pytest imports it, assertion rewriting included "
    "where it applies); so every measured run is a second run of an installed lab, for "
    "every tree alike")
AS_IS_MODE = ("as-is: the environment's PYTHONDONTWRITEBYTECODE and each tree's own "
              "__pycache__ (the trees may not start alike)")


def bytecode_env(env: dict[str, str], cache: Path) -> dict[str, str]:
    """``env`` for children that keep their bytecode in ``cache`` (see :data:`BYTECODE_MODE`).

    Why: with ``PYTHONDONTWRITEBYTECODE=1`` (set on the lab machine) every process
    recompiles whatever has no bytecode yet -- and pytest's assertion rewriting keeps
    its own ``*-pytest-*.pyc`` beside the plain ones -- so a tree that happens to have
    a cache (the checkout) and one that has none (a fresh worktree of the baseline)
    paid different start-up costs (0.2 s of CPU per process in session 8).  A cache
    folder per tree, empty at first, gives every tree the same start.
    """
    out = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out["PYTHONPYCACHEPREFIX"] = str(cache)
    return out


def count_pycs(cache: Path) -> int:
    """How many bytecode files ``cache`` holds (plain and pytest-rewritten)."""
    return sum(1 for _ in cache.rglob("*.pyc")) if cache.exists() else 0


def warm_bytecode(tree: Path, env: dict[str, str], cwd: Path | None = None,
                  plugins: tuple[str, ...] = ()) -> dict[str, int]:
    """Fill the bytecode cache of ``env`` (from :func:`bytecode_env`) for ``tree``.

    ``env`` must put ``tree``'s packages first on ``PYTHONPATH`` as the measured runs
    do, and ``cwd`` must be theirs: pytest decides which packages it rewrites from the
    distributions it finds on ``sys.path``.  ``plugins``: the ``-p`` plugins of the
    measured runs (they and what they import are compiled too).  Returns the pyc
    counts after each step.
    """
    cache = Path(env["PYTHONPYCACHEPREFIX"])
    packages = [str(tree / p) for p in ("labrpc", "labtests", "raft", "tools")
                if (tree / p).is_dir()]
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", *packages],
                   env=env, cwd=cwd or tree, check=True, capture_output=True)
    compiled = count_pycs(cache)
    here = str(Path(__file__).resolve().parent)
    warm_env = dict(env, PYTHONPATH=os.pathsep.join(
        [*filter(None, env.get("PYTHONPATH", "").split(os.pathsep)), here]))
    done = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "labtests", "-q",
                           "--collect-only", "-p", "no:cacheprovider",
                           "-p", "bytecode_warmup_plugin",
                           *[a for p in plugins for a in ("-p", p)]],
                          env=warm_env, cwd=cwd or tree, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"bytecode warm-up of {tree} failed (exit {done.returncode}):\n"
                           f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return {"after_compileall": compiled, "after_warm_up": count_pycs(cache)}


def add_bytecode_option(parser: argparse.ArgumentParser) -> None:
    """``--bytecode cached|as-is`` (see :data:`BYTECODE_MODE`, :data:`AS_IS_MODE`)."""
    parser.add_argument("--bytecode", choices=("cached", "as-is"), default="cached",
                        help="cached (default): every tree's bytecode compiled by a warm-up "
                             "first; as-is: the environment and the trees' own caches")


def prepare_trees(mode: str, trees: dict[str, Path],
                  tree_env: Callable[[Path, Path | None], dict[str, str]], cache_root: Path,
                  plugins: tuple[str, ...] = ()) -> tuple[dict[str, Path | None], dict]:
    """The bytecode cache of each tree (None: as-is) and, when cached, its warm-up.

    ``tree_env(tree, cache)`` is the measured children's environment; the warm-up runs
    in each tree (its cwd) with it.  Prints the mode.  Returns the caches by tree name
    and the JSON record of the mode (``mode``, ``description``, ``warm_up_pycs``).
    """
    caches: dict[str, Path | None] = dict.fromkeys(trees)
    warm: dict[str, dict[str, int]] = {}
    if mode == "cached":
        for name, tree in trees.items():
            caches[name] = cache_root / name
            warm[name] = warm_bytecode(tree, tree_env(tree, caches[name]), plugins=plugins)
        print(f"bytecode: {BYTECODE_MODE}; pyc files after warm-up: "
              + ", ".join(f"{n} {w['after_warm_up']}" for n, w in warm.items()), flush=True)
    else:
        print(f"bytecode: {AS_IS_MODE}", flush=True)
    description = BYTECODE_MODE if mode == "cached" else AS_IS_MODE
    return caches, {"mode": mode, "description": description, "warm_up_pycs": warm}
