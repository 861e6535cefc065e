"""The timeline, opened in a real browser: headless Chromium draws what the events say.

A failing toy run (real time and --sim) writes a bundle; Chromium opens its
``timeline.html`` from disk, runs the page's script and dumps the resulting DOM
(``--dump-dom``), in which the lanes, the crash and disconnection intervals,
the roles and the failure marker must be *rendered* (the SVG the script drew,
not the JSON it was given); opened zoomed in on an election (``#t=a,b``), the
candidate segments and each RPC (a line per request and per reply, its method
and outcome on hover) must be drawn too.  The page of the longest graded test's size must
open in under 2 s.  A screenshot of each is saved and its path printed.

Chromium is Debian's ``chromium`` package; ``.ci/run`` installs it (with
``chromium-driver``) when missing, so a missing browser fails here rather
than skipping.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labtests.timeline import html
from labtests.timeline.recorder import header, load_jsonl
from tests.test_timeline import synthetic_run

TESTS = Path(__file__).parent
FORGETS = TESTS / "toys_timeline" / "forgets_state.py"
ARTIFACTS = Path(os.environ.get("RAFTLAB_TEST_ARTIFACTS", TESTS / "artifacts"))
OPEN_BUDGET_MS = 2000.0


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("headless Chromium is needed to check the timeline: install it with "
                "`apt-get install -y chromium chromium-driver` (.ci/run does this in CI)")


def _browser(page: Path, profile: Path, *args: str,
             view: str = "") -> subprocess.CompletedProcess[str]:
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}",
           "--window-size=1400,640", *args, page.as_uri() + view]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def dump_dom(page: Path, profile: Path, view: str = "") -> tuple[str, float]:
    """The DOM after the page's script ran (opened on ``view``, e.g. ``#t=1,2``), and the
    wall time Chromium took."""
    t0 = time.monotonic()
    done = _browser(page, profile, "--dump-dom", view=view)
    wall = time.monotonic() - t0
    assert done.returncode == 0 and "<body" in done.stdout, done.stderr[-2000:]
    return done.stdout, wall


def screenshot(page: Path, profile: Path, name: str, view: str = "") -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"{name}.png"
    done = _browser(page, profile, f"--screenshot={shot}", view=view)
    assert done.returncode == 0 and shot.is_file() and shot.stat().st_size > 5000, \
        done.stderr[-2000:]
    print(f"screenshot: {shot}")
    return shot


def body_attr(dom: str, name: str) -> str:
    match = re.search(r"<body[^>]*\s" + name + r'="([^"]*)"', dom)
    assert match, f"<body> has no {name}: the page's script did not finish"
    return match.group(1)


def _bundle(tmp: Path, *extra: str) -> Path:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "RAFTLAB_"))}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs",
           "labtests", "-k", "test_persist2_2c", "--raft-impl", str(FORGETS), "--seed", "7",
           "--raftlab-bundle-dir", str(tmp / "bundles"), *extra]
    done = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
    folders = sorted((tmp / "bundles").glob("*")) if (tmp / "bundles").is_dir() else []
    assert len(folders) == 1, done.stdout[-3000:]
    return folders[0] / "timeline.html"


@pytest.mark.parametrize("mode", ["real", "sim"])
def test_a_failing_runs_timeline_renders_lanes_intervals_and_the_failure(mode, tmp_path):
    page = _bundle(tmp_path, *(["--sim"] if mode == "sim" else []))
    dom, wall = dump_dom(page, tmp_path / "profile")
    assert body_attr(dom, "data-rendered") == "1"
    for lane in ("network", "tester", "0", "1", "2", "3", "4"):
        assert f'data-lane="{lane}"' in dom, f"lane {lane} not drawn"
    assert 'data-lane="5"' not in dom
    # the test's faults, drawn as intervals on the peers' lanes
    assert re.search(r'<rect class="iv iv-crash" x="[\d.]+" y="\d+" width="[\d.]+"', dom)
    assert re.search(r'<rect class="iv iv-disconnected" x="[\d.]+"', dom)
    assert 'class="restart"' in dom
    # roles and terms, the tester's checks, the failure
    assert 'class="seg seg-leader"' in dom and 'class="seg seg-follower"' in dom
    assert re.search(r'data-term="\d+"', dom)
    assert 'class="check check-fail' in dom and 'class="check check-ok' in dom
    assert 'id="failure-marker"' in dom
    assert "apply error: commit index=" in dom
    print(f"{mode}: rendered in {body_attr(dom, 'data-render-ms')} ms "
          f"(Chromium's wall time {wall:.2f} s)")
    screenshot(page, tmp_path / "profile", f"timeline-{mode}")
    # zoomed in on the first election after a restart: the candidates and each RPC
    _head, events = load_jsonl((page.parent / "events.jsonl").read_text())
    restart = next(ev["t"] for ev in events if ev["k"] == "start" and ev["gen"] > 1)
    campaigns = [ev["t"] for ev in events if ev["k"] == "state" and ev["role"] == "candidate"]
    assert campaigns, "no candidate recorded: the first election has one at least"
    campaign = next((t for t in campaigns if t > restart), campaigns[0])
    view = f"#t={max(0.0, campaign - 0.3):.3f},{campaign + 0.7:.3f}"
    dom, _wall = dump_dom(page, tmp_path / "profile", view)
    assert re.search(r'<rect class="seg seg-candidate" x="[\d.]+" y="\d+" width="[\d.]+"', dom), \
        f"no candidate segment drawn at {view}"
    lines = re.findall(r'<line class="rpc-msg rpc-o-([a-z-]+)( rpc-vote)?" x1="[\d.]+" '
                       r'x2="[\d.]+" y1="[\d.]+" y2="[\d.]+" data-m="([^"]+)" data-o="[a-z-]+" '
                       r'data-tip="S(\d)', dom)
    assert lines, f"no individual RPC drawn at {view}"
    assert any(vote for _o, vote, _m, _p in lines), "the candidate's vote requests are drawn"
    assert {m for _o, _v, m, _p in lines} <= {"Raft.request_vote", "Raft.append_entries",
                                               "Raft.install_snapshot"}
    assert "RPC events drawn" in dom
    screenshot(page, tmp_path / "profile", f"timeline-{mode}-election", view)


def test_the_longest_graded_tests_timeline_is_small_and_opens_in_under_two_seconds(tmp_path):
    page = tmp_path / "timeline.html"
    page.write_text(html.render(header(5, test="test_figure8_unreliable_2c", seed=1, mode="real"),
                                synthetic_run(seconds=35.0, peers=5, rpcs=1000)))
    size = page.stat().st_size
    assert size < 2_000_000, f"{size} bytes"
    dom, wall = dump_dom(page, tmp_path / "profile")
    load_ms = float(body_attr(dom, "data-load-ms"))
    render_ms = float(body_attr(dom, "data-render-ms"))
    print(f"35 s / 5 peers / 1000 RPCs: {size} bytes, open (navigation to drawn) "
          f"{load_ms:.0f} ms, drawing {render_ms:.0f} ms, Chromium wall {wall:.2f} s")
    assert load_ms < OPEN_BUDGET_MS
    assert dom.count('class="apply"') > 100 and 'id="failure-marker"' in dom
    assert '<line class="rpc-msg rpc-o-' not in dom and "zoom in to see each" in dom, \
        "10,000 RPC events are too many to draw one by one at the whole test's scale"
    screenshot(page, tmp_path / "profile", "timeline-longest")
    dom, _wall = dump_dom(page, tmp_path / "profile", "#t=30,31")
    assert 150 < dom.count('<line class="rpc-msg rpc-o-') <= 700, "a 1 s view draws each RPC"
    assert float(body_attr(dom, "data-load-ms")) < OPEN_BUDGET_MS
