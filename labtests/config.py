"""The cluster harness of the graded tests: a port of the lab's ``config.go``.

A :class:`Config` owns one simulated network, ``n`` Raft peers of the
implementation under test, their persisters and apply channels, and the
tester's record of what each peer applied.  Its helpers (``one``,
``check_one_leader``, ``crash1``/``start1``...) have the lab's loop counts,
sleeps and failure messages, because the tests' strictness lives in them
(docs/harness.md).  Every random choice comes from the test's seed.

Failures go through :class:`labtests.failures.FailureChannel`: a check failing
in the main thread raises :class:`~labtests.failures.RaftTestFailure`; one
failing in a helper thread (an apply reader, a churn client) records the
message and ends that thread, and the main thread raises it at its next
harness call.  Where Go exits the whole test binary (apply errors, an RPC that
cannot be encoded, an unknown RPC method), only the current test fails here,
with that precise cause in its message.  A failure that matches a known
artifact of the lab's tests is marked as such (:mod:`labtests.artifacts`).
"""

from __future__ import annotations

import base64
import gc
import os
import pickle
import random
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from labrpc import Network, Server, Service
from labrpc.network import CODEC_ERROR
from labtests import heap
from labtests.artifacts import deposed_leader_submission, late_apply_after_restart
from labtests.failures import FailureChannel, start_helper
from labtests.impl_loader import Implementation
from labtests.isolation import IsolatedImplementation
from labtests.timeline.recorder import Recorder
from labtests.timeline.recorder import short as short_value
from labtests.verdicts import passed_line
from raft.apply_channel import ApplyChannel, ChannelClosed
from raft.debuglog import dlog
from raft.persister import Persister

RAFT_ELECTION_TIMEOUT = 1.0  # seconds; the tests "generously" allow elections this long
SNAPSHOT_INTERVAL = 10  # the snapshot applier calls snapshot() every 10 applied indexes
MAX_LOG_SIZE = 2000  # 2D: persisted Raft state must stay below this many bytes
TEST_TIME_LIMIT = 120.0  # seconds from make_config, checked by end() and cleanup()

Applier = Callable[[int, ApplyChannel], None]


def fmt_v(value: Any) -> str:
    """Format a value like Go's ``%v`` (lists as ``[1 2 3]``, None as ``<nil>``)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + " ".join(fmt_v(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{fmt_v(k)}:{fmt_v(v)}" for k, v in sorted(
            value.items(), key=lambda kv: repr(kv[0]))) + "]"
    return str(value)


def same_command(a: Any, b: Any) -> bool:
    """Go's ``==`` on interface values: same dynamic type and equal value."""
    return type(a) is type(b) and a == b


def is_int(value: Any) -> bool:
    """Go's ``cmd.(int)`` type assertion."""
    return isinstance(value, int) and not isinstance(value, bool)


def randstring(rng: random.Random, n: int) -> str:
    """The lab's randstring: base64url of 2n random bytes, cut to n characters."""
    return base64.urlsafe_b64encode(rng.randbytes(2 * n)).decode("ascii")[:n]


def derive_seed(seed: int, purpose: str) -> int:
    """A sub-seed for one purpose, so streams don't depend on each other's use."""
    return random.Random(f"{seed}:{purpose}").randrange(2**63)


def encode_snapshot(last_included_index: int, commands: list[Any]) -> bytes:
    """The tester's snapshot bytes; Raft treats them as opaque."""
    return pickle.dumps((last_included_index, commands))


def decode_snapshot(data: bytes) -> tuple[int, list[Any]]:
    index, commands = pickle.loads(data)
    if not is_int(index) or not isinstance(commands, list):
        raise ValueError("bad snapshot layout")
    return index, commands


class Config:
    """One test's cluster: network, peers, persisters, and the tester's view of the logs.

    Built in two steps: the constructor creates the network and the tester's
    state and starts nothing, so it cannot leave anything running if it fails;
    :meth:`start_peers` then starts the Raft peers.  Whoever owns the Config
    registers it for :meth:`cleanup` between the two steps.
    """

    def __init__(
        self,
        n: int,
        unreliable: bool,
        snapshot: bool,
        *,
        impl: Implementation | IsolatedImplementation,
        seed: int,
        failures: FailureChannel | None = None,
    ) -> None:
        heap.freeze_once()  # the collector skips what outlives every test (labtests.heap)
        self.failures = failures or FailureChannel()
        self.impl = impl
        self.seed = seed
        # The test's own random choices (and the harness's), the network's faults,
        # and the end names each have their own stream.
        self.rng = random.Random(seed)
        self._names_rng = random.Random(derive_seed(seed, "endnames"))
        self.mu = threading.Lock()
        self.n = n
        self.net = Network(
            rng=random.Random(derive_seed(seed, "network")),
            on_handler_error=self._on_handler_error,
            on_call_error=self._on_call_error,
        )
        self.rafts: list[Any] = [None] * n
        self.connected: list[bool] = [False] * n
        self.saved: list[Persister | None] = [None] * n
        self.endnames: list[list[str] | None] = [None] * n
        self.logs: list[dict[int, Any]] = [{} for _ in range(n)]
        self.last_applied: list[int] = [0] * n
        # Which reader last set last_applied[i] (its apply channel), and where each
        # reader started: for the late-apply-after-restart artifact.
        self._last_applied_by: list[ApplyChannel | None] = [None] * n
        self._reader_start: dict[int, int] = {}  # id(apply channel) -> first expected - 1
        self._end_routes: dict[str, tuple[int, int, int]] = {}  # end -> (from, to, generation)
        self._channels: list[ApplyChannel] = []
        self._generation = [0] * n
        self.start = time.monotonic()
        self.t0 = self.start
        self.rpcs0 = 0
        self.bytes0 = 0
        self.cmds0 = 0
        self.max_index = 0
        self.max_index0 = 0
        self._finished = threading.Event()
        self._cleaned = False
        self.description: str | None = None
        self.figures: dict[str, Any] | None = None
        self.warnings: list[str] = []
        # Isolated mode: Raft threads of the peer processes still alive after kill().
        self.peer_leftover_threads: list[str] = []
        self._unreliable = unreliable
        self.timeline = Recorder(n, seed)  # events for the failure bundle (labtests.timeline)
        self.watch: Any = None  # its state sampler and debug capture (labtests.timeline.Watch)
        self._applier: Applier = self.applier_snap if snapshot else self.applier

    def start_peers(self) -> None:
        """Start the ``n`` peers and connect them: the second half of ``make_config``.

        Kept out of ``__init__`` because it runs the implementation's ``make``,
        which may fail half-way; by then the caller holds a complete Config whose
        :meth:`cleanup` stops whatever did start.
        """
        self.set_unreliable(self._unreliable)
        self.net.long_delays(True)
        for i in range(self.n):
            self.logs[i] = {}
            self.start1(i, self._applier)
        for i in range(self.n):
            self.connect(i)

    # -- failing ------------------------------------------------------------------

    def fail(self, msg: str, artifact: str | None = None) -> None:
        """``t.Fatalf``: fail the test (raise here, or end this helper thread).

        ``artifact`` names the known artifact of the lab's tests that this
        failure matches (labtests.artifacts), if it does.
        """
        __tracebackhide__ = True  # show the test line, not the harness plumbing
        dlog("TEST", None, "FAIL: %s", msg.splitlines()[0] if msg else msg)
        self.timeline.failure(msg)
        self.failures.fail(msg, artifact)

    def warn(self, msg: str) -> None:
        """Print a lab warning (not a failure); the plugin also shows it in the run."""
        print(msg, end="", flush=True)
        dlog("TEST", None, "%s", msg)
        self.warnings.append(msg)

    def _check(self) -> None:
        __tracebackhide__ = True  # show the test line, not the harness plumbing
        self.failures.check()

    def _on_handler_error(self, svc_meth: str, exc: BaseException, tb_text: str) -> None:
        self.timeline.failure(f"RPC handler {svc_meth} raised {exc!r}", check="rpc")
        self.failures.record(f"RPC handler {svc_meth} raised {exc!r}\n{tb_text}")

    def _on_call_error(self, kind: str, endname: Any, svc_meth: str, message: str) -> None:
        """A codec or unknown-method error: the first of each kind fails the test.

        Go's labrpc stops the whole test binary on both; a Raft that swallows
        the exception would otherwise fail much later for a reason that hides
        this one (docs/network.md, Codec and Unknown service or method).
        """
        route = self._end_routes.get(endname)
        if route is None:
            where = f"on end {endname!r}"
        else:
            src, dst, generation = route
            with self.mu:
                stale = generation != self._generation[src]
            where = f"from server {src}{' (a crashed instance)' if stale else ''} to server {dst}"
        if kind == CODEC_ERROR:
            text = f"RPC {svc_meth} {where} cannot cross the network: {message}"
        else:
            text = f"RPC {svc_meth} {where} failed: {message}"
        dlog("TEST", None, "%s", text.splitlines()[0])
        self.timeline.failure(text, check="rpc")
        self.failures.record_cause(kind, text)

    def sleep(self, seconds: float) -> None:
        """``time.Sleep`` that ends early (failing the test) if a helper failed."""
        __tracebackhide__ = True  # show the test line, not the harness plumbing
        heap.maybe_trim()  # freed C heap back to the OS while waiting (labtests.heap)
        self.failures.sleep(seconds)

    def rand_int(self) -> int:
        """Go's ``rand.Int()``: a non-negative 63-bit int from the test's seed."""
        return self.rng.randrange(2**63)

    def rand_int31(self) -> int:
        """Go's ``rand.Int31()``."""
        return self.rng.randrange(2**31)

    # -- crash and restart (docs/harness.md, Crash and restart) --------------------------

    def crash1(self, i: int) -> None:
        """Shut down server i, keeping its persisted state for a later start1.

        The crashed instance's ends stay, disabled, as in the lab: its calls
        are still counted and fail after the unreachable-target delay, so a
        killed Raft that keeps calling is throttled instead of spinning.
        Network.cleanup() ends those waits when the test is over.
        """
        self._check()
        if self.rafts[i] is not None or self.saved[i] is not None:  # not a first start
            dlog("TEST", None, "crash1(%d)", i)
        self.disconnect(i)
        self.net.delete_server(i)  # in-flight replies from i are now discarded
        with self.mu:
            # The old instance keeps writing into the old persister; nobody reads it.
            if self.saved[i] is not None:
                self.saved[i] = self.saved[i].copy()
            rf = self.rafts[i]
        if rf is not None:
            self._kill(i, rf)
            with self.mu:
                self.rafts[i] = None
            self.timeline.crash(i)
        with self.mu:
            if self.saved[i] is not None:
                raftstate = self.saved[i].read_raft_state()
                snapshot = self.saved[i].read_snapshot()
                fresh = Persister()
                fresh.save(raftstate, snapshot)
                self.saved[i] = fresh

    def _kill(self, i: int, rf: Any) -> None:
        try:
            rf.kill()
        except Exception as exc:  # noqa: BLE001 - reported to the test
            self.failures.record(f"server {i}: kill() raised {exc!r}\n{traceback.format_exc()}")

    def start1(self, i: int, applier: Applier | None = None) -> None:
        """Start or restart server i with the state it last persisted."""
        self._check()
        if applier is None:
            applier = self.applier
        self.crash1(i)
        dlog("TEST", None, "start1(%d)", i)
        # Fresh outgoing end names, so the old instance's ends can never send again.
        self.endnames[i] = [randstring(self._names_rng, 20) for _ in range(self.n)]
        ends = []
        for j in range(self.n):
            end = self.net.make_end(self.endnames[i][j])
            self.net.connect(self.endnames[i][j], j)
            ends.append(end)
            with self.mu:
                self._end_routes[self.endnames[i][j]] = (i, j, self._generation[i] + 1)

        with self.mu:
            self.last_applied[i] = 0
            err = ""
            if self.saved[i] is not None:
                self.saved[i] = self.saved[i].copy()
                snapshot = self.saved[i].read_snapshot()
                if snapshot:
                    # Imitate a k/v server restoring its snapshot on restart.
                    err = self.ingest_snap(i, snapshot, -1)
            else:
                self.saved[i] = Persister()
            persister = self.saved[i]
        if err:
            self.fail(err)

        apply_ch = ApplyChannel()
        with self.mu:
            self._channels.append(apply_ch)
            self._generation[i] += 1
            generation = self._generation[i]
            self._reader_start[id(apply_ch)] = self.last_applied[i]
            self._last_applied_by[i] = apply_ch
        if isinstance(self.impl, IsolatedImplementation):
            # The Raft runs in a peer process; rf is its proxy (labtests.isolation).
            rf = self.impl.make_peer(
                ends, i, persister, apply_ch, owner=self, failures=self.failures,
                seed=derive_seed(self.seed, f"peer-{i}.{generation}"), generation=generation,
            )
            service = rf.rpc_service()
        else:
            rf = self.impl.make(ends, i, persister, apply_ch)
            service = Service(rf, name="Raft")
        with self.mu:
            self.rafts[i] = rf
        self.timeline.start(i, generation)
        start_helper(
            self.failures, f"tester-applier-{i}.{generation}", applier, i, apply_ch
        )
        srv = Server()
        srv.add_service(service)
        self.net.add_server(i, srv)

    # -- connectivity (docs/harness.md, Connectivity) ------------------------------------

    def connect(self, i: int) -> None:
        """Attach server i to the connected group."""
        self._check()
        dlog("TEST", None, "connect(%d)", i)
        self.timeline.add("connect", i)
        with self.mu:
            self.connected[i] = True
            names = []  # switched in one network call (labrpc's enable_many)
            # outgoing ClientEnds
            for j in range(self.n):
                if self.connected[j] and self.endnames[i] is not None:
                    names.append(self.endnames[i][j])
            # incoming ClientEnds
            for j in range(self.n):
                if self.connected[j] and self.endnames[j] is not None:
                    names.append(self.endnames[j][i])
            self.net.enable_many(names, True)

    def disconnect(self, i: int) -> None:
        """Detach server i from everyone, itself included."""
        self._check()
        if self.endnames[i] is not None:
            dlog("TEST", None, "disconnect(%d)", i)
            self.timeline.add("disconnect", i)
        with self.mu:
            self.connected[i] = False
            names = []
            if self.endnames[i] is not None:
                for j in range(self.n):
                    names.append(self.endnames[i][j])
            for j in range(self.n):
                if self.endnames[j] is not None:
                    names.append(self.endnames[j][i])
            self.net.enable_many(names, False)

    # -- statistics and network modes (docs/harness.md, Network modes and counts) --------

    def rpc_count(self, server: int) -> int:
        return self.net.get_count(server)

    def rpc_total(self) -> int:
        return self.net.get_total_count()

    def bytes_total(self) -> int:
        return self.net.get_total_bytes()

    def set_unreliable(self, unrel: bool) -> None:
        dlog("TEST", None, "set_unreliable(%s)", unrel)
        self.timeline.add("net", None, reliable=not unrel)
        self.net.reliable(not unrel)

    def set_long_reordering(self, longrel: bool) -> None:
        dlog("TEST", None, "set_long_reordering(%s)", longrel)
        self.timeline.add("net", None, long_reordering=bool(longrel))
        self.net.long_reordering(longrel)

    def log_size(self) -> int:
        """The largest persisted Raft state over all servers (the 2D size limit)."""
        with self.mu:
            persisters = [p for p in self.saved if p is not None]
        return max((p.raft_state_size() for p in persisters), default=0)

    # -- apply readers (docs/harness.md, Apply checks) -----------------------------------

    def check_logs(self, i: int, m: Any) -> tuple[str, bool]:
        """Record what server i applied; compare with the others.  Caller holds mu."""
        err_msg = ""
        v = m.command
        for j in range(len(self.logs)):
            if m.command_index in self.logs[j]:
                old = self.logs[j][m.command_index]
                if not same_command(old, v):
                    dlog("TEST", None, "%d: log %s; server %s", i, self.logs[i], self.logs[j])
                    # some server has already committed a different value for this entry!
                    err_msg = (
                        f"commit index={m.command_index} server={i} {fmt_v(m.command)} "
                        f"!= server={j} {fmt_v(old)}"
                    )
        prevok = (m.command_index - 1) in self.logs[i]
        self.logs[i][m.command_index] = v
        if m.command_index > self.max_index:
            self.max_index = m.command_index
        return err_msg, prevok

    def applier(self, i: int, apply_ch: ApplyChannel) -> None:
        """Read server i's apply channel (non-snapshot tests) and check every message.

        After a restart the old instance's reader keeps reading the old channel,
        as in Go; cleanup closes every channel so all readers end.
        """
        while True:
            try:
                m = apply_ch.get()
            except ChannelClosed:
                return
            if not getattr(m, "command_valid", False):
                continue  # ignore other types of ApplyMsg
            with self.mu:
                err_msg, prevok = self.check_logs(i, m)
            self.timeline.apply(i, m.command_index, m.command)
            if m.command_index > 1 and not prevok:
                err_msg = f"server {i} apply out of order {m.command_index}"
            if err_msg:
                self.fail(f"apply error: {err_msg}")

    def ingest_snap(self, i: int, snapshot: bytes | None, index: int) -> str:
        """Adopt a snapshot as server i's applied state.  Caller holds mu."""
        if snapshot is None:
            return "nil snapshot"
        try:
            last_included_index, xlog = decode_snapshot(snapshot)
        except Exception:  # noqa: BLE001 - any undecodable snapshot
            return "snapshot decode error"
        if index != -1 and index != last_included_index:
            return f"server {i} snapshot doesn't match m.snapshot_index"
        self.logs[i] = {j: cmd for j, cmd in enumerate(xlog)}
        self.last_applied[i] = last_included_index
        return ""

    def applier_snap(self, i: int, apply_ch: ApplyChannel) -> None:
        """The 2D reader: also ingests snapshots and calls snapshot() every 10 applies."""
        with self.mu:
            rf = self.rafts[i]
            own_last = self._reader_start.get(id(apply_ch), 0)  # this instance's own view
        if rf is None:
            return
        while True:
            try:
                m = apply_ch.get()
            except ChannelClosed:
                return
            err_msg = ""
            artifact = None
            if getattr(m, "snapshot_valid", False):
                with self.mu:
                    err_msg = self.ingest_snap(i, m.snapshot, m.snapshot_index)
                    if not err_msg:
                        self._last_applied_by[i] = apply_ch
                self.timeline.add("snapshot", i, i=m.snapshot_index, src="installed")
                own_last = m.snapshot_index
            elif getattr(m, "command_valid", False):
                with self.mu:
                    expected = self.last_applied[i] + 1
                    other_reader = self._last_applied_by[i] is not apply_ch
                if m.command_index != expected:
                    err_msg = (
                        f"server {i} apply out of order, expected index {expected}, "
                        f"got {m.command_index}"
                    )
                    if other_reader and m.command_index == own_last + 1:
                        artifact = late_apply_after_restart(i, m.command_index, expected)
                if not err_msg:
                    with self.mu:
                        err_msg, prevok = self.check_logs(i, m)
                    self.timeline.apply(i, m.command_index, m.command)
                    if m.command_index > 1 and not prevok:
                        err_msg = f"server {i} apply out of order {m.command_index}"
                with self.mu:
                    self.last_applied[i] = m.command_index
                    self._last_applied_by[i] = apply_ch
                own_last = m.command_index
                if (m.command_index + 1) % SNAPSHOT_INTERVAL == 0:
                    with self.mu:
                        xlog = [self.logs[i].get(j) for j in range(m.command_index + 1)]
                    data = encode_snapshot(m.command_index, xlog)
                    self.timeline.add("snapshot", i, i=m.command_index, src="taken")
                    rf.snapshot(m.command_index, data)
            if err_msg:
                msg = f"apply error: {err_msg}"
                if artifact is not None:
                    self.fail(artifact.annotate(msg), artifact=artifact.name)
                self.fail(msg)

    # -- leader and term checks (docs/harness.md, Leader and term checks) ----------------

    def _connected_rafts(self) -> list[tuple[int, Any]]:
        with self.mu:
            return [
                (i, self.rafts[i])
                for i in range(self.n)
                if self.connected[i] and self.rafts[i] is not None
            ]

    def check_one_leader(self) -> int:
        """Wait for exactly one leader among the connected servers; return it."""
        self._check()
        cid = self.timeline.check_begin("check_one_leader")
        for _iters in range(10):
            ms = 450 + self.rng.randrange(100)
            self.sleep(ms / 1000)

            leaders: dict[int, list[int]] = {}
            for i, rf in self._connected_rafts():
                term, leader = rf.get_state()
                self.timeline.state(i, term, leader, "tester")
                if leader:
                    leaders.setdefault(term, []).append(i)

            last_term_with_leader = -1
            for term, ids in leaders.items():
                if len(ids) > 1:
                    self.fail(f"term {term} has {len(ids)} (>1) leaders")
                if term > last_term_with_leader:
                    last_term_with_leader = term

            if leaders:
                leader = leaders[last_term_with_leader][0]
                dlog("TEST", None, "check_one_leader: S%d in term %d", leader,
                     last_term_with_leader)
                self.timeline.check_end(cid, "check_one_leader", result=leader)
                return leader
        self.fail("expected one leader, got none")
        return -1

    def check_terms(self) -> int:
        """All connected servers must agree on the term; return it."""
        self._check()
        cid = self.timeline.check_begin("check_terms")
        term = -1
        for _i, rf in self._connected_rafts():
            xterm, _ = rf.get_state()
            if term == -1:
                term = xterm
            elif term != xterm:
                self.fail("servers disagree on term")
        self.timeline.check_end(cid, "check_terms", result=term)
        return term

    def check_no_leader(self) -> None:
        """No connected server may think it is the leader."""
        self._check()
        cid = self.timeline.check_begin("check_no_leader")
        for i, rf in self._connected_rafts():
            _, is_leader = rf.get_state()
            if is_leader:
                self.fail(
                    f"expected no leader among connected servers, but {i} claims to be leader"
                )
        self.timeline.check_end(cid, "check_no_leader")

    # -- commit observation (docs/harness.md, Commit observation) ------------------------

    def n_committed(self, index: int) -> tuple[int, Any]:
        """How many servers applied ``index`` (crashed ones included), and the command."""
        self._check()
        count = 0
        cmd = None
        for i in range(len(self.rafts)):
            with self.mu:
                ok = index in self.logs[i]
                cmd1 = self.logs[i].get(index)
            if ok:
                if count > 0 and not same_command(cmd, cmd1):
                    self.fail(
                        f"committed values do not match: index {index}, "
                        f"{fmt_v(cmd)}, {fmt_v(cmd1)}"
                    )
                count += 1
                cmd = cmd1
        return count, cmd

    def wait(self, index: int, n: int, start_term: int) -> Any:
        """Wait for at least n servers to commit ``index``; -1 if the term moved on."""
        self._check()
        cid = self.timeline.check_begin("wait", index=index, servers=n)
        to = 0.010
        for _iters in range(30):
            nd, _ = self.n_committed(index)
            if nd >= n:
                break
            self.sleep(to)
            if to < 1.0:
                to *= 2
            if start_term > -1:
                with self.mu:
                    rafts = list(self.rafts)
                for r in rafts:
                    if r is None:
                        continue
                    t, _ = r.get_state()
                    if t > start_term:
                        # someone has moved on; can no longer guarantee that we'll "win"
                        self.timeline.check_end(cid, "wait", result=-1)
                        return -1
        nd, cmd = self.n_committed(index)
        if nd < n:
            self.fail(f"only {nd} decided for index {index}; wanted {n}")
        self.timeline.check_end(cid, "wait", result=short_value(cmd))
        return cmd

    def one(self, cmd: Any, expected_servers: int, retry: bool) -> int:
        """Do a complete agreement on ``cmd``; return its index.

        Tries every connected server in turn until one accepts, then waits up to
        2 s for ``expected_servers`` to apply it; with ``retry`` it resubmits,
        within a 10 s budget checked at the top of each round.
        """
        self._check()
        short = fmt_v(cmd) if not isinstance(cmd, str) or len(cmd) <= 40 else f"<str {len(cmd)}>"
        cid = self.timeline.check_begin("one", cmd=short, servers=expected_servers, retry=retry)
        t0 = time.monotonic()
        starts = 0
        while time.monotonic() - t0 < 10 and not self.check_finished():
            # try all the servers, maybe one is the leader.
            index = -1
            claims: dict[int, tuple[int, bool]] = {}
            for _si in range(self.n):
                starts = (starts + 1) % self.n
                with self.mu:
                    rf = self.rafts[starts] if self.connected[starts] else None
                if rf is not None:
                    index1, term1, ok = rf.start(cmd)
                    self.timeline.state(starts, term1, ok, "tester")
                    if ok:
                        index = index1
                        dlog("TEST", None, "one(%s): S%d accepted at index %d", short,
                             starts, index)
                        if not retry:  # one chance: note who else claims leadership now
                            claims = self._leadership_claims(starts)
                        break

            if index != -1:
                # somebody claimed to be the leader and to have submitted our
                # command; wait a while for agreement.
                t1 = time.monotonic()
                while time.monotonic() - t1 < 2:
                    nd, cmd1 = self.n_committed(index)
                    if nd > 0 and nd >= expected_servers:
                        if same_command(cmd1, cmd):
                            dlog("TEST", None, "one(%s): committed at index %d on %d",
                                 short, index, nd)
                            self.timeline.check_end(cid, "one", result=index)
                            return index
                    self.sleep(0.020)
                if not retry:
                    msg = f"one({fmt_v(cmd)}) failed to reach agreement"
                    artifact = deposed_leader_submission(starts, term1, claims)
                    if artifact is not None:
                        self.fail(artifact.annotate(msg), artifact=artifact.name)
                    self.fail(msg)
            else:
                self.sleep(0.050)
        if not self.check_finished():
            self.fail(f"one({fmt_v(cmd)}) failed to reach agreement")
        self.timeline.check_end(cid, "one", ok=False, result=-1)
        return -1

    def _leadership_claims(self, accepted: int) -> dict[int, tuple[int, bool]]:
        """``get_state()`` of every other connected server, right after ``accepted`` took
        a command (for the deposed-leader artifact; the lab's one() reads nothing here)."""
        return {i: rf.get_state() for i, rf in self._connected_rafts() if i != accepted}

    # -- begin, end, cleanup (docs/harness.md, Begin, end and the Passed line; Cleanup)

    def check_finished(self) -> bool:
        return self._finished.is_set()

    def check_timeout(self) -> None:
        """Enforce the lab's two-minute real-time limit on each test."""
        if not self.failures.failed and time.monotonic() - self.start > TEST_TIME_LIMIT:
            self.fail(f"test took longer than {TEST_TIME_LIMIT:.0f} seconds")

    def begin(self, description: str) -> None:
        """Start the test proper: print its description and zero the statistics."""
        self._check()
        print(f"{description} ...", flush=True)
        dlog("TEST", None, "begin: %s (seed %d)", description, self.seed)
        self.timeline.add("begin", None, desc=description)
        self.description = description
        self.t0 = time.monotonic()
        self.rpcs0 = self.rpc_total()
        self.bytes0 = self.bytes_total()
        self.cmds0 = 0
        with self.mu:
            self.max_index0 = self.max_index

    def end(self) -> None:
        """Finish the test: check the time limit and print the lab's Passed line."""
        self.check_timeout()
        self._check()
        with self.mu:
            t = time.monotonic() - self.t0  # real time
            npeers = self.n  # number of Raft peers
            nrpc = self.rpc_total() - self.rpcs0  # number of RPC sends
            nbytes = self.bytes_total() - self.bytes0  # number of bytes
            ncmds = self.max_index - self.max_index0  # number of Raft agreements reported
        self.figures = {
            "time": round(t, 3), "peers": npeers, "rpcs": nrpc, "bytes": nbytes, "commits": ncmds,
        }
        print(self.passed_line(), flush=True)
        dlog("TEST", None, "end: %s", self.passed_line().strip())
        self.timeline.add("end", None, line=self.passed_line().strip())

    def passed_line(self) -> str:
        return passed_line(self.figures or {})

    def cleanup(self) -> None:
        """Stop everything the test started (idempotent), then check the time limit.

        Sets finished, kills every Raft, shuts the network down (waiting calls
        fail promptly) and closes every apply channel, so that Raft senders and
        tester readers all return.
        """
        if self._cleaned:
            return
        self._cleaned = True
        self._finished.set()
        dlog("TEST", None, "cleanup")
        self.timeline.add("cleanup", None)
        if self.watch is not None:
            self.watch.stop()  # first: the sampler must not probe peers being killed
        isolated = isinstance(self.impl, IsolatedImplementation)
        if isolated:
            self.impl.kill_peers(self)  # all at once, each within its deadline
        else:
            with self.mu:
                rafts = list(enumerate(self.rafts))
            for i, rf in rafts:
                if rf is not None:
                    self._kill(i, rf)
        self.net.cleanup()
        with self.mu:
            channels = list(self._channels)
        for ch in channels:
            ch.close()
        if isolated:
            # After the channels closed, as in-process: then no peer process is left.
            self.peer_leftover_threads = self.impl.shutdown(self)
        heap.trim()  # the next test starts from what is live, not this one's free heap
        self.check_timeout()

    def release(self) -> None:
        """Drop the finished cluster's state once the test's report is made.

        pytest keeps each test's context, so its Configs, until the session ends:
        without this every earlier test's Raft instances (and their logs), the
        tester's logs and the persisted state stayed in memory during the later
        tests (2C's churn: megabytes each).  What the report and the tools read
        afterwards stays: the figures, description, warnings, counters and the
        timeline (which the plugin clears itself).  Only after :meth:`cleanup`.
        """
        if not self._cleaned:
            return
        for i in range(self.n):
            self.net.delete_server(i)  # the network's servers hold the Raft instances
        with self.mu:
            self.rafts = [None] * self.n
            self.logs = [{} for _ in range(self.n)]
            self.saved = [None] * self.n
            self._channels = []
            self._last_applied_by = [None] * self.n
            self._reader_start = {}
        self.watch = None  # its sampler's probes hold the Raft instances too
        # The instances sit in reference cycles (threads, bound methods): collect them
        # now, so that the trim below hands their memory back before the next test.
        gc.collect()
        heap.trim()




def cpu_warning() -> str | None:
    """The lab's once-per-process warning on single-CPU machines."""
    if (os.cpu_count() or 1) < 2:
        return "warning: only one CPU, which may conceal locking bugs"
    return None
