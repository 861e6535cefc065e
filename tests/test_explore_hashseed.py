"""Explore's runs and replays share one string-hash seed, recorded in the finding's JSON.

The toy (tests/toys_explore/set_order.py) takes its election timeouts from the order
of a set of strings, which Python salts per process: its run differs from one hash
seed to another.  Explore runs under :data:`tools.explore.hashseed.HASH_SEED`
whatever its own process's seed, and ``--replay`` under the recorded one, so the
replay in a fresh process with another ``PYTHONHASHSEED`` shows the same debug log.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("greenlet")

from tools.explore import hashseed  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TOY = str(HERE / "toys_explore" / "set_order.py")


def _explore(*argv: str, hash_seed: str | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("PYTHONHASHSEED", None)
    if hash_seed is not None:
        env["PYTHONHASHSEED"] = hash_seed
    return subprocess.run([sys.executable, "-m", "tools.explore", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def _replay_log(path: Path, tmp: Path, hash_seed: str | None) -> list[str]:
    log = tmp / f"replay-{path.stem}-{hash_seed}.log"
    proc = _explore("--replay", str(path), "--impl", TOY, "--log", str(log), hash_seed=hash_seed)
    assert proc.returncode == 1, proc.stderr
    assert "[exit]" in proc.stderr
    return log.read_text().splitlines()


@pytest.fixture(scope="module")
def finding(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A finding of the toy, by an explore whose own process has hash seed 1."""
    out = tmp_path_factory.mktemp("explore") / "out"
    proc = _explore("--impl", TOY, "-n", "1", "-p", "1", "-o", str(out), "--shrink-runs", "20",
                    hash_seed="1")
    assert proc.returncode == 1, proc.stderr
    path = out / "failures" / "exit.json"
    kept = [x for x in (out / "failures" / "exit.log").read_text().splitlines()
            if not x.startswith("# ")]
    assert json.loads((out / "summary.json").read_text())["minimal"]["exit"]["replay_matches"]
    return path, kept


def test_the_finding_records_the_hash_seed_its_runs_used(finding):
    path, _ = finding
    assert json.loads(path.read_text())[hashseed.KEY] == hashseed.HASH_SEED


@pytest.mark.parametrize("replayer_seed", ["2", None])  # another seed, a random one
def test_a_replay_under_another_process_hash_seed_is_identical(finding, tmp_path, replayer_seed):
    path, kept = finding
    assert _replay_log(path, tmp_path, replayer_seed) == kept


def test_the_recorded_seed_is_the_one_used_and_old_files_get_the_default(finding, tmp_path):
    path, kept = finding
    data = json.loads(path.read_text())
    other = tmp_path / "other.json"  # the toy's run under hash seed 1 is another run
    other.write_text(json.dumps({**data, hashseed.KEY: 1}))
    assert _replay_log(other, tmp_path, "0") != kept
    old = tmp_path / "old.json"  # written before the seed was recorded
    old.write_text(json.dumps({k: v for k, v in data.items() if k != hashseed.KEY}))
    assert _replay_log(old, tmp_path, "3") == kept


def test_a_bad_recorded_seed_is_a_one_line_usage_error(finding, tmp_path):
    path, _ = finding
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**json.loads(path.read_text()), hashseed.KEY: "zero"}))
    proc = _explore("--replay", str(bad), "--impl", TOY, hash_seed=None)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"raftlab explore: error: --replay {bad}: not a schedule "
                                   f"raftlab explore wrote (hash_seed must be an integer from "
                                   f"0 to 4294967295, not 'zero')")


def _string_hash() -> int:
    return hash("raftlab-peer-1")


def test_pinned_workers_hash_strings_alike_and_leave_the_environment_alone():
    before = os.environ.get("PYTHONHASHSEED")
    hashes = []
    for seed in (7, 7, 8):
        with ProcessPoolExecutor(1, mp_context=hashseed.pinned_context(seed)) as pool:
            hashes.append(pool.submit(_string_hash).result(timeout=120))
    assert hashes[0] == hashes[1] != hashes[2]
    assert os.environ.get("PYTHONHASHSEED") == before


def _ctrl_c_state() -> tuple[bool, bool]:
    """(Ctrl-C ignored, any stop signal blocked) in this process."""
    blocked = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP} & signal.pthread_sigmask(
        signal.SIG_BLOCK, [])
    return signal.getsignal(signal.SIGINT) == signal.SIG_IGN, bool(blocked)


def test_a_pinned_worker_outlives_a_ctrl_c_that_comes_while_its_interpreter_starts():
    """A Ctrl-C at the terminal reaches the whole group, the workers too: one that was
    still importing died of it with a traceback of its own under the command's words
    (3 of 17 Ctrl-Cs as explore's workers started).  Here the signal goes to the
    worker the moment it is spawned, long before its interpreter is up: it must still
    serve, ignoring Ctrl-C, not blocking it -- and the spawning thread's mask is as it
    was."""
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    with ProcessPoolExecutor(1, mp_context=hashseed.pinned_context()) as pool:
        first = pool.submit(_ctrl_c_state)  # spawns the worker, in this thread (3.11-3.13)
        for proc in list(pool._processes.values()):
            os.kill(proc.pid, signal.SIGINT)
        assert first.result(timeout=120) == (True, False)
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == mask


def test_a_stop_kills_a_worker_the_pool_has_not_listed_yet():
    """A worker spawned as a stop signal came may not be in the pool's table yet (the
    signal, held during the spawn, is acted on right after it): kill_workers must still
    find it, through the pinned context's record, or it is left to run on."""
    pool = ProcessPoolExecutor(1, mp_context=hashseed.pinned_context())
    try:
        assert pool.submit(os.getpid).result(timeout=120) > 0  # one listed worker
        unlisted = pool._mp_context.Process(target=time.sleep, args=(120,))
        unlisted.start()  # recorded by the context, unknown to the pool
        assert unlisted.pid not in pool._processes
        start = time.monotonic()
        hashseed.kill_workers(pool)
        assert unlisted.exitcode == -signal.SIGKILL
        assert all(p.exitcode == -signal.SIGKILL for p in pool._processes.values())
        assert time.monotonic() - start < 30
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def test_with_hash_seed_keeps_one_json_document():
    text = hashseed.with_hash_seed('{"n": 3, "steps": [\n]}\n', 5)
    assert json.loads(text) == {"hash_seed": 5, "n": 3, "steps": []}
    assert hashseed.recorded({}) == hashseed.HASH_SEED
    for bad in (True, -1, 2**32, 1.5):
        with pytest.raises(ValueError):
            hashseed.recorded({"hash_seed": bad})


def test_a_replay_through_a_spawned_process_leaves_no_process_behind(finding, tmp_path):
    """The spawn brings multiprocessing's resource tracker along; the replay must end it.

    Without that the tracker outlived ``raftlab explore --replay`` for a moment (it ends
    only once it reads EOF from the exited command): the README's Exploring test found it
    alive in the command's process group under load.
    """
    from tests.readme_commands import group_members

    path, _ = finding
    env = dict(os.environ, PYTHONHASHSEED="1")  # not the recorded seed: the spawned path
    proc = subprocess.Popen([sys.executable, "-m", "tools.explore", "--replay", str(path),
                             "--impl", TOY, "--log", str(tmp_path / "replay.log")],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 1 and "[exit]" in err, err
        assert group_members(proc.pid) == [], "the replay left a process of its group running"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
