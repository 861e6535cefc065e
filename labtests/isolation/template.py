"""The template process: imports the implementation once, then forks one peer per request.

Run as ``python -m labtests.isolation.template CTL_FD TESTER_PID`` by the
tester (:mod:`labtests.isolation.launcher`), one per pytest process and
implementation.  Starting a peer is then a fork of an interpreter that has
already imported everything (about a millisecond), not an interpreter start-up.

Protocol on the control socket (``SOCK_SEQPACKET``, one message per packet,
frames of :mod:`labtests.isolation.wire` without the length header):

* tester -> template: ``("init", spec, sys_path, debug)``; the template imports
  the implementation with :mod:`labtests.impl_loader` and answers
  ``("ready", error_text, import_forks)`` (the text empty when the implementation
  loaded and has the API; the count of copies of the template its import forked,
  each ended at once: labtests.fork_watch);
* tester -> template: ``("fork", seq)`` with four file descriptors attached (the
  peer's connection, the tester's current stdout and stderr, the stack-dump
  file); the template answers ``("forked", seq, pid)`` or ``("fork_failed", seq,
  why)`` (``seq`` lets the tester discard a late answer to a request it gave up on).

The peer is double-forked: an intermediate child forks it and exits at once,
so the peer is re-parented to the tester (a child subreaper), which therefore
waits for it itself and learns its exact exit status.  Forking is only safe
from a process with one thread, so a template in which the implementation
started a thread at import time refuses to fork, with that reason.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import traceback

from labtests.impl_loader import load
from labtests.isolation import peer, procs, wire

FORK_FDS = 4  # peer connection, stdout, stderr, stack-dump file
MAX_PACKET = 1 << 16


def _send(ctl: socket.socket, message: tuple) -> None:
    ctl.send(wire.dumps(message)[4:])


def _recv(ctl: socket.socket) -> tuple[tuple, list[int]]:
    data, fds, _flags, _addr = socket.recv_fds(ctl, MAX_PACKET, FORK_FDS)
    if not data:
        for fd in fds:
            os.close(fd)
        raise EOFError
    return wire.loads_plain(data), fds


def _fork_peer(ctl: socket.socket, fds: list[int], impl, tester_pid: int,
               memory_mb: int) -> int:
    """Double-fork a peer; return its pid (as seen from here, the same everywhere)."""
    conn_fd, out_fd, err_fd, stacks_fd = fds
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    r, w = os.pipe()
    middle = os.fork()
    if middle == 0:
        try:
            os.close(r)
            grandchild = os.fork()
            if grandchild == 0:
                os.close(w)
                peer.become_peer(conn_fd, out_fd, err_fd, stacks_fd, tester_pid, impl,
                                 close_fds=ctl.close, memory_mb=memory_mb)
            os.write(w, str(grandchild).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 32)
        if not chunk:
            break
        data += chunk
    os.close(r)
    os.waitpid(middle, 0)
    return int(data) if data else -1


def main(argv: list[str]) -> int:
    ctl_fd, tester_pid = int(argv[1]), int(argv[2])
    procs.die_with_parent()
    if os.getppid() != tester_pid:
        return 1  # the tester died before we could ask to die with it
    ctl = socket.socket(fileno=ctl_fd)
    try:
        message, fds = _recv(ctl)
        spec, sys_path, debug, memory_mb = wire.expect(message, str, list, bool, int)
        sys.path[:] = [p for p in sys_path if isinstance(p, str)]
        if debug:
            from raft import debuglog
            debuglog.enable()
        impl = load(spec)
        error = impl.error or ""
        if not error and threading.active_count() > 1:
            names = ", ".join(t.name for t in threading.enumerate())
            error = (
                f"the Raft implementation {spec!r} started threads when imported ({names}); "
                "isolated mode forks each peer from a process that has imported the "
                "implementation, which is only safe without threads: start threads in make()"
            )
        _send(ctl, ("ready", error[:32000], impl.import_forks))
        while True:
            message, fds = _recv(ctl)
            seq = message[1] if len(message) > 1 and isinstance(message[1], int) else -1
            if message[0] != "fork" or len(fds) != FORK_FDS:
                for fd in fds:
                    os.close(fd)
                _send(ctl, ("fork_failed", seq, f"bad request {message[0]!r}"))
                continue
            try:
                if threading.active_count() > 1:
                    raise RuntimeError("a thread is running in the template; cannot fork")
                pid = _fork_peer(ctl, fds, impl, tester_pid, memory_mb)
                _send(ctl, ("forked", seq, pid))
            except Exception as exc:  # noqa: BLE001 - reported to the tester
                _send(ctl, ("fork_failed", seq, f"{exc!r}\n{traceback.format_exc()}"))
            finally:
                for fd in fds:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
    except (EOFError, ConnectionError, wire.WireError):
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
