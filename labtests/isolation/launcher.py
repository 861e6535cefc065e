"""The tester's side of isolated mode: the template process, peer starts, and the sweep.

:class:`IsolatedImplementation` takes the place of
:class:`labtests.impl_loader.Implementation` when ``--isolate`` is on.  It
never imports the implementation: it starts a template process that does
(:mod:`labtests.isolation.template`), once per pytest process, reports the
template's import/API error exactly as the in-process loader would, and asks
the template for one forked peer per ``make``.

Processes, and why none outlives its test:

* the tester makes itself a child subreaper, and peers are double-forked, so
  every peer is the tester's own child (the tester reaps it and knows its exit
  status) and so is anything a peer leaves behind once its parent is gone;
* every peer and the template die with the tester (``PR_SET_PDEATHSIG``);
* a crashed peer's process lives on until its Raft threads end, as a killed
  Raft object does in-process (:meth:`PeerProxy.kill`);
* at the end of each test, :meth:`IsolatedImplementation.shutdown` asks each
  live peer to ``kill()`` (bounded), collects the names of Raft threads still
  running in it and in crashed peers (the leftover-thread report), SIGKILLs
  every peer, then kills and
  reaps every other child that appeared during the test (double-forked daemons
  included), before the next test starts.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from labrpc import ClientEnd
from labrpc.pool import ThreadPool
from labtests import cpupin
from labtests.failures import FailureChannel, RaftTestFailure
from labtests.impl_loader import DEFAULT_IMPL
from raft import debuglog
from raft.apply_channel import ApplyChannel
from raft.persister import Persister

if TYPE_CHECKING:
    from labtests.isolation.proxy import PeerProxy

# procs, wire and proxy (about 850 lines) are imported by the methods that use them: the
# harness imports this module in every pytest process (config.py's isinstance checks),
# and only an --isolate run starts a template.

TEMPLATE_START_S = 60.0  # importing the implementation (a slow disk, a big package)
FORK_REPLY_S = 30.0  # a fork takes milliseconds; only a machine in overload comes near this
THREAD_GRACE_S = 1.5  # as in-process: how long a killed Raft's threads get to end
# Extra subprocess.Popen arguments of the template, inherited by its peers: the
# grader sets ``user``/``group``/``extra_groups`` here (tools.grade.guard) so that
# student code runs as a dedicated user while the tester keeps its own.
TEMPLATE_POPEN_KWARGS: dict[str, Any] = {}


class IsolationError(RuntimeError):
    """The isolated mode itself could not start (not a verdict on the implementation)."""


@dataclass
class _Group:
    """The peers of one cluster (one Config), and the children that predate it."""

    baseline: set[int]
    pids: set[int] = field(default_factory=set)  # every peer forked for this cluster
    killed: list[PeerProxy] = field(default_factory=list)  # kill() returned in time
    proxies: list[PeerProxy] = field(default_factory=list)
    calls: ThreadPool = field(default_factory=lambda: ThreadPool("tester-peer-calls",
                                                                  numbered=True))


class IsolatedImplementation:
    """The implementation under test, run in peer processes (duck-types Implementation)."""

    isolated = True

    def __init__(self, spec: str | None, *, debug: bool = False, memory_mb: int = 0) -> None:
        self.spec = spec if spec is not None else DEFAULT_IMPL
        self._debug = debug
        self._memory_mb = memory_mb  # each peer's memory bound (labtests.memory_bound); 0: none
        self._lock = threading.Lock()
        self._template: subprocess.Popen[bytes] | None = None
        self._ctl: socket.socket | None = None
        self._error: str | None = None
        self._started = False
        self._groups: dict[int, _Group] = {}
        self._forks = 0  # fork requests sent, numbering them
        self._import_forks = 0  # copies of the template its import of the Raft made

    @property
    def is_bundled(self) -> bool:
        return self.spec == DEFAULT_IMPL

    @property
    def error(self) -> str | None:
        """Why the implementation cannot be tested (import error, missing API), or None."""
        self._ensure_template()
        return self._error

    @property
    def import_forks(self) -> int:
        """Copies of the template process the Raft's import made (each ended at once)."""
        self._ensure_template()
        return self._import_forks

    @property
    def template_pid(self) -> int | None:
        return self._template.pid if self._template is not None else None

    # -- the template ----------------------------------------------------------------

    def _ensure_template(self) -> None:
        from labtests.isolation import procs, wire
        with self._lock:
            if self._started:
                return
            self._started = True
            procs.become_subreaper()
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                self._template = subprocess.Popen(
                    [sys.executable, "-m", "labtests.isolation.template",
                     str(theirs.fileno()), str(os.getpid())],
                    pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                    **TEMPLATE_POPEN_KWARGS,
                )
            finally:
                theirs.close()
            # Started during a test whose process is pinned to one CPU, the template
            # (and every peer it forks) would inherit that one CPU: it gets the CPUs
            # from before the pin, before it is asked to do anything.
            wide = cpupin.mask_for_children()
            if wide is not None:
                try:
                    os.sched_setaffinity(self._template.pid, wide)
                except OSError:
                    pass  # the peers then share the tester's CPU: slower, never wrong
            self._ctl = mine
            try:
                self._ctl_send(("init", os.path.abspath(self.spec) if _is_path(self.spec)
                                else self.spec, list(sys.path), self._debug,
                                self._memory_mb))
                reply = self._ctl_recv(TEMPLATE_START_S, "to import the implementation")
                if reply[0] != "ready":
                    raise IsolationError(f"template process: unexpected reply {reply[0]!r}")
                error, self._import_forks = wire.expect(reply, str, int)
            except (IsolationError, wire.WireError, OSError) as exc:
                # Every test then fails with this, as with an import error.
                error = f"isolated mode could not start for {self.spec!r}: {exc}"
            self._error = error or None

    def _ctl_send(self, message: tuple[Any, ...], fds: list[int] | None = None) -> None:
        from labtests.isolation import wire
        assert self._ctl is not None
        data = wire.dumps(message)[4:]
        if fds:
            socket.send_fds(self._ctl, [data], fds)
        else:
            self._ctl.send(data)

    def _ctl_recv(self, timeout: float, doing: str) -> tuple[Any, ...]:
        from labtests.isolation import procs, wire
        assert self._ctl is not None and self._template is not None
        self._ctl.settimeout(timeout)
        try:
            data = self._ctl.recv(1 << 16)
        except TimeoutError:
            raise IsolationError(
                f"the template process took more than {timeout:g} s {doing}") from None
        except OSError as exc:
            data = b""
            why = str(exc)
        else:
            why = "closed its connection"
        if not data:
            status = procs.wait_exit(self._template.pid, 2.0)
            ended = procs.describe_status(status) if status is not None else why
            self._template.returncode = status  # reaped here; Popen must not wait again
            raise IsolationError(
                f"the template process that imports {self.spec!r} {ended} ({doing}); "
                "see the captured output for what the implementation printed"
            )
        message = wire.loads_plain(data)
        if not isinstance(message, tuple) or not message or not isinstance(message[0], str):
            raise IsolationError("template process: malformed reply")
        return message

    def close(self) -> None:
        """Stop the template (end of the pytest run)."""
        with self._lock:
            if self._ctl is not None:
                self._ctl.close()
                self._ctl = None
            template, self._template = self._template, None
        if template is not None and template.returncode is None:
            try:
                template.wait(timeout=5)
            except subprocess.TimeoutExpired:
                template.kill()
                template.wait()

    # -- peers -------------------------------------------------------------------------

    def make(self, peers: list[Any], me: int, persister: Any, apply_ch: Any) -> Any:
        raise TypeError("an isolated implementation starts peers with make_peer()")

    def make_peer(
        self, ends: list[ClientEnd], me: int, persister: Persister, apply_ch: ApplyChannel,
        *, owner: object, failures: FailureChannel, seed: int, generation: int,
    ) -> PeerProxy:
        """Fork a peer hosting server ``me``'s Raft; its proxy once make() has returned."""
        __tracebackhide__ = True
        from labtests.isolation import wire
        from labtests.isolation.proxy import PeerProxy
        if self.error is not None:
            raise RaftTestFailure(self.error)
        group = self._group(owner)
        mine, theirs = socket.socketpair()
        stacks_fd = os.memfd_create(f"raftlab-stacks-{me}", 0)
        try:
            with self._lock:
                self._forks += 1
                seq = self._forks
                self._ctl_send(("fork", seq), [theirs.fileno(), 1, 2, stacks_fd])
                deadline = time.monotonic() + FORK_REPLY_S
                while True:
                    reply = self._ctl_recv(max(0.001, deadline - time.monotonic()),
                                           "to fork a peer")
                    # A reply to an earlier request that timed out is stale: its peer
                    # never got its init and exits; the end-of-test sweep reaps it.
                    if len(reply) > 1 and reply[1] == seq:
                        break
                if reply[0] == "forked" and len(reply) == 3 and isinstance(reply[2], int):
                    group.pids.add(reply[2])  # before any sweep can see it (same lock)
        except BaseException:
            mine.close()
            os.close(stacks_fd)
            raise
        finally:
            theirs.close()
        if reply[0] != "forked":
            mine.close()
            os.close(stacks_fd)
            detail = reply[2] if len(reply) > 2 and isinstance(reply[2], str) else reply[0]
            failures.fail(f"server {me}: the template process could not fork a peer: {detail}")
        _seq, pid = wire.expect(reply, int, int)
        label = f"server {me} (peer process {pid})"
        proxy = PeerProxy(
            me=me, label=label, pid=pid, conn=wire.Connection(mine), stacks_fd=stacks_fd,
            ends=ends, persister=persister, apply_ch=apply_ch, failures=failures,
            calls=group.calls,
        )
        group.proxies.append(proxy)
        debuglog.dlog("TEST", None, "isolated: %s forked (generation %d)", label, generation)
        proxy.start_peer((
            "init", me, len(ends), seed, debuglog.enabled(), _clock_origin(),
            persister.read_raft_state(), persister.read_snapshot(),
        ))
        return proxy

    def _group(self, owner: object) -> _Group:
        from labtests.isolation import procs
        with self._lock:
            group = self._groups.get(id(owner))
            if group is None:
                keep = set(procs.children())
                group = self._groups[id(owner)] = _Group(baseline=keep)
            return group

    def _keep(self, group: _Group) -> set[int]:
        """Children a sweep of ``group`` must spare (called with the lock held)."""
        keep = set(group.baseline)
        if self.template_pid:
            keep.add(self.template_pid)
        for other in self._groups.values():  # another cluster's peers, if any is alive
            if other is not group:
                keep |= other.pids
        return keep

    def kill_peers(self, owner: object) -> None:
        """Cleanup, first half: ``kill()`` every live peer of ``owner``, all at once.

        Each must return within its deadline; a miss fails the test with that
        peer's stacks (recorded, not raised, so cleanup goes on).
        """
        from labtests.isolation.proxy import KILL_DEADLINE_S
        with self._lock:
            group = self._groups.get(id(owner))
        if group is None:
            return
        deadline = time.monotonic() + KILL_DEADLINE_S
        kills = [(p, p.request("kill", ())) for p in group.proxies if p.alive]

        def settle(p: PeerProxy, slot: Any) -> None:
            if _outcome_recorded(p, slot, "kill", deadline):
                group.killed.append(p)

        # In parallel, so several peers that miss the deadline cost one deadline and one
        # stack dump's wait, not one each.
        waiters = [threading.Thread(target=settle, args=ks, name=f"tester-kill-{ks[0].me}")
                   for ks in kills]
        for w in waiters:
            w.start()
        for w in waiters:
            w.join()
        group.killed.sort(key=lambda p: p.me)

    def shutdown(self, owner: object) -> list[str]:
        """Cleanup, second half: end every process of ``owner``; leftover Raft threads.

        Run after the network and the apply channels are shut (so nothing a
        killed Raft waits for is still pending): asks each killed peer for the
        Raft threads still running after a grace period (reported like
        in-process leftovers), SIGKILLs every peer, then kills and reaps every
        other child of the tester that appeared since the cluster started.
        """
        from labtests.isolation import procs
        with self._lock:
            group = self._groups.pop(id(owner), None)
        if group is None:
            return []
        leftovers: list[str] = []
        try:
            # Crashed peers whose threads still run count too, as in-process.
            killed = [p for p in group.killed if p.alive] + [
                p for p in group.proxies if p.retired_running]
            deadline = time.monotonic() + THREAD_GRACE_S + REPLY_MARGIN_S
            asks = [(p, p.request("threads", (THREAD_GRACE_S,))) for p in killed]
            for p, slot in asks:
                if slot.event.wait(max(0.0, deadline - time.monotonic())) and slot.kind == "ok":
                    names = slot.value if isinstance(slot.value, tuple | list) else ()
                    leftovers += [f"{p.label}: {n}" for n in names if isinstance(n, str)]
        finally:
            for p in group.proxies:
                p.terminate()
            group.calls.close()
            strays = procs.reap_strays(lambda: self._keep(group), self._lock)
            if strays:
                debuglog.dlog("TEST", None, "isolated: killed %d leftover process(es) %s",
                              len(strays), strays)
        return leftovers


REPLY_MARGIN_S = 1.0


def _outcome_recorded(proxy: PeerProxy, slot: Any, op: str, deadline: float) -> bool:
    """A request's outcome during shutdown: failures are recorded, never raised."""
    try:
        proxy.outcome(slot, op, deadline, None)
        return slot.kind == "ok"
    except BaseException:  # noqa: BLE001 - RaftTestFailure/HelperThreadExit: already recorded
        return False


def _clock_origin() -> float:
    """The tester's debug-log clock origin, so peers' log lines share its time axis."""
    return debuglog.clock_origin()


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec or spec.startswith(".") or os.path.isdir(spec)
