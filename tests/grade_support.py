"""What several grade test files share: whether this machine can grade as a run user."""

from __future__ import annotations


def why_no_run_user() -> str | None:
    """None if a dedicated run user can be had here (root, a free uid), else why not."""
    from tools.grade.sandbox import choose_run_user

    user, why = choose_run_user()
    if user is None:
        return why
    user.release()
    return None


def wait_for_a_finished_run(proc, log, within_s: float = 300.0) -> None:  # noqa: ANN001
    """Wait until the ``raftlab grade`` process ``proc``, writing to the file ``log``,
    has reported a run (a line with its seed); fail if it ends or takes ``within_s``
    (start-up only: generous for a loaded machine)."""
    import time

    deadline = time.monotonic() + within_s
    while " seed " not in log.read_text():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"no run finished in {within_s:g} s"
        time.sleep(0.05)
