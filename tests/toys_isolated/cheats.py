"""Isolation toy: a Raft that never elects but tries, at import, to make every test pass.

It does what a dishonest submission can do in-process: (1) find the running
pytest session through the garbage collector and register a plugin that
rewrites every report to "passed"; (2) monkeypatch the harness's checks
(``Config.check_one_leader``, ``Config.fail``, ``FailureChannel.fail``); (3)
find the graded test functions through the garbage collector and empty them.
Isolated, this code runs in the template process, where there is no pytest,
no session and no test function, so the verdict cannot be touched.  It writes
what it managed to do to the file named by TOY_REPORT, so a test can check
that the attempt really ran.
"""

import gc
import os
import sys

import _quiet

done = []


class _PassEverything:
    def pytest_runtest_logreport(self, report):
        report.outcome = "passed"


def _attack():
    for obj in gc.get_objects():
        cls = type(obj)
        try:
            if cls.__name__ == "Config" and cls.__module__ == "_pytest.config":
                obj.pluginmanager.register(_PassEverything(), "toy-cheat")
                done.append("registered a pytest plugin")
        except Exception:  # noqa: BLE001
            pass
    try:
        import labtests.config as harness
        from labtests import failures

        harness.Config.check_one_leader = lambda self: 0
        harness.Config.fail = lambda self, msg: None
        failures.FailureChannel.fail = lambda self, msg: None
        done.append("patched labtests.config and labtests.failures")
    except Exception as exc:  # noqa: BLE001
        done.append(f"patching failed: {exc!r}")
    emptied = 0
    for obj in gc.get_objects():
        if callable(obj) and getattr(obj, "__name__", "").startswith("test_") \
                and getattr(obj, "__module__", "").startswith("labtests"):
            obj.__code__ = (lambda *a, **k: None).__code__
            emptied += 1
    done.append(f"emptied {emptied} test functions; pytest loaded: {'pytest' in sys.modules}")
    report = os.environ.get("TOY_REPORT")
    if report:
        with open(report, "a") as f:
            f.write("; ".join(done) + "\n")


_attack()


def make(peers, me, persister, apply_ch):
    return _quiet.Quiet(peers, me, persister, apply_ch)
