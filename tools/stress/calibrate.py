"""``raftlab stress --workers auto``: the most parallel runs this machine keeps on time.

The tests are timing-based, so the useful worker count is not "the cores" (the
runs mostly sleep: far more fit) nor "as many as asked" (past some count timers
fire late and correct Rafts fail).  What decides is the timer lag the runs
measure (:mod:`labtests.timing`), so the calibration measures exactly that:

1. start N *probe* processes at once, each running one real graded test
   (``test_initial_election_2a``: three peers electing a leader, about 3.5 s)
   with the implementation under test, through the harness in real time, and
   reporting the timer lag it measured;
2. ramp N up from the core count, doubling, to at most the number of planned
   runs (and :data:`MAX_WORKERS`); stop at the first N where a probe's lag
   reached the inconclusive bound (:data:`labtests.overload.LAG_BOUND_MS`)
   or a probe gave no result (a probe whose test fails is reported but does not
   count: a Raft that fails on a quiet machine too must not drive the count down);
3. try once more halfway between the last count that held and the first that
   did not, and choose the largest count that held.

The bound itself is the limit, with no further margin, because the probes are
harsher than a stress run in one way and milder in another: they start together
(each waits for a "go" line on stdin once imported), so every cluster elects
its first leader at the same moment, where a stress run's starts are
staggered; but a probe is short, and a stress run's longer, more varied tests
meet more spikes.  Other work on the machine during the calibration counts as
it would during the run: the count is for the machine as it is now.  A probe is ``python -m
tools.stress.calibrate IMPL SEED``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from labtests.overload import LAG_BOUND_MS

MAX_WORKERS = 256
PROBE_TEST = "test_initial_election_2a"
PROBE_TIMEOUT_S = 120.0
RESULT_PREFIX = "RAFTLAB-PROBE "


@dataclass
class Step:
    """One calibration step: ``workers`` probes at once and what they measured."""

    workers: int
    lags_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # tests that failed (reported only)
    missing: list[str] = field(default_factory=list)  # probes that gave no result
    seconds: float = 0.0

    @property
    def max_lag_ms(self) -> float:
        return max(self.lags_ms, default=0.0)

    def held(self, limit_ms: float) -> bool:
        """Lag decides, not the test's verdict: a Raft that fails on a quiet machine too
        must not drive the count down; a probe that gave no result (could not start,
        crashed) means the machine could not take that many."""
        return not self.missing and self.max_lag_ms < limit_ms

    def describe(self, limit_ms: float) -> str:
        verdict = "ok" if self.held(limit_ms) else "too many"
        fails = f", {len(self.failures)} failed ({self.failures[0]})" if self.failures else ""
        if self.missing:
            fails += f", {len(self.missing)} gave no result ({self.missing[0]})"
        return (f"{self.workers:4d} concurrent probes: worst timer lag {self.max_lag_ms:.0f} ms"
                f"{fails} in {self.seconds:.1f} s -> {verdict}")


@dataclass
class Calibration:
    workers: int
    steps: list[Step]
    limit_ms: float
    reason: str


def probe_command(impl: str | None, seed: int) -> list[str]:
    return [sys.executable, "-m", "tools.stress.calibrate", impl or "-", str(seed)]


def run_step(workers: int, impl: str | None, seed: int) -> Step:
    """``workers`` probes at once; each reports its lag (or why it failed)."""
    step = Step(workers)
    procs = [subprocess.Popen(probe_command(impl, seed + i), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(workers)]
    try:
        for proc in procs:  # each says "ready" once imported: then all start together
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != "ready":
                step.missing.append(f"probe did not start: {line.strip() or 'no output'}")
        t0 = time.monotonic()
        for proc in procs:
            if proc.poll() is None and proc.stdin is not None:
                try:
                    proc.stdin.write("go\n")
                    proc.stdin.close()
                except BrokenPipeError:
                    pass
                proc.stdin = None  # closed: communicate() must not flush it
        for proc in procs:
            out, _ = proc.communicate(timeout=PROBE_TIMEOUT_S)
            results = [ln[len(RESULT_PREFIX):] for ln in out.splitlines()
                       if ln.startswith(RESULT_PREFIX)]
            if not results:
                step.missing.append(f"probe exited {proc.returncode} without a result")
                continue
            data = json.loads(results[-1])
            step.lags_ms.append(float(data["lag_ms"]))
            if not data["ok"]:
                step.failures.append(str(data["message"]).splitlines()[0][:200])
        step.seconds = time.monotonic() - t0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return step


def calibrate(cores: int, max_workers: int, impl: str | None, seed: int = 1,
              step_fn: Callable[[int, str | None, int], Step] = run_step,
              on_step: Callable[[Step], None] = lambda step: None) -> Calibration:
    """Ramp the probe count (see the module doc); ``step_fn`` is a seam for tests."""
    limit = LAG_BOUND_MS
    ceiling = max(1, min(max_workers, MAX_WORKERS))
    steps: list[Step] = []
    good, bad = 0, None
    n = max(1, min(cores, ceiling))
    while True:
        step = step_fn(n, impl, seed)
        steps.append(step)
        on_step(step)
        if not step.held(limit):
            bad = n
            break
        good = n
        if n >= ceiling:
            break
        n = min(ceiling, n * 2)
    if bad is not None and good and bad - good > 1:
        mid = (good + bad) // 2
        step = step_fn(mid, impl, seed)
        steps.append(step)
        on_step(step)
        if step.held(limit):
            good = mid
        else:
            bad = mid
    if good == 0:
        return Calibration(1, steps, limit,
                           f"even {steps[0].workers} probe(s) at once went past "
                           f"{limit:.0f} ms of timer lag or failed: 1 worker")
    if bad is None:
        why = (f"{good} concurrent probes kept timer lag below the {limit:.0f} ms "
               f"inconclusive bound; no more are needed for {max_workers} run(s)"
               if good >= max_workers else
               f"{good} concurrent probes kept timer lag below {limit:.0f} ms; "
               f"{MAX_WORKERS} is the most tried")
    else:
        why = (f"{good} concurrent probes kept timer lag below the {limit:.0f} ms "
               f"inconclusive bound; {bad} did not")
    return Calibration(good, steps, limit, why)


def _probe(impl: str | None, seed: int) -> int:
    """One probe: import, say ready, wait for go, run the test, print the lag as JSON."""
    from labtests import test_2a
    from labtests.context import TestContext
    from labtests.impl_loader import load

    implementation = load(impl)
    test = getattr(test_2a, PROBE_TEST)
    print("ready", flush=True)
    sys.stdin.readline()
    ctx = TestContext(PROBE_TEST, seed, implementation)
    ok, message = True, ""
    try:
        test(ctx.make_config)
    except BaseException as exc:  # the verdict is reported, not raised
        ok, message = False, str(exc)
        ctx.finish(body_failed=True)
    else:
        try:
            ctx.finish(body_failed=False)
        except BaseException as exc:
            ok, message = False, str(exc)
    lag = ctx.timer_lag
    print(RESULT_PREFIX + json.dumps({
        "ok": ok, "message": message,
        "lag_ms": lag.max_ms if lag is not None else 0.0,
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_probe(None if sys.argv[1] == "-" else sys.argv[1], int(sys.argv[2])))
