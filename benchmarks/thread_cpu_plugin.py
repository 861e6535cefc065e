"""A pytest plugin that says which threads used the CPU: ``-p benchmarks.thread_cpu_plugin``.

Why: cProfile sees only the main thread, while most of a graded test's CPU is
spent in Raft, network and applier threads.  This wraps ``threading.Thread.run``
to read ``time.thread_time()`` when each thread starts and ends, and sums the
CPU per thread *kind* (the name with its digits removed, e.g. ``raft-S-rpc``).
The main thread's share is the process's CPU minus every other thread's.  At the
end it prints one table and, with ``RAFTLAB_THREAD_CPU_JSON=FILE``, writes it as
JSON.  It also counts thread creations and the process's context switches.
With ``RAFTLAB_THREAD_PROFILE=FILE`` every thread but the main one also runs
under cProfile (slow: for *where*, not *how much*) and the merged pstats go to FILE.
Each thread's voluntary context switches (blocked, then woken) come from
``/proc/thread-self/status`` when it ends.  Cost: two clock reads and one small
file read per thread, nothing per wake-up.
"""

from __future__ import annotations

import cProfile
import json
import os
import pstats
import re
import resource
import sys
import threading
import time
from collections import defaultdict

_cpu: dict[str, float] = defaultdict(float)
_count: dict[str, int] = defaultdict(int)
_wakeups: dict[str, int] = defaultdict(int)
_alive: dict[str, int] = defaultdict(int)  # threads of each kind running now
_peak: dict[str, int] = defaultdict(int)  # ... and the most at any one time
_peak_all = [0, 0]  # [threads alive now (all kinds), the most at any one time]
_lock = threading.Lock()
_orig_run = threading.Thread.run
_DIGITS = re.compile(r"\d+")


def _kind(name: str) -> str:
    return _DIGITS.sub("", name)


def _switches() -> int:
    """This thread's voluntary context switches so far (each is one block and wake-up)."""
    try:
        with open("/proc/thread-self/status", encoding="ascii") as fh:
            for text in fh:
                if text.startswith("voluntary_ctxt_switches"):
                    return int(text.split()[1])
    except OSError:
        pass
    return 0


_PROFILE_FILE = os.environ.get("RAFTLAB_THREAD_PROFILE")
_profiles: list[cProfile.Profile] = []


def _run(self: threading.Thread) -> None:
    t0 = time.thread_time()
    prof = cProfile.Profile() if _PROFILE_FILE else None
    kind = _kind(self.name)
    with _lock:
        _alive[kind] += 1
        _peak[kind] = max(_peak[kind], _alive[kind])
        _peak_all[0] += 1
        _peak_all[1] = max(_peak_all[1], _peak_all[0])
    try:
        if prof is not None:
            prof.enable()
        _orig_run(self)
    finally:
        if prof is not None:
            prof.disable()
            with _lock:
                _profiles.append(prof)
        used = time.thread_time() - t0
        woke = _switches()
        with _lock:
            _alive[kind] -= 1
            _peak_all[0] -= 1
            _wakeups[kind] += woke
            _cpu[kind] += used
            _count[kind] += 1


threading.Thread.run = _run  # type: ignore[method-assign]


_PACKAGES = ("labrpc", "labtests", "raft", "tools")


def _bytecode(config: object) -> dict:
    """How this process got its code: bytecode writing, cache folder, pytest's rewriting.

    Why: a module pytest rewrites for assertions is compiled from source unless its
    ``*-pytest-*.pyc`` is cached, so the marks (which packages are rewritten) and
    the cache decide part of every run's start-up cost (benchmarks/benchcommon.py).
    """
    hook = getattr(getattr(config, "pluginmanager", None), "rewrite_hook", None)
    rewritten = sorted(name for name, mod in list(sys.modules.items())
                       if name.split(".")[0] in _PACKAGES
                       and type(getattr(mod, "__loader__", None)).__name__
                       == "AssertionRewritingHook")
    return {"dont_write_bytecode": sys.dont_write_bytecode,
            "pycache_prefix": sys.pycache_prefix,
            "rewrite_marks": sorted(n for n in getattr(hook, "_must_rewrite", ())
                                    if n.split(".")[0] in _PACKAGES),
            "rewritten_modules": len(rewritten),
            "lab_modules": sum(1 for n in list(sys.modules) if n.split(".")[0] in _PACKAGES)}


def pytest_unconfigure(config: object) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    total = usage.ru_utime + usage.ru_stime
    with _lock:
        rows = sorted(_cpu.items(), key=lambda kv: -kv[1])
        threads = sum(_count.values())
    others = sum(c for _, c in rows)
    out = {
        "process_cpu_s": round(total, 3), "user_s": round(usage.ru_utime, 3),
        "system_s": round(usage.ru_stime, 3), "main_thread_s": round(total - others, 3),
        "threads_created": threads, "threads_peak": _peak_all[1] + 1,
        "voluntary_ctx": usage.ru_nvcsw,
        "involuntary_ctx": usage.ru_nivcsw, "max_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "labtests": getattr(sys.modules.get("labtests"), "__file__", ""),
        "bytecode": _bytecode(config),
        "by_kind": {k: {"cpu_s": round(c, 3), "threads": _count[k], "peak": _peak[k],
                        "wakeups": _wakeups[k]}
                    for k, c in rows},
    }
    print(f"\nthread CPU: process {total:.2f} s (user {usage.ru_utime:.2f}, system "
          f"{usage.ru_stime:.2f}), main thread {total - others:.2f} s, {threads} threads "
          f"created (at most {_peak_all[1] + 1} at once, main included), "
          f"{usage.ru_nvcsw} voluntary / {usage.ru_nivcsw} involuntary switches")
    for kind, cpu in rows[:15]:
        print(f"  {kind:<28} {cpu:7.3f} s  {_count[kind]:6d} threads "
              f"(peak {_peak[kind]:4d}) {_wakeups[kind]:8d} wake-ups")
    if _PROFILE_FILE and _profiles:
        stats = pstats.Stats(_profiles[0])
        for prof in _profiles[1:]:
            stats.add(prof)
        stats.dump_stats(_PROFILE_FILE)
    path = os.environ.get("RAFTLAB_THREAD_CPU_JSON")
    if path:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=2)
