"""pytest plugin behind ``raftlab stress`` (loaded with ``-p tools.stress.pytest_plugin``).

It has two modes, both driven by files so that the stress process never parses
pytest's human output:

* ``--stress-collect OUT.json``: after collection (and ``-k``/``-m`` deselection),
  write the rootdir and the selected node ids, so the CLI can plan jobs.
* ``--stress-jobs JOBS.json``: run exactly the listed jobs.  A job is one run of one
  test with one seed.  Like pytest-repeat, each test function is parametrized with the
  indices of its jobs (ids ``stress<j>``), so every repetition is its own item that
  pytest-xdist can send to any worker; items are then ordered as the job list says.
  Each item's seed reaches the harness through the harness's own hook
  (``pytest_raftlab_test_seed``, :mod:`labtests.hookspecs`): no option or
  environment variable is rewritten between tests.  The controlling
  process (the xdist controller, or the only process without xdist) writes one JSON
  line per finished run to the events file named in the jobs file, flushed at once,
  which the stress CLI tails.

Failure bundles (:mod:`tools.stress.bundles`): with ``--stress-jobs`` the harness
writes them into ``raftlab-bundles/`` next to the jobs file, in the backend's
scratch folder (``RAFTLAB_BUNDLE_DIR``, unless already set); the process that
reports a failing run packs its bundle into the run's event (so a Dask worker's
bundle comes back to the client too; only as many per signature as the client
keeps, :mod:`tools.stress.groups`), and the folder is removed at the end.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from labtests.artifacts import ARTIFACT_KEY
from labtests.overload import inconclusive_text
from labtests.verdicts import REASON_KEY, refused
from tools.jsonable import jsonable
from tools.stress import bundles
from tools.stress.groups import BUNDLES_PER_GROUP, MAX_BUNDLES
from tools.stress.signatures import Signature, signature

JOB_FIXTURE = "_raftlab_stress_job"
BUNDLE_ENV = "RAFTLAB_BUNDLE_DIR"
_PHASES = ("setup", "call", "teardown")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("raftlab-stress", "raftlab stress runner (internal)")
    group.addoption("--stress-jobs", metavar="FILE", help="run the jobs listed in FILE")
    group.addoption("--stress-collect", metavar="FILE",
                    help="write the selected node ids and rootdir to FILE")


@pytest.fixture
def _raftlab_stress_job(request: pytest.FixtureRequest) -> int:
    """The job index of a repeated item (its parameter); the seed is set in setup."""
    return request.param


def base_id(nodeid: str) -> str:
    """The test function's id without parameters: ``f.py::t[a-b]`` -> ``f.py::t``."""
    return nodeid.split("[", 1)[0]


def strip_job_id(nodeid: str, job: int) -> str:
    """Remove our ``stress<j>`` parameter id from an item's node id."""
    token = f"stress{job}"
    if nodeid.endswith(f"[{token}]"):
        return nodeid[: -len(token) - 2]
    for old, new in ((f"-{token}]", "]"), (f"[{token}-", "["), (f"-{token}-", "-")):
        if old in nodeid:
            return nodeid.replace(old, new, 1)
    return nodeid


_JOB_IN_ID = re.compile(r"[\[-]stress(\d+)[\]-]")


def job_index_of(nodeid: str) -> int | None:
    """The job index carried in a repeated item's node id (the controller needs it)."""
    matches = _JOB_IN_ID.findall(nodeid)
    return int(matches[-1]) if matches else None


class _StressPlugin:
    def __init__(self, config: pytest.Config, spec: dict[str, Any]) -> None:
        self.config = config
        self.jobs: list[dict[str, Any]] = spec["jobs"]
        self.keep_passing: bool = bool(spec.get("keep_passing"))
        self.events_path = spec["events"]
        self.by_function: dict[str, list[int]] = {}
        for job in self.jobs:
            self.by_function.setdefault(base_id(job["test"]), []).append(job["index"])
        self.is_worker = hasattr(config, "workerinput")
        self._reports: dict[str, list[pytest.TestReport]] = {}
        self._packed: Counter[Signature] = Counter()  # bundles sent, per signature
        self._events = None if self.is_worker else open(  # noqa: SIM115 - closed at unconfigure
            self.events_path, "a", encoding="utf-8")
        # Only this process reports: a copy of it (a Raft that calls os.fork() in the test
        # process) writes nothing -- its copy of a test could pass after the real one failed.
        self._pid = os.getpid()

    # --- workers (and the single process without xdist): build, order, seed items ---

    @pytest.hookimpl(trylast=True)
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        indices = self.by_function.get(metafunc.definition.nodeid)
        if indices:
            metafunc.fixturenames.append(JOB_FIXTURE)
            metafunc.parametrize(JOB_FIXTURE, indices, indirect=True,
                                 ids=[f"stress{j}" for j in indices])

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        chosen: list[tuple[int, pytest.Item]] = []
        dropped: list[pytest.Item] = []
        for item in items:
            callspec = getattr(item, "callspec", None)
            j = callspec.params.get(JOB_FIXTURE) if callspec is not None else None
            if j is not None and strip_job_id(item.nodeid, j) == self.jobs[j]["test"]:
                chosen.append((j, item))
            else:
                dropped.append(item)
        chosen.sort(key=lambda pair: pair[0])
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        items[:] = [item for _, item in chosen]

    @pytest.hookimpl(optionalhook=True)
    def pytest_raftlab_test_seed(self, item: pytest.Item) -> int | None:
        """The harness asks each graded test's seed: a repetition's is its job's."""
        callspec = getattr(item, "callspec", None)
        if callspec is None or JOB_FIXTURE not in callspec.params:
            return None
        return int(self.jobs[callspec.params[JOB_FIXTURE]]["seed"])

    def report_to(self, stream: Any) -> None:
        """A worker forked by this session (tools/stress/backends/forked.py): its events
        go to ``stream``, and this process is the one that reports from now on."""
        if self._events is not None:
            self._events.close()
        self._events = stream
        self._pid = os.getpid()

    # --- the controlling process: one event line per finished run ---

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self._events is None or os.getpid() != self._pid:
            return
        self._reports.setdefault(report.nodeid, []).append(report)
        if report.when not in ("setup", "call"):  # teardown, or "???" for a crashed worker
            self._emit(report.nodeid, self._reports.pop(report.nodeid))

    def _emit(self, nodeid: str, reports: list[pytest.TestReport]) -> None:
        j = job_index_of(nodeid)
        if j is None or j >= len(self.jobs):
            return
        job = self.jobs[j]
        props: dict[str, Any] = {}
        for rep in reports:
            props.update(dict(rep.user_properties or ()))
        failed = [rep for rep in reports if rep.failed]
        verdict = inconclusive_text(props)
        if failed:
            outcome = "failed" if failed[0].when in ("call", "???") else "error"
            if verdict and len(failed) == 1 and failed[0].when == "call":
                outcome = "inconclusive"  # labtests.overload: the machine, not the Raft
            if refused(props):
                outcome = "refused"  # the source changed on disk: not run as asked
        elif any(rep.skipped for rep in reports):
            outcome = "skipped"
        else:
            outcome = "passed"
        message = _short_message(failed[0]) if failed else None
        if outcome in ("failed", "error") and props.get(bundles.BUNDLE_KEY):
            packed = self._take_bundle(str(props[bundles.BUNDLE_KEY]), message, props)
            if packed is not None:
                props[bundles.PACKED_KEY] = packed
        if outcome == "inconclusive":
            message = f"{verdict}: {message}"
        elif outcome == "refused":
            message = str(props.get(REASON_KEY) or message)  # the harness's words, unprefixed
        log = (_log_text(reports, _timeline_note(outcome, props))
               if failed or self.keep_passing else None)
        node = getattr(reports[-1], "node", None)
        gateway = getattr(node, "gateway", None)
        self._write_event(j, seed=int(props.get("seed", job["seed"])), outcome=outcome,
                          duration=sum(rep.duration for rep in reports),
                          worker=getattr(gateway, "id", None) or "main", message=message,
                          properties=props, log=log)

    def crashed_run(self, j: int, worker: str, reason: str, duration: float,
                    log: str | None = None) -> None:
        """Record run ``j`` as failed with ``reason``: its process ended before the run
        reported (a forked worker's child, as xdist reports a dead worker's test)."""
        if self._events is None or os.getpid() != self._pid or not 0 <= j < len(self.jobs):
            return
        seed = int(self.jobs[j]["seed"])
        self._write_event(j, seed=seed, outcome="failed", duration=duration, worker=worker,
                          message=reason, properties={"seed": seed, REASON_KEY: reason},
                          log=log if log is not None else reason + "\n")

    def _write_event(self, j: int, *, seed: int, outcome: str, duration: float, worker: str,
                     message: str | None, properties: dict[str, Any], log: str | None) -> None:
        """One line of the events file: the one place its format is written."""
        event = {
            "job": j,
            "test": self.jobs[j]["test"],
            "seed": seed,
            "outcome": outcome,
            "duration": round(duration, 4),
            "worker": worker,
            "loadavg": [round(x, 2) for x in os.getloadavg()],
            "message": message,
            "properties": {k: v for k, v in properties.items() if jsonable(v)},
            "log": log,
        }
        assert self._events is not None
        self._events.write(json.dumps(event) + "\n")
        self._events.flush()

    def _take_bundle(self, path: str, message: str | None,
                     props: dict[str, Any]) -> dict[str, Any] | None:
        """Pack a failing run's bundle while its signature's share is not used up (the
        client keeps no more: a run of thousands of failures then sends only a few
        bundles); remove the folder if it is in this plugin's own temporary folder."""
        folder = Path(path).resolve()
        packed = None
        check = _check_in(folder)
        if check is not None:  # every failure's, so the client groups unpacked ones alike
            props[bundles.CHECK_KEY] = check
        sig = signature(message, check, props.get(ARTIFACT_KEY) or None)
        if (self._packed[sig] < BUNDLES_PER_GROUP
                and sum(self._packed.values()) < MAX_BUNDLES):
            packed = bundles.pack(folder)
            self._packed[sig] += packed is not None
        if _own_bundle_dir is not None and folder.is_relative_to(_own_bundle_dir):
            # Packed (or one too many): the copy in the event is what travels.
            shutil.rmtree(folder, ignore_errors=True)
        return packed

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None


_own_bundle_dir: Path | None = None  # the bundle folder this process chose
_own_pid = 0  # the process that made it (forked children share it, never remove it)


def _check_in(folder: Path) -> str | None:
    """The failing check named in a bundle's meta.json (None if unreadable)."""
    try:
        check = json.loads((folder / "meta.json").read_text(encoding="utf-8")).get("check")
    except (OSError, ValueError, AttributeError):
        return None
    return check if isinstance(check, str) else None


def _short_message(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None and getattr(crash, "message", None):
        text = str(crash.message)
    else:
        lines = [ln for ln in report.longreprtext.splitlines() if ln.strip()]
        text = lines[-1] if lines else f"{report.when} failed"
    first = text.strip().splitlines()[0] if text.strip() else text
    return first[:500]


TIMELINE_SECTION = "raftlab timeline"  # the harness's: where a failed run's bundle is


def _timeline_note(outcome: str, props: dict[str, Any]) -> str | None:
    """What a run's log says instead of the harness's bundle path, when that path is in
    this plugin's own folder, which is gone when the run ends (None: the path stays
    true, e.g. a folder the user chose).  A failure's bundle, when kept, is named in the
    log's header; an inconclusive or refused run's is not kept: it was not judged."""
    path = props.get(bundles.BUNDLE_KEY)
    if not path or _own_bundle_dir is None \
            or not Path(str(path)).resolve().is_relative_to(_own_bundle_dir):
        return None
    if outcome in ("failed", "error"):
        return ("this run's timeline is in its bundle: the 'bundle:' line at the top of "
                "this log says where it was kept, or why not")
    return (f"not kept for a run that was not judged ({outcome}): rerun it alone with "
            "the command at the top of this log for its timeline")


def _log_text(reports: list[pytest.TestReport], timeline_note: str | None = None) -> str:
    """Captured output of every phase, then the failure report(s): the run's whole story.

    ``timeline_note`` replaces the harness's bundle path (:func:`_timeline_note`)."""
    parts: list[str] = []
    seen: set[str] = set()
    for rep in reports:
        for title, content in rep.sections:
            if title == TIMELINE_SECTION and timeline_note is not None:
                content = timeline_note
            key = f"{title}\0{content}"
            if title == "raftlab rerun":
                # The stress log's header carries the rerun command, from the same
                # builder but with the debug log on; the hint would only repeat it.
                continue
            if key not in seen:  # later phases repeat earlier sections
                seen.add(key)
                parts.append(f"----- {title} -----\n{content.rstrip()}\n")
    for rep in reports:
        if rep.failed:
            parts.append(f"----- failure ({rep.when}) -----\n{rep.longreprtext.rstrip()}\n")
    return "\n".join(parts)


@pytest.hookimpl(tryfirst=True)  # before the harness reads where bundles go
def pytest_configure(config: pytest.Config) -> None:
    global _own_bundle_dir, _own_pid
    jobs_file = config.getoption("stress_jobs")
    if jobs_file and not os.environ.get(BUNDLE_ENV):
        # Next to the jobs file: the backend's own scratch folder, which it removes even
        # if this process is killed.  xdist workers start after this and inherit it.
        folder = Path(jobs_file).resolve().parent / "raftlab-bundles"
        try:
            folder.mkdir(exist_ok=True)
        except OSError:  # not writable: the harness's default folder then
            pass
        else:
            _own_bundle_dir = folder
            _own_pid = os.getpid()
            os.environ[BUNDLE_ENV] = str(folder)
    if jobs_file:
        spec = json.loads(Path(jobs_file).read_text(encoding="utf-8"))
        config.pluginmanager.register(_StressPlugin(config, spec), "raftlab-stress-jobs")
    if config.getoption("stress_collect"):
        config.pluginmanager.register(_Collector(config), "raftlab-stress-collect")


def pytest_unconfigure(config: pytest.Config) -> None:
    global _own_bundle_dir
    if _own_bundle_dir is not None and os.getpid() == _own_pid:
        shutil.rmtree(_own_bundle_dir, ignore_errors=True)
        if os.environ.get(BUNDLE_ENV) == str(_own_bundle_dir):
            del os.environ[BUNDLE_ENV]
        _own_bundle_dir = None


class _Collector:
    def __init__(self, config: pytest.Config) -> None:
        self.out = Path(config.getoption("stress_collect"))

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        data = {"rootdir": str(session.config.rootpath),
                "tests": [item.nodeid for item in session.items]}
        self.out.write_text(json.dumps(data), encoding="utf-8")
