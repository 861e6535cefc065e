"""The life of one graded test around its Config: seed, failure routing, cleanup.

Go's ``defer cfg.cleanup()`` runs inside the test function; here the plugin
calls :meth:`TestContext.finish` right after the test body (still inside the
test's call phase), so a helper-thread failure, the 120 s check or threads a
killed Raft left running fail the test itself, not its teardown.

The cleanup is bounded (:mod:`labtests.watchdog`): it runs in a thread of its
own, and if a ``kill()`` does not return within the deadline the test fails
with every thread's stack and the run goes on to the next test.
"""

from __future__ import annotations

import random
import threading
import time
import traceback
from typing import Any

from labtests import (
    batchsched,
    child_processes,
    cpupin,
    fork_watch,
    timeline,
    timerslack,
    timing,
    watchdog,
)
from labtests.config import Config, derive_seed
from labtests.failures import FailureChannel, HelperThreadExit, RaftTestFailure
from labtests.impl_loader import Implementation
from labtests.isolation import IsolatedImplementation
from labtests.options import HarnessOptions
from labtests.output import summarize_names
from labtests.timing import LagSummary, leak_grace_s
from labtests.verdicts import failure_reason
from raft import debuglog

# How long cleanup's threads get to end before being reported, on an idle machine;
# the wait grows with the timer lag measured during the test (labtests.timing).
THREAD_GRACE_S = 1.5


class TestContext:
    """Everything the harness sets up for one graded test, and undoes after it."""

    __test__ = False  # not a pytest test class

    def __init__(self, name: str, seed: int, impl: Implementation | IsolatedImplementation,
                 options: HarnessOptions | None = None) -> None:
        self.name = name
        self.seed = seed
        self.impl = impl
        self.options = options if options is not None else HarnessOptions()
        self.failures = FailureChannel()
        self.configs: list[Config] = []
        self.warnings: list[str] = []
        self.cpu_pin: cpupin.CpuPin | None = None  # the test's one CPU, if pinned
        if not self.options.sim:  # before any thread of the test starts: they inherit them
            timerslack.coalesce_timers()
            batchsched.run_as_batch()
            # Not under a simulation a caller activated (labtests.driver, the race
            # detector's runs) without saying so in the options: one thread runs at a time.
            # Isolated peers too: the tester's process is pinned, its peers are not.
            if not timing.simulated():
                self.cpu_pin = cpupin.pin_process()
        # Started before the baseline, so its thread is the harness's, not a leftover.
        self._lag = timing.start_sampler(
            sim=self.options.sim, on_new_max=self.cpu_pin.lag_seen if self.cpu_pin else None)
        self.timer_lag: LagSummary | None = None  # set when finish() ends
        self._baseline = {t.ident for t in threading.enumerate()}
        # This process's children before the test (isolated peers are the launcher's to
        # end: the Raft does not run in this process then).
        self._children = (None if isinstance(impl, IsolatedImplementation)
                          else child_processes.live_children())
        self._forks = (None if isinstance(impl, IsolatedImplementation)
                       else fork_watch.watch_forks())
        self._prev_hook = threading.excepthook
        self._finished = False
        # The stuck cleanup's stacks, when an earlier failure is the test's reason.
        self.cleanup_report: str | None = None
        # Who can show every thread's stack (the simulation, through a hook); set by the plugin.
        self.thread_report: watchdog.ThreadReport | None = None
        # The Raft under test draws from module-level random: seed it too.
        random.seed(derive_seed(seed, "global"))
        debuglog.reset_clock()
        debuglog.dlog("TEST", None, "=== %s (seed %d, impl %s)", name, seed, impl.spec)
        threading.excepthook = self._excepthook

    def _excepthook(self, args: threading.ExceptHookArgs) -> None:
        if args.exc_type is HelperThreadExit or args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        if args.thread is not None and args.thread.ident in watchdog.abandoned_idents():
            # A thread an earlier test left blocked: not this test's doing.
            self.warnings.append(f"thread {name!r}, left blocked by an earlier test, ended "
                                 f"with {args.exc_value!r}")
            return
        tb = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
        self.failures.record(f"uncaught exception in thread {name!r}: {args.exc_value!r}\n{tb}")

    def make_config(self, n: int, unreliable: bool, snapshot: bool) -> Config:
        """``make_config(t, n, unreliable, snapshot)`` of the lab."""
        if self.impl.error is not None:
            raise RaftTestFailure(self.impl.error)
        cfg = Config(n, unreliable, snapshot, impl=self.impl, seed=self.seed,
                     failures=self.failures)
        # Registered before any peer starts, so a make() that fails half-way is cleaned up.
        self.configs.append(cfg)
        cfg.start_peers()
        cfg.watch = timeline.start_watch(  # role/term samples for the failure timeline
            cfg, test=self.name, isolated=isinstance(self.impl, IsolatedImplementation),
            sample=not self.options.race)
        return cfg

    @property
    def description(self) -> str | None:
        """The first config's test description (``Test (2A): ...``), once begun."""
        return next((cfg.description for cfg in self.configs if cfg.description), None)

    @property
    def figures(self) -> dict[str, Any] | None:
        """The figures of the Passed line, once a config's ``end()`` has run."""
        return next((cfg.figures for cfg in self.configs if cfg.figures), None)

    @property
    def lab_warnings(self) -> list[str]:
        """The lab's own warnings (Go prints them before the Passed line)."""
        return [msg for cfg in self.configs for msg in cfg.warnings]

    def finish(self, body_failed: bool) -> None:
        """Clean up every config, check leftover threads, deliver recorded failures.

        Raises :class:`RaftTestFailure` if the body passed but something failed
        meanwhile (a helper thread, the time limit, a cleanup that did not end,
        leftover threads of the bundled Raft).
        """
        __tracebackhide__ = True  # the failure's message says it all; the harness's frames don't
        if self._finished:
            return
        self._finished = True
        try:
            base = watchdog.cleanup_deadline(self.options.timeout_s)
            # Like the leak check's grace: the bound grows with the machine's lag, so a
            # starved machine cannot make a correct kill() look stuck (a stuck one still is).
            cleanup = watchdog.run_bounded(self._cleanup_configs,
                                           lambda: leak_grace_s(base, self._lag),
                                           f"raftlab-cleanup-{self.name}", self.thread_report)
            interrupted = cleanup.interrupted
            if not cleanup.finished:
                # (called first: ``interrupted or ...`` would skip it when the wait
                # was interrupted -- the very case whose stacks must be reported)
                net_interrupted = self._cleanup_stuck(
                    cleanup, base, leak_grace_s(base, self._lag) - base)
                interrupted = interrupted or net_interrupted
            else:
                if cleanup.error is not None:
                    exc = cleanup.error
                    self.failures.record(
                        f"cleanup raised {exc!r}\n"
                        + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
                self._check_leftovers()
            self._check_child_processes()  # a stuck cleanup's test too: no process outlives it
        finally:
            if self._forks is not None:
                fork_watch.unwatch_forks(self._forks)
                self._report_forks(self._forks.forks)
            self._report_import_forks()
            threading.excepthook = self._prev_hook
            self.timer_lag = self._lag.stop()
            if self.cpu_pin is not None:
                self.cpu_pin.release()
            debuglog.dlog("TEST", None, "=== %s finished", self.name)
        if isinstance(interrupted, KeyboardInterrupt):
            raise interrupted  # the user stops the run: not a verdict on this test
        if not body_failed and self.failures.failed:
            raise RaftTestFailure(self.failures.first_message())

    def _cleanup_configs(self) -> None:
        for cfg in self.configs:
            try:
                cfg.cleanup()
            except (RaftTestFailure, HelperThreadExit):
                pass  # recorded in the channel; delivered by finish()

    def _cleanup_stuck(self, cleanup: watchdog.Bounded, deadline: float,
                       for_lag: float = 0.0) -> BaseException | None:
        """The cleanup did not end: fail the test with the stacks and leave it behind.

        Returns what interrupted the networks' own cleanup, if anything (a Ctrl-C
        then must still stop the run)."""
        if cleanup.interrupted is not None:
            why = (f"had not ended after {cleanup.elapsed_s:.1f} s when the wait was "
                   f"interrupted ({failure_reason(cleanup.interrupted)})")
        else:
            why = f"did not end within {deadline:g} s"
        headline = (
            f"cleanup {why}: a kill() that does not return (or a Raft thread it waits "
            "for) blocks it; the stacks below show where"
        )
        if cleanup.interrupted is None and for_lag >= 0.05:
            headline += f" (it was given {for_lag:.1f} s more for the machine's timer lag)"
        report = headline + "\n\n" + cleanup.stacks
        already_failed = self.failures.failed
        self.failures.record(report)
        if already_failed:  # the earlier failure is the reason; the stacks come with it
            self.cleanup_report = report
        debuglog.dlog("TEST", None, "cleanup did not end within %g s", deadline)
        interrupted = None
        for cfg in self.configs:
            # Calls still waiting on the network fail at once, so their threads can end.
            net = watchdog.run_bounded(cfg.net.cleanup, 1.0, f"raftlab-net-cleanup-{self.name}")
            interrupted = interrupted or net.interrupted
        if not self.options.sim:
            # Real time: nothing can stop these threads; name them and keep them out of
            # the following tests' leak checks.  (In simulated time the simulation
            # ends every simulated thread when the test ends.)
            me = threading.current_thread()
            left = [t for t in threading.enumerate()
                    if t.ident not in self._baseline and t is not me]
            names = watchdog.abandon(left, self.name)
            if names:
                self.warnings.append(
                    f"{len(names)} threads left blocked after the cleanup did not end: "
                    f"{summarize_names(sorted(names))} (they are left out of later tests' "
                    "leak checks)")

    def _check_leftovers(self) -> None:
        leftovers = self._leftover_threads() + [
            name for cfg in self.configs for name in cfg.peer_leftover_threads
        ]
        if leftovers:
            msg = (
                "threads still running after cleanup: " + summarize_names(sorted(leftovers))
                + " (a killed Raft must make its own threads exit)"
            )
            if self.impl.is_bundled:
                self.failures.record(msg)
            else:
                self.warnings.append(msg)

    def _check_child_processes(self) -> None:
        """Processes the test started and its cleanup did not end: killed, and reported
        as leftover threads are (labtests/child_processes.py says why)."""
        if self._children is None:
            return
        left = child_processes.leftovers(self._children,
                                         leak_grace_s(THREAD_GRACE_S, self._lag))
        if not left:
            return
        described = [child_processes.describe(pid) for pid in left]
        child_processes.end(left)
        msg = ("processes still running after cleanup, now killed: " + "; ".join(described)
               + " (a Raft runs in threads only: threading, time, queue, random)")
        if self.impl.is_bundled:
            self.failures.record(msg)
        else:
            self.warnings.append(msg)

    def _report_forks(self, forks: int) -> None:
        if not forks:
            return
        self._fork_finding(f"the Raft forked the test process {forks} time(s)")

    def _report_import_forks(self) -> None:
        """Every test says it, as every test says an import error: its verdict does not
        depend on which test ran first in the process."""
        forks = self.impl.import_forks
        if forks:
            self._fork_finding(f"the Raft's module forked its process {forks} time(s) while "
                               "it was imported")

    def _fork_finding(self, what: str) -> None:
        msg = (f"{what} (os.fork, or multiprocessing's fork); each copy was ended at once, "
               "before it ran anything (a Raft runs in threads only: threading, time, queue, "
               "random)")
        if self.impl.is_bundled:
            self.failures.record(msg)
        else:
            self.warnings.append(msg)

    def _leftover_threads(self) -> list[str]:
        start = time.monotonic()
        while True:
            # Re-read each round: lag measured during the wait extends it too.
            deadline = start + leak_grace_s(THREAD_GRACE_S, self._lag)
            abandoned = watchdog.abandoned_idents()
            alive = [
                t for t in threading.enumerate()
                if t.ident not in self._baseline and t.ident not in abandoned and t.is_alive()
                and t is not threading.current_thread()
            ]
            if not alive or time.monotonic() >= deadline:
                return [t.name for t in alive]
            alive[0].join(timeout=min(0.05, max(0.0, deadline - time.monotonic())))
