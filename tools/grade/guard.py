"""pytest plugin loaded into a grading run's tester processes (``-p tools.grade.guard``).

Two things, both before any peer process exists:

* ``--grade-peer-user UID:GID``: the isolated template, and so every peer (the only
  processes that run student code), is started as that dedicated user
  (:data:`labtests.isolation.launcher.TEMPLATE_POPEN_KWARGS`), while the tester keeps
  the grader's user: a peer then cannot signal or trace the tester or open its files.
* the tester marks itself non-dumpable (``PR_SET_DUMPABLE`` 0): a process of the
  same user can then neither ptrace it nor open its ``/proc/<pid>/mem`` or
  ``/proc/<pid>/fd``/``environ`` -- the fence that remains when no dedicated user
  is available.
"""

from __future__ import annotations

import pytest

from labtests import libc
from labtests.isolation import launcher

PR_SET_DUMPABLE = 4


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--grade-peer-user", default=None, metavar="UID:GID",
                     help="raftlab grade: run the isolated peers as this user")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    libc.call("prctl", PR_SET_DUMPABLE, 0, 0, 0, 0, what="prctl(PR_SET_DUMPABLE, 0)")
    spec = config.getoption("grade_peer_user")
    if spec:
        uid, _, gid = str(spec).partition(":")
        launcher.TEMPLATE_POPEN_KWARGS.update(
            user=int(uid), group=int(gid or uid), extra_groups=[])
