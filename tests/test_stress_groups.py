"""Failures grouped by signature, and failure bundles kept by ``raftlab stress``.

* the signature rules, one by one (values abstracted, the lab's words kept);
* the caps on kept bundles (per signature, in all);
* packing and unpacking a bundle is bounded and refuses names that leave the folder;
* end to end: 50 simulated runs of a toy with two distinct bugs give exactly two
  groups, each with its count, first seed, rerun command and kept bundles.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from tools.stress import bundles
from tools.stress.groups import FailureGroups
from tools.stress.results import results_of
from tools.stress.signatures import normalise, signature

TOYS = Path(__file__).parent / "toys_stress"
PLUGINS = Path(__file__).parent / "bundle_plugins"
REPO = Path(__file__).resolve().parents[1]


# --- signatures -----------------------------------------------------------------------------

@pytest.mark.parametrize(("message", "expected"), [
    ("one(1234) failed to reach agreement", "one(<cmd>) failed to reach agreement"),
    ("one('x y') failed to reach agreement", "one(<cmd>) failed to reach agreement"),
    ("one([1 2 3]) failed to reach agreement", "one(<cmd>) failed to reach agreement"),
    ("apply error: server 3 apply out of order 7",
     "apply error: server <n> apply out of order <n>"),
    ("term 4 has 2 (>1) leaders", "term <n> has <n> (>1) leaders"),
    ("apply error: commit index=5 server=2 104 != server=1 [1 2]",
     "apply error: commit index=<n> server=<n> <cmd> != server=<n> <cmd>"),
    ("labtests.failures.RaftTestFailure: expected one leader, got none\nthe details",
     "expected one leader, got none"),
    ("inconclusive (machine overloaded: timers late by 812 ms): servers disagree on term",
     "servers disagree on term"),
    ("only 2 decided for index 5; wanted 3", "only <n> decided for index <n>; wanted <n>"),
    ("too many RPCs (345) for 10 entries", "too many RPCs (<n>) for <n> entries"),
    ("test took longer than 120 seconds", "test took longer than <n> seconds"),
    ("cmd 17 missing in [1 2 17]", "cmd <cmd> missing in [<cmds>]"),
    ("uncaught exception in thread 'raft-S1-ticker': ValueError('at 0x7f12')",
     "uncaught exception in thread <str>: ValueError(<str>)"),
    ("", "(no message)"),
    (None, "(no message)"),
])
def test_normalise_abstracts_values_and_keeps_the_labs_words(message, expected):
    assert normalise(message) == expected


def test_signature_adds_the_check_and_the_artifact_and_has_a_stable_id():
    a = signature("one(101) failed to reach agreement", "one")
    b = signature("one(202) failed to reach agreement", "one")
    assert a == b and a.id == b.id and re.fullmatch(r"[0-9a-f]{8}", a.id)
    assert a.key == "[one] one(<cmd>) failed to reach agreement"
    assert signature("one(101) failed to reach agreement", "check_one_leader") != a
    art = signature("one(101) failed to reach agreement\n(known artifact of the lab's tests, "
                    "'x': y)", "one", "deposed-leader")
    assert art != a and art.text == a.text and "known artifact: deposed-leader" in art.key
    assert len(normalise("x" * 5000)) <= 303  # a name, not the whole story


def test_groups_cap_bundles_per_signature_and_in_all():
    groups = FailureGroups(per_group=2, max_total=3)
    one, two = signature("one(1) failed to reach agreement"), signature("term 1 has 2 (>1) leaders")
    kept = []
    for seed in range(5):
        for sig in (one, two):
            groups.add(sig, "t", seed, f"rerun {seed}")
            if groups.may_keep(sig):
                groups.kept_bundle(sig, f"b{seed}")
                kept.append(sig)
            else:
                groups.not_kept += 1
    assert groups.kept == 3 and len(groups.groups[one].bundles) == 2
    assert len(groups.groups[two].bundles) == 1 and groups.not_kept == 7
    assert groups.groups[one].count == 5 and groups.groups[one].first_seed == 0
    lines = groups.summary_lines()
    assert "2 signature(s) over 10 failure(s)" in lines[0] and "7 more bundle(s)" in lines[-1]


def test_artifact_groups_come_after_the_rafts_own_failures():
    groups = FailureGroups()
    for _ in range(5):
        groups.add(signature("x 1", artifact="deposed-leader"), "t", 1, "r")
    groups.add(signature("y 1"), "t", 2, "r")
    assert [g.signature.artifact for g in groups.ordered()] == [None, "deposed-leader"]
    assert any(line.startswith("  known artifact group 2: 5 x") for line in groups.summary_lines())


# --- packing a bundle -----------------------------------------------------------------------

def _bundle(tmp_path: Path, **files: str | bytes) -> Path:
    folder = tmp_path / "b"
    folder.mkdir()
    for name, data in files.items():
        path = folder / name
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data)
    return folder


def test_pack_and_unpack_round_trip(tmp_path):
    folder = _bundle(tmp_path, **{"meta.json": '{"check": "one"}', "failure.txt": "boom\n",
                                  "timeline.html": "<html></html>"})
    packed = bundles.pack(folder)
    assert packed is not None and bundles.meta(packed) == {"check": "one"}
    json.dumps(packed)  # plain data: it crosses processes and Dask
    out = bundles.unpack(packed, tmp_path / "out")
    assert out is not None
    assert sorted(p.name for p in out.iterdir()) == ["failure.txt", "meta.json", "timeline.html"]
    assert (out / "failure.txt").read_text() == "boom\n"
    assert bundles.pack(tmp_path / "missing") is None


def test_pack_is_bounded_keeping_a_logs_tail_and_leaving_out_big_files(tmp_path):
    folder = _bundle(tmp_path, **{"meta.json": "{}", "timeline.html": "x" * 5000,
                                  "debug.log": "old\n" * 1000 + "last line\n"})
    packed = bundles.pack(folder, max_bytes=3000, max_file=2000)
    assert packed is not None
    assert "timeline.html" not in packed["files"]  # cutting an HTML file would break it
    assert packed["files"]["debug.log"].endswith("last line\n")
    assert len(packed["files"]["debug.log"]) == 2000
    assert any("timeline.html: left out" in c for c in packed["cut"])
    assert any("debug.log: only its last 2000" in c for c in packed["cut"])
    out = bundles.unpack(packed, tmp_path / "out")
    assert out is not None and "timeline.html: left out" in (out / bundles.CUT_FILE).read_text()


def test_unpack_refuses_names_that_leave_the_folder_and_oversized_data(tmp_path):
    hostile = {"name": "x", "cut": [], "files": {
        "../escape.txt": "no", "/etc/passwd": "no", ".hidden": "no", "sub/dir.txt": "no",
        "ok.txt": "fine", "big.log": "y" * 100}}
    out = bundles.unpack(hostile, tmp_path / "out", max_bytes=50)
    assert out is not None
    assert [p.name for p in out.iterdir() if p.name != bundles.CUT_FILE] == ["ok.txt"]
    assert not (tmp_path / "escape.txt").exists()
    cut = (out / bundles.CUT_FILE).read_text()
    assert "'../escape.txt': refused" in cut and "big.log: refused" in cut
    for bad in (None, "x", {"files": "x"}, {"files": {"a": 1}}, {"files": {}, "cut": "x"}):
        assert bundles.unpack(bad, tmp_path / "never") is None
    assert not (tmp_path / "never").exists()


def test_pack_leaves_out_hidden_files_and_symlinks(tmp_path):
    folder = _bundle(tmp_path, **{"meta.json": "{}", ".hidden": "secret"})
    (tmp_path / "secret.txt").write_text("secret")
    (folder / "link.txt").symlink_to(tmp_path / "secret.txt")
    packed = bundles.pack(folder)
    assert packed is not None and set(packed["files"]) == {"meta.json"}


# --- end to end: a toy with two bugs --------------------------------------------------------

SKIP = "apply error: server <n> apply out of order <n>"
MISMATCH = "apply error: commit index=<n> server=<n> <cmd> != server=<n> <cmd>"


@pytest.fixture
def bundle_env(monkeypatch, tmp_path):
    """The fake bundle plugin importable by the runs' pytest; temporary files in tmp_path."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(PLUGINS), *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.delenv("RAFTLAB_BUNDLE_DIR", raising=False)
    return scratch


def _stress(tmp_path: Path, *args: str) -> tuple[int, str, Path]:
    import subprocess

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "tools.stress", "test_basic_agree_2b", "--sim", "--no-live",
           "--impl", str(TOYS / "two_bugs.py"), "-o", str(out), *args, "--", "-p", "fake_bundle"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr, out


def test_stress_groups_50_failures_of_two_bugs_into_two_signatures(tmp_path, bundle_env):
    rc, out, outdir = _stress(tmp_path, "-n", "50", "-p", "2", "--seed", "11")
    assert rc == 1, out[-3000:]
    lines = results_of(outdir / "results.jsonl")
    assert len(lines) == 50 and all(line["outcome"] == "failed" for line in lines), out[-3000:]
    groups = json.loads((outdir / "groups.json").read_text())
    assert sorted(g["message"] for g in groups) == sorted([SKIP, MISMATCH]), groups
    assert sum(g["count"] for g in groups) == 50
    # Every failure's check is known, bundle sent or not (the plugin caps what it sends).
    assert all(g["check"] for g in groups), groups
    for group in groups:
        mine = [line for line in lines if line["signature_id"] == group["id"]]
        assert len(mine) == group["count"] >= 5, group  # both bugs are common
        raw = {line["message"] for line in mine}
        assert len(raw) > 1, raw  # the values differed; the signature did not
        pattern = (r"apply error: server \d apply out of order \d+$" if group["message"] == SKIP
                   else r"apply error: commit index=1 server=\d \d+ != server=\d \d+$")
        assert all(re.search(pattern, m) for m in raw), raw
        assert group["first_seed"] == mine[0]["seed"]
        assert group["first_rerun"].startswith("raftlab test test_basic_agree_2b --seed "
                                               f"{group['first_seed']} ")
        # Bundles: at most three per group, each a folder with the bundle's files.
        assert 1 <= len(group["bundles"]) <= 3, group
        for path in group["bundles"]:
            folder = Path(path)
            assert folder.parent == outdir / "bundles"
            assert {"meta.json", "failure.txt", "timeline.html"} <= {p.name for p in
                                                                     folder.iterdir()}
            check = json.loads((folder / "meta.json").read_text())["check"]
            assert group["check"] == check
        assert sum(1 for line in mine if line["bundle"]) == len(group["bundles"])
    assert len(list((outdir / "bundles").iterdir())) <= 6
    # The summary shows each group: count, first seed, one bundle, the first seed's rerun.
    summary = (outdir / "summary.txt").read_text()
    for group in groups:
        assert f"{group['count']} x {group['signature']}" in summary, summary
        assert f"bundle: {group['bundles'][0]}" in summary
        assert f"seed {group['first_seed']}; rerun: {group['first_rerun']}" in summary
    # A failure log names its group and its bundle (or why none was kept).
    log = Path(lines[-1]["log"]).read_text()
    assert re.search(r"^group: +\[", log, re.M) and re.search(r"^bundle: +", log, re.M)
    unkept = next(line for line in lines if not line["bundle"])
    assert re.search(r"^bundle: +\(not kept: .*at most 3 per group", Path(unkept["log"])
                     .read_text(), re.M)
    # The plugin's bundle folder is gone, and nothing was left in the temporary folder.
    assert not list(bundle_env.rglob("raftlab-bundles*"))


def test_a_big_debug_log_arrives_cut_to_its_tail_with_a_note(tmp_path, bundle_env, monkeypatch):
    monkeypatch.setenv("RAFTLAB_TEST_BUNDLE_LOG_BYTES", str(3 * bundles.MAX_FILE_BYTES))
    monkeypatch.setenv("RAFTLAB_TEST_BUNDLE_EVIL", "1")
    rc, out, outdir = _stress(tmp_path, "-n", "1", "-p", "1", "--seed", "5")
    assert rc == 1, out[-3000:]
    (line,) = results_of(outdir / "results.jsonl")
    folder = Path(line["bundle"])
    sizes = {p.name: p.stat().st_size for p in folder.iterdir()}
    assert sum(sizes.values()) <= bundles.MAX_BUNDLE_BYTES + 4096, sizes
    assert sizes["debug.log"] <= bundles.MAX_FILE_BYTES, sizes
    assert (folder / "debug.log").read_text().endswith("the end\n")  # the tail is kept
    cut = (folder / bundles.CUT_FILE).read_text()
    assert "debug.log: only its last" in cut and "'.hidden': left out" in cut
    assert not (folder / ".hidden").exists()
    assert "raftlab_bundle_packed" not in line["properties"]  # not copied into results.jsonl


def test_a_dask_workers_bundle_comes_back_in_the_task_result(tmp_path, bundle_env):
    """The worker task alone (as a Dask worker runs it): the run's scratch folder is gone
    when the task returns, and the bundle travels in the event, bounded and plain data."""
    from labtests.options import HarnessOptions
    from tools.stress.backends.base import RunOptions, result_from_event
    from tools.stress.backends.dask_worker import run_one
    from tools.stress.results import ResultFiles

    options = RunOptions(harness=HarnessOptions(impl="/client/only/two_bugs.py", sim=True),
                         rootdir=REPO, timeout=120, pytest_args=("-p", "fake_bundle"))
    task = {"batch": "b1", "job": {"index": 3, "test": "labtests/test_2b.py::"
                                   "test_basic_agree_2b", "seed": 21},
            "options": options.to_json(), "impl_name": "two_bugs.py", "prefix": []}
    event = run_one(task, (TOYS / "two_bugs.py").read_bytes())
    assert event is not None and event["outcome"] == "failed", event
    packed = event["properties"][bundles.PACKED_KEY]
    assert bundles.valid(packed) and bundles.meta(packed).get("check")
    assert len(json.dumps(packed)) < bundles.MAX_BUNDLE_BYTES * 2
    assert not Path(event["properties"][bundles.BUNDLE_KEY]).exists()  # only the copy travels
    files = ResultFiles(tmp_path / "client")
    log = files.add(result_from_event(json.loads(json.dumps(event))), "raftlab test ...")
    files.close()
    (line,) = results_of(tmp_path / "client" / "results.jsonl")
    assert line["bundle"] and (Path(line["bundle"]) / "meta.json").exists(), line
    assert log is not None and f"bundle:   {line['bundle']}" in log.read_text()


def test_the_plugin_sends_no_more_bundles_per_signature_than_the_client_keeps(
        tmp_path, bundle_env):
    """One pytest session with the stress plugin (as a backend starts it): 12 failing runs
    of the two-bug toy send at most BUNDLES_PER_GROUP packed bundles per signature."""
    import subprocess

    from labtests.options import HarnessOptions
    from tools.stress.backends.base import Job, RunOptions
    from tools.stress.backends.pytest_runs import plugin_command, write_jobs_file
    from tools.stress.groups import BUNDLES_PER_GROUP

    test = "labtests/test_2b.py::test_basic_agree_2b"
    jobs = [Job(i, test, 1000 + i) for i in range(12)]
    events, jobs_file = tmp_path / "events.jsonl", tmp_path / "jobs.json"
    write_jobs_file(jobs_file, events, jobs, keep_passing=False)
    options = RunOptions(harness=HarnessOptions(impl=str(TOYS / "two_bugs.py"), sim=True),
                         rootdir=REPO, timeout=120, pytest_args=("-p", "fake_bundle"))
    cmd = plugin_command(options, jobs_file, ["labtests/test_2b.py"])
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    lines = [json.loads(line) for line in events.read_text().splitlines() if line.strip()]
    assert len(lines) == 12 and all(e["outcome"] == "failed" for e in lines), proc.stdout[-2000:]
    sent: dict[str, int] = {}
    for event in lines:
        key = normalise(event["message"])
        if bundles.PACKED_KEY in event["properties"]:
            sent[key] = sent.get(key, 0) + 1
    assert sent and all(1 <= n <= BUNDLES_PER_GROUP for n in sent.values()), sent
    assert sum(sent.values()) < 12
    assert not (tmp_path / "raftlab-bundles").exists()  # next to the jobs file, removed
    assert not list(bundle_env.rglob("raftlab-bundles*"))


def test_known_artifacts_are_failures_counted_in_their_own_column_line_and_group(tmp_path):
    import io as _io

    from rich.console import Console

    from labtests.artifacts import ARTIFACT_KEY
    from tools.stress.backends.base import Job, RunOptions, RunResult
    from tools.stress.display import results_table
    from tools.stress.run import StressRun

    test = "labtests/test_2b.py::test_backup_2b"
    jobs = [Job(i, test, 10 + i) for i in range(3)]
    run = StressRun(jobs, RunOptions(rootdir=REPO), tmp_path / "o",
                    Console(file=_io.StringIO()), 1, 1)
    msg = "labtests.failures.RaftTestFailure: one(101) failed to reach agreement"
    for job, props in zip(jobs, ({ARTIFACT_KEY: "deposed-leader"}, {}, None), strict=True):
        outcome = "passed" if props is None else "failed"
        run.record(RunResult(job=job.index, test=test, seed=job.seed, outcome=outcome,
                             duration=1.0, worker="w", loadavg=(),
                             message=None if props is None else msg,
                             properties=dict(props or {})))
    run.close()
    st = run.stats[test]
    assert (st.failures, st.artifacts, st.runs) == (2, 1, 3)  # the artifact stays a failure
    out = _io.StringIO()
    Console(file=out, width=200).print(results_table(run.stats, run.names))
    header = next(line for line in out.getvalue().splitlines() if "Artifacts" in line)
    row = next(line for line in out.getvalue().splitlines() if "test_backup_2b" in line)
    cells = [c.strip() for c in row.split("│") if c.strip()]
    heads = [c.strip() for c in header.split("┃") if c.strip()]
    assert cells[heads.index("Fails")] == "2" and cells[heads.index("Artifacts")] == "1"
    lines = run.summary_lines(False)
    assert any(line.startswith("known artifacts: 1 of the 2 failure(s)") for line in lines)
    groups = json.loads((tmp_path / "o" / "groups.json").read_text())
    assert [g["artifact"] for g in groups] == [None, "deposed-leader"]
    assert any("known artifact group 2: 1 x" in line for line in lines)
    # Without artifacts the table has no such column.
    quiet = _io.StringIO()
    st.artifacts = 0
    Console(file=quiet, width=200).print(results_table(run.stats, run.names))
    assert "Artifacts" not in quiet.getvalue()
