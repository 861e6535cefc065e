"""``raftlab stress``'s summary lists the runs still inconclusive after the reruns (a few,
with their log and rerun command, as failures are listed), and only those.

Needs tools/stress/run.py to list them (/work/meas/s9/hygiene-stress-run-py.diff).
"""

from __future__ import annotations

from pathlib import Path

from labtests.overload import EXIT_INCONCLUSIVE
from tests.test_stress_overload import OverloadedBackend, _main, _planned, fake_suite
from tools.stress.display import SHOWN_INCONCLUSIVE

suite = fake_suite  # the same one-test suite as the stress-overload tests


def test_the_stress_summary_lists_only_the_runs_still_inconclusive(suite, tmp_path):
    seeds = _planned(6)
    # Five runs late in every attempt, one late once then passing: five are listed.
    backend = OverloadedBackend({**{s: 99 for s in seeds[:5]}, seeds[5]: 1})
    out = tmp_path / "o"
    rc, text = _main(["test_x.py", "-n", "6", "-p", "2", "--seed", "7", "--retries", "1",
                      "-o", str(out)], backend, suite)
    assert rc == EXIT_INCONCLUSIVE, text
    lines = text.splitlines()
    start = lines.index(next(ln for ln in lines if ln.startswith("inconclusive runs (")))
    assert lines[start] == (f"inconclusive runs (5): not judged, the machine was overloaded; "
                            f"logs in {out / 'inconclusive'} (each says why, with the run's "
                            "output); rerun one alone on a quieter machine:")
    listed = lines[start + 1:start + 1 + 3 * SHOWN_INCONCLUSIVE]
    assert [ln.split(" seed ")[1].split(":")[0] for ln in listed[::3]] == [
        str(s) for s in seeds[:SHOWN_INCONCLUSIVE]], text  # the first attempt's order
    assert all(ln.startswith("    log:   ") and Path(ln.split()[-1]).is_file()
               for ln in listed[1::3]), text
    assert all(ln.startswith("    rerun: ") and "--seed" in ln for ln in listed[2::3]), text
    assert lines[start + 1 + 3 * SHOWN_INCONCLUSIVE] == "  ... and 2 more"
    assert f"seed {seeds[5]}:" not in text  # passed on its rerun: not listed


def test_a_stress_log_never_points_at_the_bundle_folder_its_run_removed(tmp_path, monkeypatch):
    """The harness's "raftlab timeline" section names a path in the stress plugin's own
    folder, which is gone when the run ends: a failure's log sends the reader to its
    header's bundle line, a run that was not judged says it kept none; a folder the user
    chose stays named as it is."""
    from types import SimpleNamespace

    import tools.stress.pytest_plugin as stress_plugin
    from tools.stress import bundles

    own = tmp_path / "raftlab-bundles"
    monkeypatch.setattr(stress_plugin, "_own_bundle_dir", own.resolve())
    theirs = {bundles.BUNDLE_KEY: str(own / "test_a-seed1")}
    report = SimpleNamespace(sections=[("raftlab timeline", f"timeline: {own}/x.html")],
                             failed=True, when="call", longreprtext="AssertionError")
    for outcome, words in [("failed", "the 'bundle:' line at the top of this log"),
                           ("inconclusive", "not kept for a run that was not judged")]:
        log = stress_plugin._log_text([report], stress_plugin._timeline_note(outcome, theirs))
        assert words in log and str(own) not in log, log
    chosen = {bundles.BUNDLE_KEY: str(tmp_path / "mine" / "test_a-seed1")}
    assert stress_plugin._timeline_note("failed", chosen) is None
    assert stress_plugin._timeline_note("failed", {}) is None
