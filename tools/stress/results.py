"""A stress run's output folder: results.jsonl, failure logs, rerun.sh and summary.txt.

Everything here is written as results arrive (each line flushed), so the folder
is valid after Ctrl-C or a crash of the runner too::

    results.jsonl                 one line per finished run (a rerun of an
                                  inconclusive run is a line of its own, attempt > 1)
    failures/<test>-s<seed>.log   seed, error, rerun command and log of each failure
    bundles/<test>-s<seed>/       the failure bundle of a failing run (timeline, events,
                                  debug log...; tools.stress.bundles), at most
                                  BUNDLES_PER_GROUP per signature (tools.stress.groups)
    groups.json                   the failures grouped by signature
    inconclusive/...              the same for runs that failed on an overloaded machine
    refused/...                   the same for runs refused because the implementation
                                  changed on disk after the worker loaded it
    passed/...                    logs of passing runs, with --archive
    rerun.sh                      the rerun command of every failure
    summary.txt                   the final table and bounds

Rerun commands come from :func:`labtests.rerun.rerun_command`, the one builder
every failure message uses, with the debug log on.  Only a test outside the
graded suites (one's own suite, such as the project's fake ones) has no graded
name to rerun by; it gets a pytest command on its node id instead.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from labtests.artifacts import ARTIFACT_KEY
from labtests.rerun import rerun_command
from tools.selection import catalog, part_of_file
from tools.stress import bundles
from tools.stress.backends.base import RunOptions, RunResult
from tools.stress.groups import FailureGroups, Group
from tools.stress.signatures import Signature, signature


def graded_name(test: str) -> str | None:
    """The graded test a node id names (``labtests/test_2b.py::test_backup_2b``), else None."""
    path, _, name = test.partition("::")
    part = part_of_file(path)
    if part is None or name not in catalog()[part]:
        return None
    return name


def rerun_for(test: str, seed: int, options: RunOptions) -> str:
    """One shell command that reruns exactly ``test`` with ``seed``, debug log on."""
    name = graded_name(test)
    if name is not None:
        return rerun_command(name, seed, options.harness, debug=True)
    args = [sys.executable, "-m", "pytest", test, f"--seed={seed}"]
    harness = options.harness_args()
    if "--raft-debug" not in harness:
        harness.append("--raft-debug")
    return f"cd {shlex.quote(str(options.rootdir))} && " + shlex.join(args + harness)


def short_name(test: str) -> str:
    """``labtests/test_2a.py::test_x`` -> ``test_2a.py::test_x`` (for tables and bars)."""
    path, _, rest = test.partition("::")
    return f"{Path(path).name}::{rest}" if rest else test


def safe_file_part(text: str) -> str:
    """``text`` as a piece of a file name (the grader names batch folders with it too)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:120]


def signature_of(result: RunResult, packed: Any = None) -> Signature:
    """A failed run's signature: its message, the check its (packed) bundle names, its
    artifact."""
    props = result.properties or {}
    if packed is None:
        packed = props.get(bundles.PACKED_KEY)
    check = props.get(bundles.CHECK_KEY) or bundles.meta(packed).get("check")
    artifact = props.get(ARTIFACT_KEY)
    return signature(result.message, check if isinstance(check, str) else None,
                     artifact if isinstance(artifact, str) else None)


class ResultFiles:
    """Writes one stress run's output folder (see the module docstring)."""

    def __init__(self, outdir: Path) -> None:
        self.outdir = outdir
        outdir.mkdir(parents=True, exist_ok=True)
        (outdir / "failures").mkdir(exist_ok=True)
        self.results_path = outdir / "results.jsonl"
        self.failures_dir = outdir / "failures"
        self.rerun_path = outdir / "rerun.sh"
        self._results = open(self.results_path, "a", encoding="utf-8")  # noqa: SIM115
        self.groups = FailureGroups()
        self.bundles_dir = outdir / "bundles"

    def add(self, result: RunResult, rerun: str, attempt: int = 1) -> Path | None:
        """Record one finished run; returns the path of its log, if one was kept.

        ``attempt`` is 1 for a planned run and 2, 3... for reruns of an inconclusive one.
        """
        log_path: Path | None = None
        group: Group | None = None
        bundle: Path | None = None
        # The packed bundle leaves the result here (written out or dropped): results are
        # kept in memory for the summary, and a bundle may be megabytes.
        packed = result.properties.pop(bundles.PACKED_KEY, None)
        props = dict(result.properties)
        if result.failed:
            group, bundle = self._group(result, rerun, packed)
            kept = str(bundle) if bundle else (
                f"(not kept: {self._why_no_bundle(packed, bool(props.get(bundles.BUNDLE_KEY)))})")
            log_path = self._write_log("failures", result, rerun, [
                f"group:    {group.signature.key}", f"bundle:   {kept}"])
            with open(self.rerun_path, "a", encoding="utf-8") as fh:
                fh.write(f"# {result.test} seed {result.seed}: {result.message}\n{rerun}\n")
        elif (result.inconclusive or result.refused) and result.log is not None:
            log_path = self._write_log(result.outcome, result, rerun)
        elif result.log is not None:
            log_path = self._write_log("passed", result, rerun)
        line: dict[str, Any] = {
            "test": result.test, "seed": result.seed, "outcome": result.outcome,
            "duration": result.duration, "worker": result.worker,
            "loadavg": list(result.loadavg), "job": result.job,
            "message": result.message, "log": str(log_path) if log_path else None,
            "attempt": attempt, "properties": props,
            "signature": group.signature.key if group else None,
            "signature_id": group.signature.id if group else None,
            "bundle": str(bundle) if bundle else None,
        }
        self._results.write(json.dumps(line) + "\n")
        self._results.flush()
        return log_path

    def _group(self, result: RunResult, rerun: str, packed: Any
               ) -> tuple[Group, Path | None]:
        """Count a failure in its group; keep its bundle if the caps allow."""
        sig = signature_of(result, packed)
        group = self.groups.add(sig, result.test, result.seed, rerun)
        bundle = None
        if bundles.valid(packed):
            if self.groups.may_keep(sig):
                name = f"{safe_file_part(short_name(result.test))}-s{result.seed}"
                dest = self.bundles_dir / name
                n = 1
                while dest.exists():  # the same seed again (a rerun): a folder of its own
                    n += 1
                    dest = self.bundles_dir / f"{name}-{n}"
                bundle = bundles.unpack(packed, dest)
                if bundle is not None:
                    self.groups.kept_bundle(sig, str(bundle))
            else:
                self.groups.not_kept += 1
        elif result.properties.get(bundles.BUNDLE_KEY):
            self.groups.not_kept += 1  # the run's process sent no more of its group's
        self._write_groups()
        return group, bundle

    def _why_no_bundle(self, packed: Any, result_had_bundle: bool) -> str:
        if packed is None:
            if result_had_bundle:
                return ("its group's share of bundles was sent already: at most "
                        f"{self.groups.per_group} per group")
            return "the run wrote none"
        if not bundles.valid(packed):
            return "it was not a valid bundle"
        return (f"at most {self.groups.per_group} per group and {self.groups.max_total} "
                "in all are kept")

    def _write_groups(self) -> None:
        data = [g.to_json() for g in self.groups.ordered()]
        tmp = self.outdir / "groups.json.tmp"
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        tmp.replace(self.outdir / "groups.json")

    def _write_log(self, sub: str, result: RunResult, rerun: str,
                   more: list[str] | None = None) -> Path:
        folder = self.outdir / sub
        folder.mkdir(exist_ok=True)
        path = folder / f"{safe_file_part(short_name(result.test))}-s{result.seed}.log"
        header = [
            f"test:     {result.test}",
            f"seed:     {result.seed}",
            f"outcome:  {result.outcome} after {result.duration:.2f} s on {result.worker}, "
            f"load average {' '.join(f'{x:.2f}' for x in result.loadavg)}",
            f"error:    {result.message or '-'}",
            f"rerun:    {rerun}",
            f"view:     {rerun} 2>&1 | raftlab logs -c <peers>",
            *(more or []),
            "",
        ]
        path.write_text("\n".join(header) + "\n" + (result.log or ""), encoding="utf-8")
        return path

    def write_summary(self, table_text: str, lines: list[str]) -> None:
        with open(self.outdir / "summary.txt", "w", encoding="utf-8") as fh:
            fh.write(table_text)
            fh.write("\n".join(lines) + "\n")

    def close(self) -> None:
        self._results.close()


def results_of(path: Path | str) -> list[dict[str, Any]]:
    """Read a results.jsonl file (a helper for other tools and tests)."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
